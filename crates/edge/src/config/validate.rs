//! Every rule of the configuration file, checked at once so that every
//! violation is reported with its file, line and key.

use super::raw::{
    RawAcme, RawDevices, RawEdge, RawFile, RawHealth, RawNotify, RawResource, RawSite, RawTls,
};
use super::*;
use std::collections::HashSet;

/// How long access decisions are kept without `[audit] retention`.
const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
use toml::Spanned;
use warren_ingress::router::Router;

pub(super) struct Validator<'a> {
    text: &'a str,
    source: &'a str,
    errors: Vec<ConfigError>,
}

pub(super) type Span = Option<std::ops::Range<usize>>;

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl<'a> Validator<'a> {
    pub(super) fn new(text: &'a str, source: &'a str) -> Self {
        Validator {
            text,
            source,
            errors: Vec::new(),
        }
    }

    pub(super) fn finish(self, config: EdgeConfig) -> Result<EdgeConfig, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }

    /// The problems found so far.
    pub(super) fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }

    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    pub(super) fn error(&mut self, span: Span, key: impl Into<String>, message: impl Into<String>) {
        let line = span
            .filter(|s| !(s.start == 0 && s.end == 0))
            .map(|s| self.line_of(s.start));
        self.errors.push(ConfigError {
            file: self.source.to_owned(),
            line,
            key: key.into(),
            message: message.into(),
        });
    }

    fn socket_addr(&mut self, value: &Spanned<String>, key: &str) -> Option<SocketAddr> {
        match value.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    Some(value.span()),
                    key,
                    format!(
                        "`{}` is not an IP:PORT address (e.g. 0.0.0.0:7443)",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn duration(&mut self, span: Span, value: &str, key: &str) -> Option<Duration> {
        match humantime::parse_duration(value) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    span,
                    key,
                    format!("`{value}` is not a duration like 30s or 5m: {e}"),
                );
                None
            }
        }
    }

    fn host_name(&mut self, span: Span, key: &str, host: &str) -> Option<String> {
        let (wild, bare) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        match warren_ingress::client_hello::host_name(bare.as_bytes()) {
            Ok(h) if !bare.ends_with('.') => Some(if wild { format!("*.{h}") } else { h }),
            _ => {
                self.error(
                    span,
                    key,
                    format!("`{host}` is not a host name (letters, digits, `-`, `.`; `*.` in front for a wildcard)"),
                );
                None
            }
        }
    }

    pub(super) fn validate(&mut self, raw: RawFile, base: &Path) -> EdgeConfig {
        let edge_span = raw.edge.span();
        let edge = raw.edge.into_inner();
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let tunnel_listen = self.socket_addr(&edge.tunnel_listen, "edge.tunnel_listen");
        let admin_listen = self.socket_addr(&edge.admin_listen, "edge.admin_listen");
        let http_listen = edge
            .http_listen
            .as_ref()
            .and_then(|v| self.socket_addr(v, "edge.http_listen"));
        let https_listen = edge
            .https_listen
            .as_ref()
            .and_then(|v| self.socket_addr(v, "edge.https_listen"));
        let database = edge.database.as_ref().and_then(|db| {
            let url = db.get_ref().expose();
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                Some(db.get_ref().clone())
            } else {
                self.error(
                    Some(db.span()),
                    "edge.database",
                    "expected a postgres://user@host:port/db URL (without the key, the edge keeps its state in SQLite in data_dir)".to_owned(),
                );
                None
            }
        });
        let drain_timeout = match &edge.drain_timeout {
            Some(d) => self.duration(Some(d.span()), d.get_ref(), "edge.drain_timeout"),
            None => Some(Duration::from_secs(30)),
        };
        let access_log = edge
            .access_log
            .as_ref()
            .map(|a| match a.get_ref().as_str() {
                "stderr" | "-" => AccessLog::Stderr,
                path => AccessLog::File(resolve(PathBuf::from(path))),
            });
        let tunnel_cert = self.tunnel_cert(&edge, edge_span.clone(), &resolve);
        let notify = raw
            .notify
            .map(|n| self.notify(n, &resolve))
            .unwrap_or_default();
        let tls = match raw.tls {
            Some(t) => self.tls(t, &resolve),
            None => TlsSettings::default(),
        };
        let policy = raw.policy.and_then(|p| self.policy(p, &resolve));
        let sites = self.sites(raw.site, policy.as_ref());
        let resources = self.resources(raw.resource, &sites, https_listen.is_some());
        if https_listen.is_none() && edge.https_listen.is_none() && tls != TlsSettings::default() {
            self.error(
                Some(edge_span.clone()),
                "edge.https_listen",
                "[tls] is set but https_listen is not: nothing would use the certificates",
            );
        }
        let auth = raw
            .auth
            .and_then(|a| self.auth(a, https_listen.is_some(), &resources, &resolve));
        if auth.is_none() {
            if let Some(r) = resources.iter().find(|r| r.kind == ResourceKind::Ssh) {
                self.error(
                    None,
                    "auth.host",
                    format!(
                        "ssh resource `{}` is reached through the sign-in host: set [auth] host",
                        r.name
                    ),
                );
            }
        }
        if let Some(default) = &tls.default_host {
            let routed = resources
                .iter()
                .any(|r| r.kind == ResourceKind::Http && r.host.as_deref() == Some(default));
            if !routed {
                self.error(
                    None,
                    "tls.default_host",
                    format!("`{default}` is not the host of any http resource"),
                );
            }
        }
        let devices = raw.devices.and_then(|d| self.devices(d));
        if devices.is_none() {
            if let Some(r) = resources.iter().find(|r| r.kind == ResourceKind::Private) {
                self.error(
                    None,
                    "devices",
                    format!(
                        "private resource `{}` is reached by devices: set [devices] listen and endpoint",
                        r.name
                    ),
                );
            }
        }
        let audit_retention = match raw.audit {
            Some(a) => {
                let span = Some(a.span());
                match a.into_inner().retention {
                    Some(d) => self
                        .duration(span, &d, "audit.retention")
                        .unwrap_or_default(),
                    None => DEFAULT_AUDIT_RETENTION,
                }
            }
            None => DEFAULT_AUDIT_RETENTION,
        };
        EdgeConfig {
            audit_retention,
            devices,
            source: self.source.to_owned(),
            data_dir: resolve(edge.data_dir),
            tunnel_listen: tunnel_listen.unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
            http_listen,
            https_listen,
            admin_listen: admin_listen.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()),
            tunnel_cert,
            database,
            drain_timeout: drain_timeout.unwrap_or_default(),
            access_log,
            tls,
            notify,
            sites,
            resources,
            policy,
            auth,
        }
    }

    /// `[auth]`: a host name of its own on the https listener.
    fn auth(
        &mut self,
        raw: Spanned<super::raw::RawAuth>,
        have_https: bool,
        resources: &[Resource],
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) -> Option<super::AuthSettings> {
        let span = Some(raw.span());
        let raw = raw.into_inner();
        let mut ok = true;
        let host = match raw.host.strip_prefix("*.") {
            Some(_) => None,
            None => self.host_name(span.clone(), "auth.host", &raw.host),
        };
        let Some(host) = host else {
            if raw.host.starts_with("*.") {
                self.error(
                    span,
                    "auth.host",
                    "the sign-in host is one name, not a wildcard",
                );
            }
            return None;
        };
        if !have_https {
            self.error(
                span.clone(),
                "auth.host",
                "[auth] needs https_listen: sign-in pages are served over https only",
            );
            ok = false;
        }
        if let Some(r) = resources
            .iter()
            .find(|r| r.host.as_deref() == Some(host.as_str()))
        {
            self.error(
                span.clone(),
                "auth.host",
                format!(
                    "`{host}` is resource `{}`'s host; the sign-in host needs its own",
                    r.name
                ),
            );
            ok = false;
        }
        let session_lifetime = match &raw.session_lifetime {
            Some(d) => self.duration(span.clone(), d, "auth.session_lifetime")?,
            None => Duration::from_secs(24 * 3600),
        };
        let idle_timeout = match &raw.idle_timeout {
            Some(d) => Some(self.duration(span.clone(), d, "auth.idle_timeout")?),
            None => None,
        };
        let mut oidc = Vec::new();
        for (i, p) in raw.oidc.into_iter().enumerate() {
            match self.oidc(span.clone(), i, p, resolve) {
                Some(p) if oidc.iter().any(|o: &super::OidcProvider| o.name == p.name) => {
                    self.error(
                        span.clone(),
                        format!("auth.oidc[{i}].name"),
                        format!("two providers are named `{}`", p.name),
                    );
                    ok = false;
                }
                Some(p) => oidc.push(p),
                None => ok = false,
            }
        }
        ok.then_some(super::AuthSettings {
            host,
            session_lifetime,
            idle_timeout,
            require_2fa: raw.require_2fa,
            oidc,
        })
    }

    /// `[[auth.oidc]]`: one single sign-on provider.
    fn oidc(
        &mut self,
        span: Span,
        i: usize,
        raw: super::raw::RawOidc,
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) -> Option<super::OidcProvider> {
        let key = format!("auth.oidc[{i}]");
        let before = self.errors.len();
        let name_ok = (1..=32).contains(&raw.name.len())
            && raw
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            self.error(
                span.clone(),
                format!("{key}.name"),
                "1-32 of a-z 0-9 - (it is part of the sign-in URLs)",
            );
        }
        match url::Url::parse(&raw.issuer) {
            Ok(u) if u.scheme() == "https" && u.host().is_some() && u.query().is_none() => {}
            Ok(_) => self.error(
                span.clone(),
                format!("{key}.issuer"),
                "an https URL with no query (the provider's issuer, exactly as its discovery document names it)",
            ),
            Err(e) => self.error(span.clone(), format!("{key}.issuer"), format!("not a URL: {e}")),
        }
        if raw.client_id.is_empty() {
            self.error(span.clone(), format!("{key}.client_id"), "empty");
        }
        let client_secret = match (raw.client_secret, raw.client_secret_file) {
            (Some(s), None) => Some(s),
            (None, Some(f)) => {
                let f = resolve(f);
                match std::fs::read_to_string(&f) {
                    Ok(text) if !text.trim().is_empty() => {
                        Some(warren_proto::Secret::new(text.trim().to_owned()))
                    }
                    Ok(_) => {
                        self.error(
                            span.clone(),
                            format!("{key}.client_secret_file"),
                            format!("{} is empty", f.display()),
                        );
                        None
                    }
                    Err(e) => {
                        self.error(
                            span.clone(),
                            format!("{key}.client_secret_file"),
                            format!("{}: {e}", f.display()),
                        );
                        None
                    }
                }
            }
            (Some(_), Some(_)) => {
                self.error(
                    span.clone(),
                    format!("{key}.client_secret"),
                    "give either client_secret or client_secret_file, not both",
                );
                None
            }
            (None, None) => {
                self.error(
                    span.clone(),
                    format!("{key}.client_secret"),
                    "missing client_secret (or client_secret_file)",
                );
                None
            }
        };
        let mut scopes = raw
            .scopes
            .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        let group_name = |g: &str| {
            let g = g.strip_prefix("group:").unwrap_or(g);
            (!g.is_empty()
                && g.len() <= 64
                && g.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
            .then(|| format!("group:{g}"))
        };
        let mut group_rules = Vec::new();
        for (j, r) in raw.groups.into_iter().enumerate() {
            match group_name(&r.group) {
                Some(group) if !r.claim.is_empty() => group_rules.push(super::GroupRule {
                    claim: r.claim,
                    value: r.value,
                    group,
                }),
                _ => self.error(
                    span.clone(),
                    format!("{key}.groups[{j}]"),
                    "needs a claim and a group (1-64 of A-Z a-z 0-9 - _ .)",
                ),
            }
        }
        let mut allowed_domains = Vec::new();
        for (j, d) in raw.allowed_domains.iter().enumerate() {
            let d = d.trim_start_matches('@').to_ascii_lowercase();
            match self.host_name(span.clone(), &format!("{key}.allowed_domains[{j}]"), &d) {
                Some(d) if !d.starts_with("*.") => allowed_domains.push(d),
                Some(_) => self.error(
                    span.clone(),
                    format!("{key}.allowed_domains[{j}]"),
                    "a domain, not a wildcard (subdomains are not included; list each)",
                ),
                None => {}
            }
        }
        let ca = raw.ca.map(resolve);
        if let Some(ca) = &ca {
            if let Err(err) = std::fs::metadata(ca) {
                self.error(
                    span.clone(),
                    format!("{key}.ca"),
                    format!("{}: {err}", ca.display()),
                );
            }
        }
        if self.errors.len() != before {
            return None;
        }
        Some(super::OidcProvider {
            display_name: raw.display_name.unwrap_or_else(|| raw.name.clone()),
            name: raw.name,
            issuer: raw.issuer,
            client_id: raw.client_id,
            client_secret: client_secret?,
            scopes,
            groups_claim: raw.groups_claim,
            group_rules,
            allowed_domains,
            create_users: raw.create_users,
            ca,
        })
    }

    /// `[policy] file`: read and compiled now, so a bad policy is refused
    /// with the rest of the file (every error, named by the policy's path).
    fn policy(
        &mut self,
        raw: Spanned<super::raw::RawPolicy>,
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) -> Option<super::PolicySettings> {
        let span = Some(raw.span());
        let file = resolve(raw.into_inner().file);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                self.error(
                    span,
                    "policy.file",
                    format!("reading {}: {e}", file.display()),
                );
                return None;
            }
        };
        match warren_policy::compile(&text) {
            Ok(policy) => Some(super::PolicySettings {
                source: super::PolicySource::File(file),
                version: 0,
                text,
                policy: std::sync::Arc::new(policy),
            }),
            Err(errors) => {
                for e in errors.0 {
                    self.error(
                        span.clone(),
                        "policy.file",
                        format!("{}: {e}", file.display()),
                    );
                }
                None
            }
        }
    }

    fn tunnel_cert(
        &mut self,
        edge: &RawEdge,
        edge_span: std::ops::Range<usize>,
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) -> Option<(PathBuf, PathBuf)> {
        match (&edge.tunnel_cert, &edge.tunnel_key) {
            (Some(c), Some(k)) => Some((resolve(c.clone()), resolve(k.clone()))),
            (None, None) => None,
            _ => {
                self.error(
                    Some(edge_span),
                    "edge.tunnel_cert",
                    "tunnel_cert and tunnel_key go together",
                );
                None
            }
        }
    }

    fn notify(&mut self, raw: RawNotify, resolve: &dyn Fn(PathBuf) -> PathBuf) -> NotifySettings {
        let span: Span = None;
        let mut out = NotifySettings::default();
        if let Some(d) = &raw.debounce {
            if let Some(d) = self.duration(span.clone(), d, "notify.debounce") {
                out.debounce = d;
            }
        }
        if let Some(w) = raw.webhook {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://"))
                || w.url
                    .parse::<http::Uri>()
                    .map_or(true, |u| u.host().is_none())
            {
                self.error(
                    span.clone(),
                    "notify.webhook.url",
                    format!("`{}` is not an http:// or https:// URL", w.url),
                );
            } else {
                out.webhook = Some(WebhookSettings {
                    url: w.url,
                    secret: w.secret,
                });
            }
        }
        if let Some(e) = raw.email {
            let before = self.errors.len();
            if let Err(msg) = crate::config::smtp::parse_smtp_url(e.smtp.expose()) {
                self.error(span.clone(), "notify.email.smtp", msg);
            }
            for (key, addr) in
                std::iter::once(("from", &e.from)).chain(e.to.iter().map(|t| ("to", t)))
            {
                if let Err(err) = addr.parse::<lettre::message::Mailbox>() {
                    self.error(
                        span.clone(),
                        format!("notify.email.{key}"),
                        format!("`{addr}` is not a mail address: {err}"),
                    );
                }
            }
            if e.to.is_empty() {
                self.error(
                    span.clone(),
                    "notify.email.to",
                    "at least one recipient is needed",
                );
            }
            let ca = e.ca.map(resolve);
            if let Some(ca) = &ca {
                if let Err(err) = std::fs::metadata(ca) {
                    self.error(
                        span.clone(),
                        "notify.email.ca",
                        format!("{}: {err}", ca.display()),
                    );
                }
            }
            if self.errors.len() == before {
                out.email = Some(EmailSettings {
                    smtp: e.smtp,
                    from: e.from,
                    to: e.to,
                    ca,
                });
            }
        }
        out
    }

    fn tls(&mut self, raw: Spanned<RawTls>, resolve: &dyn Fn(PathBuf) -> PathBuf) -> TlsSettings {
        let span = Some(raw.span());
        let raw = raw.into_inner();
        let certs = raw
            .certs
            .into_iter()
            .map(|p| CertFiles {
                cert: resolve(p.cert),
                key: resolve(p.key),
            })
            .collect();
        let acme = raw.acme.and_then(|a| self.acme(a, span.clone(), resolve));
        let default_host = raw
            .default_host
            .and_then(|h| self.host_name(span.clone(), "tls.default_host", &h));
        TlsSettings {
            certs,
            acme,
            default_host,
        }
    }

    fn acme(
        &mut self,
        raw: RawAcme,
        span: Span,
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) -> Option<AcmeSettings> {
        if !raw.directory.starts_with("https://") {
            self.error(
                span.clone(),
                "tls.acme.directory",
                format!("`{}` is not an https:// URL", raw.directory),
            );
        }
        let renew_before = match &raw.renew_before {
            Some(d) => self.duration(span, d, "tls.acme.renew_before")?,
            None => Duration::from_secs(30 * 24 * 3600),
        };
        Some(AcmeSettings {
            email: raw.email,
            directory: raw.directory,
            ca: raw.ca.map(resolve),
            renew_before,
        })
    }

    fn sites(
        &mut self,
        raw: Vec<Spanned<RawSite>>,
        policy: Option<&super::PolicySettings>,
    ) -> BTreeMap<String, SiteConfig> {
        let mut sites = BTreeMap::new();
        for (i, site) in raw.into_iter().enumerate() {
            let span = site.span();
            let site = site.into_inner();
            let key = format!("site[{i}]");
            if !valid_id(&site.id) {
                self.error(
                    Some(span.clone()),
                    format!("{key}.id"),
                    format!(
                        "`{}` is not a valid id (1-64 of A-Z a-z 0-9 - _ .)",
                        site.id
                    ),
                );
            }
            let secret = match (site.secret, site.secret_hash) {
                (Some(s), None) if s.is_empty() => {
                    self.error(Some(span.clone()), format!("{key}.secret"), "empty secret");
                    None
                }
                (Some(s), None) => Some(SiteSecret::plain(&s)),
                (None, Some(h)) => match SiteSecret::from_hash(&h) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        self.error(Some(span.clone()), format!("{key}.secret_hash"), e);
                        None
                    }
                },
                (Some(_), Some(_)) => {
                    self.error(
                        Some(span.clone()),
                        key.clone(),
                        "give either secret or secret_hash, not both",
                    );
                    None
                }
                (None, None) => {
                    self.error(
                        Some(span.clone()),
                        key.clone(),
                        "missing secret (or secret_hash)",
                    );
                    None
                }
            };
            for (j, tag) in site.tags.iter().enumerate() {
                if !warren_policy::valid_tag(tag) {
                    self.error(
                        Some(span.clone()),
                        format!("{key}.tags[{j}]"),
                        format!("`{tag}`: a tag is named tag:NAME (NAME: a-z, 0-9, - and _)"),
                    );
                } else if let Some(p) = policy {
                    if !p.policy.file().tags.contains_key(tag) {
                        self.error(
                            Some(span.clone()),
                            format!("{key}.tags[{j}]"),
                            format!(
                                "tag `{tag}` is not declared in the policy's [tags] ({}): a tag needs an owner there",
                                p.source
                            ),
                        );
                    }
                }
            }
            if sites.contains_key(&site.id) {
                self.error(
                    Some(span),
                    format!("{key}.id"),
                    format!("duplicate site id `{}`", site.id),
                );
                continue;
            }
            if let Some(secret) = secret {
                sites.insert(
                    site.id.clone(),
                    SiteConfig {
                        id: site.id,
                        secret,
                        tags: site.tags,
                    },
                );
            }
        }
        sites
    }

    fn resources(
        &mut self,
        raw: Vec<Spanned<RawResource>>,
        sites: &BTreeMap<String, SiteConfig>,
        have_https: bool,
    ) -> Vec<Resource> {
        let mut resources = Vec::new();
        let mut names = HashSet::new();
        let mut claims = Claims::default();
        let site_known = |id: &str| sites.contains_key(id);
        for (i, res) in raw.into_iter().enumerate() {
            let span = Some(res.span());
            let key = format!("resource[{i}]");
            if !names.insert(res.get_ref().name.clone()) {
                self.error(
                    span.clone(),
                    format!("{key}.name"),
                    format!("duplicate resource name `{}`", res.get_ref().name),
                );
            }
            let Some(r) = self.resource(
                res.into_inner(),
                span.clone(),
                &key,
                &site_known,
                have_https,
            ) else {
                continue;
            };
            if let Err((field, message)) = claims.claim(&r) {
                self.error(span.clone(), format!("{key}.{field}"), message);
            }
            resources.push(r);
        }
        resources
    }

    /// Checks one resource on its own (no clash with others is looked
    /// for; see [`Claims`]). `key` prefixes every error's key.
    pub(super) fn resource_alone(
        &mut self,
        res: RawResource,
        key: &str,
        site_known: &dyn Fn(&str) -> bool,
        have_https: bool,
    ) -> Option<Resource> {
        self.resource(res, None, key, site_known, have_https)
    }

    fn resource(
        &mut self,
        res: RawResource,
        span: Span,
        key: &str,
        site_known: &dyn Fn(&str) -> bool,
        have_https: bool,
    ) -> Option<Resource> {
        if !valid_id(&res.name) {
            self.error(
                span.clone(),
                format!("{key}.name"),
                format!(
                    "`{}` is not a valid name (1-64 of A-Z a-z 0-9 - _ .)",
                    res.name
                ),
            );
        }
        let private = res.kind.get_ref() == "private";
        if res.targets.is_empty() && !private {
            self.error(
                span.clone(),
                format!("{key}.targets"),
                "at least one target is needed",
            );
        }
        for (j, t) in res.targets.iter().enumerate() {
            if !site_known(&t.site) {
                self.error(
                    span.clone(),
                    format!("{key}.targets[{j}].site"),
                    format!("no [[site]] with id `{}`", t.site),
                );
            }
            if let Err(msg) = check_target_address(&t.address) {
                self.error(span.clone(), format!("{key}.targets[{j}].address"), msg);
            }
        }
        let kind = match res.kind.get_ref().as_str() {
            "tcp" => ResourceKind::Tcp,
            "udp" => ResourceKind::Udp,
            "http" => ResourceKind::Http,
            "tls" => ResourceKind::Tls,
            "ssh" => ResourceKind::Ssh,
            "private" => ResourceKind::Private,
            other => {
                self.error(
                    Some(res.kind.span()),
                    format!("{key}.type"),
                    format!("unknown type `{other}`; use http, tls, tcp, udp, ssh or private"),
                );
                return None;
            }
        };
        let by_name = matches!(kind, ResourceKind::Http | ResourceKind::Tls);
        let ssh = kind == ResourceKind::Ssh;
        if ssh && res.targets.len() > 1 {
            self.error(
                span.clone(),
                format!("{key}.targets"),
                "an ssh resource has one target (one host's sshd: the account is made there)",
            );
        }
        // Which keys apply to which type.
        let misplaced = [
            ("host", res.host.is_some() && !by_name, "http and tls"),
            (
                "listen",
                res.listen.is_some() && (ssh || private),
                "tcp and udp",
            ),
            ("site", res.site.is_some() && !private, "private"),
            ("address", res.address.is_some() && !private, "private"),
            ("ports", res.ports.is_some() && !private, "private"),
            ("alias", res.alias.is_some() && !private, "private"),
            (
                "targets",
                !res.targets.is_empty() && private,
                "http, tls, tcp, udp and ssh",
            ),
            (
                "health",
                res.health.is_some() && private,
                "http, tls, tcp and udp",
            ),
            (
                "balance",
                res.balance.is_some() && private,
                "http, tls, tcp and udp",
            ),
            (
                "path",
                res.path.is_some() && kind != ResourceKind::Http,
                "http",
            ),
            ("listen", res.listen.is_some() && by_name, "tcp and udp"),
            (
                "proxy_protocol",
                res.proxy_protocol.is_some()
                    && !matches!(kind, ResourceKind::Tcp | ResourceKind::Tls),
                "tcp and tls",
            ),
            (
                "idle_timeout",
                res.idle_timeout.is_some() && kind != ResourceKind::Udp,
                "udp",
            ),
        ];
        for (field, wrong, applies) in misplaced {
            if wrong {
                self.error(
                    span.clone(),
                    format!("{key}.{field}"),
                    format!(
                        "`{field}` applies to {applies} resources, not {}",
                        kind.as_str()
                    ),
                );
            }
        }
        let host = if by_name {
            match &res.host {
                Some(h) => self.host_name(span.clone(), &format!("{key}.host"), h),
                None => {
                    self.error(
                        span.clone(),
                        format!("{key}.host"),
                        format!(
                            "{} resources need `host` (the name visitors use)",
                            kind.as_str()
                        ),
                    );
                    None
                }
            }
        } else {
            None
        };
        if by_name && !have_https {
            self.error(
                span.clone(),
                format!("{key}.type"),
                format!(
                    "{} resources are served on edge.https_listen, which is not set",
                    kind.as_str()
                ),
            );
        }
        let private_spec = if private {
            self.private(&res, span.clone(), key, site_known)
        } else {
            None
        };
        let listen = match (&res.listen, by_name || ssh || private) {
            (Some(l), false) => self.socket_addr(l, &format!("{key}.listen")),
            (None, false) => {
                self.error(
                    span.clone(),
                    format!("{key}.listen"),
                    "tcp and udp resources need `listen` (the edge port)",
                );
                None
            }
            (_, true) => None,
        };
        let proxy_protocol = res.proxy_protocol.as_ref().and_then(|p| match p.get_ref() {
            toml::Value::Boolean(false) => None,
            toml::Value::Boolean(true) => Some(ProxyVersion::V2),
            toml::Value::String(s) if s == "v2" => Some(ProxyVersion::V2),
            toml::Value::String(s) if s == "v1" => Some(ProxyVersion::V1),
            other => {
                self.error(
                    Some(p.span()),
                    format!("{key}.proxy_protocol"),
                    format!("`{other}` is not one of false, true, \"v1\", \"v2\""),
                );
                None
            }
        });
        let balance = match res
            .balance
            .as_ref()
            .map(|b| (b.span(), b.get_ref().as_str()))
        {
            None | Some((_, "least_active")) => Balance::LeastActive,
            Some((_, "round_robin")) => Balance::RoundRobin,
            Some((_, "sticky")) => Balance::Sticky,
            Some((s, other)) => {
                self.error(
                    Some(s),
                    format!("{key}.balance"),
                    format!("`{other}` is not one of least_active, round_robin, sticky"),
                );
                Balance::LeastActive
            }
        };
        let idle_timeout = match &res.idle_timeout {
            Some(d) => self
                .duration(Some(d.span()), d.get_ref(), &format!("{key}.idle_timeout"))
                .unwrap_or_default(),
            None => Duration::from_secs(60),
        };
        let health = res
            .health
            .map(|h| self.health(h, kind, &format!("{key}.health")));
        let keep_encoded_slashes = match res
            .encoded_slashes
            .as_ref()
            .map(|v| (v.span(), v.get_ref().as_str()))
        {
            None | Some((_, "refuse")) => false,
            Some((_, "keep")) if kind == ResourceKind::Http => true,
            Some((s, "keep")) => {
                self.error(
                    Some(s),
                    format!("{key}.encoded_slashes"),
                    "`encoded_slashes` applies to http resources",
                );
                false
            }
            Some((s, other)) => {
                self.error(
                    Some(s),
                    format!("{key}.encoded_slashes"),
                    format!("`{other}` is not one of refuse, keep"),
                );
                false
            }
        };
        let source_address = res.source_address.as_ref().and_then(|v| {
            let at = format!("{key}.source_address");
            if !ssh {
                self.error(
                    Some(v.span()),
                    at,
                    "`source_address` applies to ssh resources",
                );
                return None;
            }
            let nets: Vec<&str> = v.get_ref().split(',').map(str::trim).collect();
            for n in &nets {
                if let Err(e) = warren_policy::Net::parse(n) {
                    self.error(Some(v.span()), at.clone(), e);
                    return None;
                }
            }
            Some(nets.join(","))
        });
        let (auth, ways) = self.auth_methods(res.auth.as_ref(), kind, key);
        if ssh && auth == super::Auth::Public {
            self.error(
                span.clone(),
                format!("{key}.auth"),
                "an ssh resource cannot be public: certificates are for users the policy grants",
            );
        }
        if private && auth == super::Auth::Public {
            self.error(
                span.clone(),
                format!("{key}.auth"),
                "a private resource cannot be public: devices reach it as the policy grants their users",
            );
        }
        if (ssh || private) && !res.rules.is_empty() {
            self.error(
                span.clone(),
                format!("{key}.rules"),
                format!("rules apply to http, tls, tcp and udp resources; who may reach an {} resource is the policy's", kind.as_str()),
            );
        }
        let rules = self.rules(res.rules, kind, span.clone(), key);
        // Returned even when something above was wrong, so that the rules
        // across resources (duplicate ports and routes) are checked too; a
        // file with any error never becomes a configuration.
        Some(Resource {
            name: res.name,
            kind,
            listen,
            host,
            path: res.path,
            targets: res
                .targets
                .into_iter()
                .map(|t| Target {
                    site: t.site,
                    address: t.address,
                })
                .collect(),
            health: health.flatten(),
            proxy_protocol,
            balance,
            fail_closed: res.fail_closed,
            idle_timeout,
            keep_encoded_slashes,
            source_address,
            auth,
            login: ways.login,
            basic: ways.basic,
            doors: ways.doors,
            rules,
            private: private_spec,
        })
    }

    /// A private resource's `site`, `address`, `ports` and `alias`.
    fn private(
        &mut self,
        res: &RawResource,
        span: Span,
        key: &str,
        site_known: &dyn Fn(&str) -> bool,
    ) -> Option<Private> {
        let site = match &res.site {
            Some(site) if site_known(site) => Some(site.clone()),
            Some(site) => {
                self.error(
                    span.clone(),
                    format!("{key}.site"),
                    format!("no [[site]] with id `{site}`"),
                );
                None
            }
            None => {
                self.error(
                    span.clone(),
                    format!("{key}.site"),
                    "private resources need `site` (whose agents reach the address)",
                );
                None
            }
        };
        let net = match &res.address {
            Some(a) => match warren_policy::Net::parse(a.get_ref()) {
                Ok(net) if net.addr.is_ipv4() => Some(net),
                Ok(_) => {
                    self.error(
                        Some(a.span()),
                        format!("{key}.address"),
                        "devices reach IPv4 addresses and networks only (not yet IPv6)",
                    );
                    None
                }
                Err(e) => {
                    self.error(Some(a.span()), format!("{key}.address"), e);
                    None
                }
            },
            None => {
                self.error(
                    span.clone(),
                    format!("{key}.address"),
                    "private resources need `address` (`192.168.1.10` or `10.69.13.0/24`)",
                );
                None
            }
        };
        let ports = match &res.ports {
            None => vec![PortSpec {
                lo: 1,
                hi: 65535,
                proto: warren_policy::Proto::Any,
            }],
            Some(list) => {
                let mut ports = Vec::new();
                for (j, p) in list.get_ref().iter().enumerate() {
                    match parse_port_spec(p) {
                        Ok(spec) => ports.push(spec),
                        Err(e) => self.error(Some(list.span()), format!("{key}.ports[{j}]"), e),
                    }
                }
                if list.get_ref().is_empty() {
                    self.error(
                        Some(list.span()),
                        format!("{key}.ports"),
                        "an empty list reaches nothing: leave `ports` out for every port",
                    );
                }
                ports
            }
        };
        let alias = res.alias.as_ref().and_then(|a| {
            let at = format!("{key}.alias");
            let name = self.host_name(span.clone(), &at, a)?;
            if name.starts_with("*.") {
                self.error(span.clone(), at, "an alias is one name, not a wildcard");
                return None;
            }
            if net.is_some_and(|n| n.len != 32) {
                self.error(
                    span.clone(),
                    at,
                    "an alias names one address: `address` is a network",
                );
                return None;
            }
            Some(name)
        });
        Some(Private {
            site: site?,
            net: net?,
            ports,
            alias,
        })
    }

    /// `[devices]`.
    fn devices(&mut self, raw: Spanned<RawDevices>) -> Option<DevicesSettings> {
        let span = Some(raw.span());
        let raw = raw.into_inner();
        let listen = self.socket_addr(&raw.listen, "devices.listen");
        let endpoint = raw.endpoint.get_ref().trim().to_owned();
        let endpoint_ok = endpoint
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
        if !endpoint_ok {
            self.error(
                Some(raw.endpoint.span()),
                "devices.endpoint",
                format!("`{endpoint}` is not HOST:PORT (the address devices dial, e.g. vps.example.com:51820)"),
            );
        }
        let network = match &raw.address {
            None => Some(warren_policy::Net {
                addr: std::net::Ipv4Addr::new(100, 96, 0, 0).into(),
                len: 16,
            }),
            Some(a) => match warren_policy::Net::parse(a.get_ref()) {
                Ok(n) if n.addr.is_ipv4() && (8..=30).contains(&n.len) => Some(n),
                Ok(_) => {
                    self.error(
                        Some(a.span()),
                        "devices.address",
                        "an IPv4 network of /8 to /30 (`100.96.0.0/16`)",
                    );
                    None
                }
                Err(e) => {
                    self.error(Some(a.span()), "devices.address", e);
                    None
                }
            },
        };
        let mut dns_upstream = Vec::new();
        for (j, u) in raw.dns_upstream.unwrap_or_default().iter().enumerate() {
            match u.parse::<SocketAddr>() {
                Ok(a) => dns_upstream.push(a),
                Err(_) => self.error(
                    span.clone(),
                    format!("devices.dns_upstream[{j}]"),
                    format!("`{u}` is not IP:PORT"),
                ),
            }
        }
        Some(DevicesSettings {
            listen: listen?,
            endpoint: endpoint_ok.then_some(endpoint)?,
            network: network?,
            dns_upstream,
        })
    }

    /// A resource's `auth`: `"public"`, `"login"` (or `"sso"`, the same),
    /// or a list of the ways in it accepts (`login`, `basic`, `password`,
    /// `pin`, `link`).
    fn auth_methods(
        &mut self,
        raw: Option<&Spanned<toml::Value>>,
        kind: ResourceKind,
        key: &str,
    ) -> (super::Auth, Ways) {
        let mut ways = Ways {
            login: true,
            ..Ways::default()
        };
        let Some(raw) = raw else {
            return (super::Auth::Login, ways);
        };
        let span = Some(raw.span());
        let names: Vec<&str> = match raw.get_ref() {
            toml::Value::String(s) => vec![s.as_str()],
            toml::Value::Array(a) => a.iter().map(|v| v.as_str().unwrap_or("?")).collect(),
            _ => vec!["?"],
        };
        if names == ["public"] {
            return (super::Auth::Public, ways);
        }
        ways.login = false;
        for n in &names {
            match *n {
                "login" | "sso" => ways.login = true,
                "basic" | "password" | "pin" | "link" if kind != ResourceKind::Http => self.error(
                    span.clone(),
                    format!("{key}.auth"),
                    format!("`{n}` is for http resources"),
                ),
                "basic" => ways.basic = true,
                "password" => ways.doors.password = true,
                "pin" => ways.doors.pin = true,
                "link" => ways.doors.link = true,
                "public" => self.error(
                    span.clone(),
                    format!("{key}.auth"),
                    "`public` stands alone: a public resource needs no other way in",
                ),
                other => self.error(
                    span.clone(),
                    format!("{key}.auth"),
                    format!(
                        "`{other}` is not one of public, login, sso, basic, password, pin, link"
                    ),
                ),
            }
        }
        (super::Auth::Login, ways)
    }

    fn health(
        &mut self,
        raw: Spanned<RawHealth>,
        kind: ResourceKind,
        key: &str,
    ) -> Option<HealthCheck> {
        let span = Some(raw.span());
        let h = raw.into_inner();
        let default_kind = if kind == ResourceKind::Http || h.path.is_some() {
            "http"
        } else {
            "tcp"
        };
        let errors_before = self.errors.len();
        let probe = match h.kind.as_deref().unwrap_or(default_kind) {
            "tcp" => {
                if h.path.is_some() || h.method.is_some() || h.status.is_some() || h.host.is_some()
                {
                    self.error(
                        span.clone(),
                        key,
                        "path, method, status and host apply to http checks",
                    );
                }
                Probe::Tcp
            }
            "http" => {
                let path = h.path.unwrap_or_else(|| "/".into());
                let method = h
                    .method
                    .unwrap_or_else(|| "GET".into())
                    .to_ascii_uppercase();
                let mut status = Vec::new();
                for s in h.status.unwrap_or_else(|| vec!["200-399".into()]) {
                    match parse_status_range(&s) {
                        Some(r) => status.push(r),
                        None => self.error(
                            span.clone(),
                            format!("{key}.status"),
                            format!("`{s}` is not a status or range like 200 or 200-399"),
                        ),
                    }
                }
                let probe = Probe::Http {
                    path,
                    method,
                    host: h.host,
                    status,
                };
                if let Err((field, why)) = probe.check_fields() {
                    self.error(span.clone(), format!("{key}.{field}"), why);
                }
                probe
            }
            other => {
                self.error(
                    span.clone(),
                    format!("{key}.type"),
                    format!("`{other}` is not http or tcp"),
                );
                Probe::Tcp
            }
        };
        let interval = match &h.interval {
            Some(d) => self.duration(span.clone(), d, &format!("{key}.interval")),
            None => Some(Duration::from_secs(10)),
        };
        let timeout = match &h.timeout {
            Some(d) => self.duration(span.clone(), d, &format!("{key}.timeout")),
            None => Some(Duration::from_secs(2)),
        };
        let (interval, timeout) = (interval?, timeout?);
        if interval < Duration::from_millis(100)
            || timeout.is_zero()
            || timeout > interval.max(Duration::from_secs(1)) * 10
        {
            self.error(
                span.clone(),
                key,
                "interval must be at least 100ms and timeout between 1ms and ten intervals",
            );
        }
        let healthy_threshold = h.healthy_threshold.unwrap_or(2);
        let unhealthy_threshold = h.unhealthy_threshold.unwrap_or(3);
        if !(1..=100).contains(&healthy_threshold) || !(1..=100).contains(&unhealthy_threshold) {
            self.error(span, key, "thresholds must be between 1 and 100");
        }
        (self.errors.len() == errors_before).then_some(HealthCheck {
            probe,
            interval,
            timeout,
            healthy_threshold,
            unhealthy_threshold,
        })
    }
}

/// What resources claim on the edge: tcp/udp listen addresses, http
/// host + path routes and tls SNI names. A name is either terminated (http)
/// or passed through (tls), never both.
#[derive(Default)]
pub(super) struct Claims {
    listens: HashSet<(ResourceKind, SocketAddr)>,
    http_routes: Router<()>,
    tls_hosts: HashSet<String>,
    aliases: HashSet<String>,
    private_nets: HashSet<String>,
}

impl Claims {
    /// Claims what `r` needs, or says which field clashes and why (nothing
    /// is claimed then).
    pub(super) fn claim(&mut self, r: &Resource) -> Result<(), (&'static str, String)> {
        if let Some(listen) = r.listen {
            if listen.port() != 0 && !self.listens.insert((r.kind, listen)) {
                return Err((
                    "listen",
                    format!(
                        "{listen} is already used by another {} resource",
                        r.kind.as_str()
                    ),
                ));
            }
        }
        if let Some(p) = &r.private {
            if let Some(alias) = &p.alias {
                if !self.aliases.insert(alias.clone()) {
                    return Err((
                        "alias",
                        format!("`{alias}` is already another private resource's alias"),
                    ));
                }
            }
            let net = format!("{}/{}", p.net.addr, p.net.len);
            if !self.private_nets.insert(net.clone()) {
                return Err((
                    "address",
                    format!("{net} is already another private resource (a narrower network or one address of it may be)"),
                ));
            }
        }
        let Some(host) = r.host.clone() else {
            return Ok(());
        };
        match r.kind {
            ResourceKind::Http => {
                if self.tls_hosts.contains(&host) {
                    return Err(("host", format!("`{host}` is already a tls (passthrough) resource; a name is either terminated or passed through")));
                }
                self.http_routes
                    .insert(&host, r.path.as_deref(), ())
                    .map_err(|e| ("path", e.to_string()))
            }
            ResourceKind::Tls => {
                if self.http_routes.has_host(&host) && !host.starts_with("*.") {
                    Err(("host", format!("`{host}` is already an http resource; a name is either terminated or passed through")))
                } else if !self.tls_hosts.insert(host.clone()) {
                    Err((
                        "host",
                        format!("`{host}` is already used by another tls resource"),
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// `3000/tcp`, `8000-8099/tcp`, `53/udp`, `443` (tcp and udp), `*`.
fn parse_port_spec(s: &str) -> Result<PortSpec, String> {
    let (ports, proto) = match s.split_once('/') {
        Some((p, "tcp")) => (p, warren_policy::Proto::Tcp),
        Some((p, "udp")) => (p, warren_policy::Proto::Udp),
        Some((_, other)) => return Err(format!("`{other}` is not tcp or udp")),
        None => (s, warren_policy::Proto::Any),
    };
    if ports == "*" {
        return Ok(PortSpec {
            lo: 1,
            hi: 65535,
            proto,
        });
    }
    let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
    match (lo.parse::<u16>(), hi.parse::<u16>()) {
        (Ok(lo), Ok(hi)) if lo != 0 && lo <= hi => Ok(PortSpec { lo, hi, proto }),
        _ => Err(format!(
            "`{s}` is not PORT[-PORT][/tcp|udp] (ports 1-65535, the first not above the last)"
        )),
    }
}

fn parse_status_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let (lo, hi): (u16, u16) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
}

/// Checks a target `host:port` (the agent's allowlist has the final word).
fn check_target_address(address: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').ok_or("unclosed `[`")?;
        (h, tail.strip_prefix(':').ok_or("missing :PORT")?)
    } else {
        address
            .rsplit_once(':')
            .ok_or_else(|| format!("`{address}` is not HOST:PORT"))?
    };
    if host.is_empty() {
        return Err(format!("`{address}` has an empty host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(format!("`{address}` has no valid port (1-65535)")),
    }
}

/// The ways into a resource its `auth` names.
#[derive(Default)]
struct Ways {
    login: bool,
    basic: bool,
    doors: super::Doors,
}
