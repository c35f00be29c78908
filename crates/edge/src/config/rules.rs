//! `rules = [...]` of a resource: checked before sign-in.

use super::raw::RawRule;
use super::validate::{Span, Validator};
use super::{ResourceKind, Rule, RuleAction};

impl Validator<'_> {
    /// A resource's rules; the http-only conditions are refused on other
    /// kinds (a tcp connection has no path).
    pub(super) fn rules(
        &mut self,
        raw: Vec<RawRule>,
        kind: ResourceKind,
        span: Span,
        key: &str,
    ) -> Vec<Rule> {
        let mut out = Vec::new();
        for (i, r) in raw.into_iter().enumerate() {
            let at = format!("{key}.rules[{i}]");
            let mut ok = true;
            let action = match r.action.as_str() {
                "bypass" => RuleAction::Bypass,
                "deny" => RuleAction::Deny,
                "continue" => RuleAction::Continue,
                other => {
                    self.error(
                        span.clone(),
                        format!("{at}.action"),
                        format!("`{other}` is not one of bypass, deny, continue"),
                    );
                    ok = false;
                    RuleAction::Deny
                }
            };
            let mut cidrs = Vec::new();
            for (j, c) in r.cidr.iter().enumerate() {
                match warren_policy::Net::parse(c) {
                    Ok(n) => cidrs.push(n),
                    Err(e) => {
                        self.error(span.clone(), format!("{at}.cidr[{j}]"), e);
                        ok = false;
                    }
                }
            }
            let http_only = r.path.is_some() || !r.method.is_empty() || r.header.is_some();
            if http_only && kind != ResourceKind::Http {
                self.error(span.clone(), at.clone(), "path, method and header are for http resources; a connection has only its client address (cidr)");
                ok = false;
            }
            if let Some(p) = &r.path {
                if !p.starts_with('/') {
                    self.error(
                        span.clone(),
                        format!("{at}.path"),
                        format!("`{p}`: a path starts with /"),
                    );
                    ok = false;
                }
            }
            let methods: Vec<String> = r.method.iter().map(|m| m.to_ascii_uppercase()).collect();
            if let Some(m) = methods
                .iter()
                .find(|m| m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()))
            {
                self.error(
                    span.clone(),
                    format!("{at}.method"),
                    format!("`{m}` is not a method"),
                );
                ok = false;
            }
            let header = r.header.map(|h| h.to_ascii_lowercase());
            if let Some(h) = &header {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    self.error(
                        span.clone(),
                        format!("{at}.header"),
                        format!("`{h}` is not a header name"),
                    );
                    ok = false;
                }
            }
            if r.cidr.is_empty()
                && r.path.is_none()
                && methods.is_empty()
                && header.is_none()
                && action != RuleAction::Continue
            {
                self.error(span.clone(), at.clone(), "a rule with no condition matches everything: give a cidr, path, method or header");
                ok = false;
            }
            if ok {
                out.push(Rule {
                    action,
                    cidrs,
                    path: r.path,
                    methods,
                    header,
                });
            }
        }
        out
    }
}
