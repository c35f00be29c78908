//! A resource's rules, before sign-in: the first whose conditions all hold
//! decides (bypass, deny, continue). Pure.

use crate::config::{Rule, RuleAction};
use std::net::IpAddr;

/// What an http request shows the rules (none for a connection).
pub(crate) struct RequestFacts<'a> {
    /// Upper case.
    pub(crate) method: &'a str,
    /// Normalised.
    pub(crate) path: &'a str,
    pub(crate) headers: &'a http::HeaderMap,
}

/// The first rule that matches, with its index.
pub(crate) fn first_match(
    rules: &[Rule],
    client: IpAddr,
    request: Option<&RequestFacts<'_>>,
) -> Option<(usize, RuleAction)> {
    let client = client.to_canonical();
    rules
        .iter()
        .position(|r| matches(r, client, request))
        .map(|i| (i, rules[i].action))
}

fn matches(rule: &Rule, client: IpAddr, request: Option<&RequestFacts<'_>>) -> bool {
    if !rule.cidrs.is_empty() && !rule.cidrs.iter().any(|n| n.contains(client)) {
        return false;
    }
    let http_conditions = rule.path.is_some() || !rule.methods.is_empty() || rule.header.is_some();
    if !http_conditions {
        return true;
    }
    let Some(req) = request else { return false };
    rule.path
        .as_deref()
        .is_none_or(|p| warren_policy::path_under(req.path, p))
        && (rule.methods.is_empty() || rule.methods.iter().any(|m| m == req.method))
        && rule
            .header
            .as_deref()
            .is_none_or(|h| req.headers.contains_key(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        action: RuleAction,
        cidr: &[&str],
        path: Option<&str>,
        methods: &[&str],
        header: Option<&str>,
    ) -> Rule {
        Rule {
            action,
            cidrs: cidr
                .iter()
                .map(|c| warren_policy::Net::parse(c).unwrap())
                .collect(),
            path: path.map(Into::into),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            header: header.map(Into::into),
        }
    }

    #[test]
    fn the_first_rule_whose_conditions_all_hold_decides() {
        let rules = vec![
            rule(
                RuleAction::Deny,
                &["0.0.0.0/0", "::/0"],
                Some("/admin"),
                &[],
                None,
            ),
            rule(
                RuleAction::Bypass,
                &[],
                Some("/health"),
                &["GET", "HEAD"],
                None,
            ),
            rule(RuleAction::Bypass, &["10.0.0.0/8"], None, &[], None),
            rule(RuleAction::Deny, &[], None, &[], Some("x-debug")),
        ];
        let mut headers = http::HeaderMap::new();
        let ask = |ip: &str, method: &str, path: &str, headers: &http::HeaderMap| {
            first_match(
                &rules,
                ip.parse().unwrap(),
                Some(&RequestFacts {
                    method,
                    path,
                    headers,
                }),
            )
        };
        assert_eq!(
            ask("10.1.2.3", "GET", "/admin/x", &headers),
            Some((0, RuleAction::Deny)),
            "order: deny first"
        );
        assert_eq!(
            ask("::ffff:10.1.2.3", "GET", "/adminx", &headers),
            Some((2, RuleAction::Bypass)),
            "a path prefix is whole segments; a mapped v4 address is v4"
        );
        assert_eq!(
            ask("192.0.2.1", "GET", "/health", &headers),
            Some((1, RuleAction::Bypass))
        );
        assert_eq!(
            ask("192.0.2.1", "POST", "/health", &headers),
            None,
            "all conditions must hold"
        );
        assert_eq!(ask("192.0.2.1", "GET", "/app", &headers), None);
        headers.insert("x-debug", "1".parse().unwrap());
        assert_eq!(
            ask("192.0.2.1", "GET", "/app", &headers),
            Some((3, RuleAction::Deny))
        );
        // A connection (no request) matches only the address-only rules.
        assert_eq!(
            first_match(&rules, "10.0.0.1".parse().unwrap(), None),
            Some((2, RuleAction::Bypass))
        );
        assert_eq!(
            first_match(&rules, "192.0.2.1".parse().unwrap(), None),
            None
        );
    }
}
