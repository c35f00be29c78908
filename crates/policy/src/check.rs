//! Text → a checked [`PolicyFile`], or every error at once, each with its
//! path (`grants[2].dst[0]: tag "tag:web" has no owner`).
//!
//! The TOML is walked by hand rather than deserialised, so that one run
//! reports every unknown key and every bad value, not only the first.

use crate::model::{
    valid_account, Dst, DstObject, Grant, Method, PolicyFile, PortRange, Proto, Src, SshGrant,
    SshPrincipal, TestCase, TestTarget, SSH_EXTENSIONS,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One thing wrong with a policy file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyError {
    /// Where: `grants[2].dst[0]`, `groups."group:eng"`, or `toml` for syntax.
    pub path: String,
    /// What, in words an operator can act on.
    pub message: String,
}

/// Every error of a file, in the order of the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Largest policy file accepted (a thousand grants is about 200 KiB).
pub const MAX_POLICY_LEN: usize = 4 << 20;

struct Errors(Vec<PolicyError>);

impl Errors {
    fn at(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(PolicyError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Parses and checks a policy file.
pub fn parse(text: &str) -> Result<PolicyFile, PolicyErrors> {
    let mut errors = Errors(Vec::new());
    if text.len() > MAX_POLICY_LEN {
        errors.at(
            "file",
            format!("{} bytes, over the {MAX_POLICY_LEN}-byte limit", text.len()),
        );
        return Err(PolicyErrors(errors.0));
    }
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            errors.at("toml", message + &line_of(text, e.span()));
            return Err(PolicyErrors(errors.0));
        }
    };
    let mut file = PolicyFile::default();
    for (key, value) in &table {
        match key.as_str() {
            "groups" => file.groups = groups(value, &mut errors),
            "tags" => file.tags = tags(value, &mut errors),
            "hosts" => file.hosts = hosts(value, &mut errors),
            "grants" | "tests" => {}
            other => errors.at(
                key_path(other),
                "unknown key (expected groups, tags, hosts, grants, tests)",
            ),
        }
    }
    if let Some(v) = table.get("grants") {
        for_each_table(v, "grants", &mut errors, |i, t, errors| {
            let path = format!("grants[{i}]");
            if let Some(g) = grant(&path, t, &file, errors) {
                file.grants.push(g);
            }
        });
    }
    if let Some(v) = table.get("tests") {
        for_each_table(v, "tests", &mut errors, |i, t, errors| {
            let path = format!("tests[{i}]");
            if let Some(c) = test_case(&path, t, &file, errors) {
                file.tests.push(c);
            }
        });
    }
    if errors.0.is_empty() {
        Ok(file)
    } else {
        Err(PolicyErrors(errors.0))
    }
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|s| {
        let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
        format!(" (line {line})")
    })
    .unwrap_or_default()
}

fn for_each_table(
    v: &toml::Value,
    path: &str,
    errors: &mut Errors,
    mut f: impl FnMut(usize, &toml::Table, &mut Errors),
) {
    let Some(items) = v.as_array() else {
        errors.at(path, format!("expected an array of tables ([[{path}]])"));
        return;
    };
    for (i, item) in items.iter().enumerate() {
        match item.as_table() {
            Some(t) => f(i, t, errors),
            None => errors.at(format!("{path}[{i}]"), "expected a table"),
        }
    }
}

fn strings(v: &toml::Value, path: &str, errors: &mut Errors) -> Vec<String> {
    match v {
        toml::Value::String(s) => vec![s.clone()],
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item.as_str() {
                Some(s) => Some(s.to_owned()),
                None => {
                    errors.at(format!("{path}[{i}]"), "expected a string");
                    None
                }
            })
            .collect(),
        _ => {
            errors.at(path, "expected a string or an array of strings");
            Vec::new()
        }
    }
}

/// A key as it would be written in TOML: bare when it can be, quoted (with
/// escapes) otherwise, so an empty or odd key still names a path.
fn key_path(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

fn quoted(key: &str) -> String {
    format!("\"{key}\"")
}

/// A user: an email address (lower-cased).
fn email(s: &str) -> Option<String> {
    let (local, domain) = s.split_once('@')?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@.-_+".contains(c))
        && !domain.contains('@');
    ok.then(|| s.to_ascii_lowercase())
}

/// Whether `s` is an email address the policy can name a user by: the
/// one rule for user emails, in policies and wherever users are made.
pub fn valid_email(s: &str) -> bool {
    email(s).is_some()
}

/// Whether `tag` is spelled `tag:NAME` (NAME: a-z, 0-9, - and _): the one
/// rule for tags, in policies and wherever else they are written (sites).
pub fn valid_tag(tag: &str) -> bool {
    tag.strip_prefix("tag:").is_some_and(name_ok)
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn groups(v: &toml::Value, errors: &mut Errors) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let Some(t) = v.as_table() else {
        errors.at("groups", "expected a table of \"group:NAME\" = [members]");
        return out;
    };
    for (key, members) in t {
        let path = format!("groups.{}", quoted(key));
        match key.strip_prefix("group:") {
            Some(n) if name_ok(n) => {}
            _ => {
                errors.at(
                    &path,
                    "a group is named \"group:NAME\" (NAME: a-z, 0-9, - and _)",
                );
                continue;
            }
        }
        let mut list = Vec::new();
        for (i, m) in strings(members, &path, errors).into_iter().enumerate() {
            match email(&m) {
                Some(e) => list.push(e),
                None if m.starts_with("group:") => errors.at(
                    format!("{path}[{i}]"),
                    format!("\"{m}\": groups hold users, not other groups"),
                ),
                None => errors.at(
                    format!("{path}[{i}]"),
                    format!("\"{m}\" is not an email address"),
                ),
            }
        }
        out.insert(key.clone(), list);
    }
    out
}

fn tags(v: &toml::Value, errors: &mut Errors) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let Some(t) = v.as_table() else {
        errors.at("tags", "expected a table of \"tag:NAME\" = [owners]");
        return out;
    };
    for (key, owners) in t {
        let path = format!("tags.{}", quoted(key));
        if !valid_tag(key) {
            errors.at(
                &path,
                "a tag is named \"tag:NAME\" (NAME: a-z, 0-9, - and _)",
            );
            continue;
        }
        let list = strings(owners, &path, errors);
        if list.is_empty() {
            errors.at(&path, "a tag needs at least one owner (a user or a group)");
        }
        for (i, o) in list.iter().enumerate() {
            if email(o).is_none() && !o.starts_with("group:") {
                errors.at(
                    format!("{path}[{i}]"),
                    format!("\"{o}\": an owner is a user (email) or a group"),
                );
            }
        }
        out.insert(key.clone(), list);
    }
    // Group owners must exist (checked once groups are known: see `grant`).
    out
}

fn hosts(v: &toml::Value, errors: &mut Errors) -> BTreeMap<String, crate::model::Net> {
    let mut out = BTreeMap::new();
    let Some(t) = v.as_table() else {
        errors.at("hosts", "expected a table of NAME = \"address or CIDR\"");
        return out;
    };
    for (key, addr) in t {
        let path = format!("hosts.{}", key_path(key));
        if !name_ok(key) {
            errors.at(&path, "a host name is a-z, 0-9, - and _");
            continue;
        }
        match addr.as_str().map(crate::model::Net::parse) {
            Some(Ok(net)) => {
                out.insert(key.clone(), net);
            }
            Some(Err(e)) => errors.at(&path, e),
            None => errors.at(&path, "expected a string (an address or a CIDR)"),
        }
    }
    out
}

const GRANT_KEYS: &[&str] = &["src", "dst", "proto", "paths", "methods", "ssh", "within"];

fn grant(path: &str, t: &toml::Table, file: &PolicyFile, errors: &mut Errors) -> Option<Grant> {
    let before = errors.0.len();
    for key in t.keys() {
        if !GRANT_KEYS.contains(&key.as_str()) {
            errors.at(
                format!("{path}.{key}"),
                "unknown key (expected src, dst, proto, paths, methods, ssh, within)",
            );
        }
    }
    let mut src = Vec::new();
    match t.get("src") {
        None => errors.at(format!("{path}.src"), "missing: who the grant is for"),
        Some(v) => {
            let p = format!("{path}.src");
            let items = strings(v, &p, errors);
            if items.is_empty() {
                errors.at(&p, "empty: a grant for nobody");
            }
            for (i, s) in items.iter().enumerate() {
                match source(s, file) {
                    Ok(s) => src.push(s),
                    Err(e) => errors.at(format!("{p}[{i}]"), e),
                }
            }
        }
    }
    let mut dst = Vec::new();
    match t.get("dst") {
        None => errors.at(format!("{path}.dst"), "missing: what the grant allows"),
        Some(v) => {
            let p = format!("{path}.dst");
            let items = strings(v, &p, errors);
            if items.is_empty() {
                errors.at(&p, "empty: a grant to nothing");
            }
            for (i, d) in items.iter().enumerate() {
                match destination(d, file) {
                    Ok(d) => dst.push(d),
                    Err(e) => errors.at(format!("{p}[{i}]"), e),
                }
            }
        }
    }
    let proto = match t.get("proto") {
        None => Proto::Any,
        Some(v) => match v.as_str().map(Proto::parse) {
            Some(Some(p)) => p,
            _ => {
                errors.at(
                    format!("{path}.proto"),
                    "expected \"tcp\", \"udp\" or \"any\"",
                );
                Proto::Any
            }
        },
    };
    let mut paths = Vec::new();
    if let Some(v) = t.get("paths") {
        let p = format!("{path}.paths");
        for (i, s) in strings(v, &p, errors).into_iter().enumerate() {
            match path_prefix(&s) {
                Ok(()) => paths.push(s),
                Err(e) => errors.at(format!("{p}[{i}]"), e),
            }
        }
    }
    let mut methods = Vec::new();
    if let Some(v) = t.get("methods") {
        let p = format!("{path}.methods");
        for (i, s) in strings(v, &p, errors).into_iter().enumerate() {
            match Method::parse(&s) {
                Some(m) => methods.push(m),
                None => errors.at(
                    format!("{p}[{i}]"),
                    format!("\"{s}\" is not an HTTP method (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)"),
                ),
            }
        }
    }
    let ssh = t
        .get("ssh")
        .and_then(|v| ssh_grant(&format!("{path}.ssh"), v, errors));
    let within = t.get("within").and_then(|v| {
        let p = format!("{path}.within");
        match v.as_str().map(window) {
            Some(Ok(secs)) => Some(secs),
            Some(Err(e)) => {
                errors.at(&p, e);
                None
            }
            None => {
                errors.at(&p, "expected a duration like \"15m\"");
                None
            }
        }
    });
    if (!paths.is_empty() || !methods.is_empty()) && proto == Proto::Udp {
        errors.at(
            path,
            "paths and methods are for http resources; this grant is udp only",
        );
    }
    (errors.0.len() == before).then_some(Grant {
        src,
        dst,
        proto,
        paths,
        methods,
        ssh,
        within,
    })
}

/// A grant's `within`: `90s`, `15m`, `1h` (one number, one unit), from a
/// second to a day, in seconds.
fn window(s: &str) -> Result<u32, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u32 = n
        .parse()
        .map_err(|_| format!("\"{s}\" is not a duration like \"15m\" (s, m or h)"))?;
    let secs = match unit {
        "s" => n.checked_mul(1),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => {
            return Err(format!(
                "\"{s}\" is not a duration like \"15m\" (s, m or h)"
            ))
        }
    };
    match secs {
        Some(secs) if (1..=86_400).contains(&secs) => Ok(secs),
        _ => Err(format!("\"{s}\": a window from 1s to 24h")),
    }
}

/// A grant's `ssh = { principals, extensions, sudo }`.
fn ssh_grant(path: &str, v: &toml::Value, errors: &mut Errors) -> Option<SshGrant> {
    let Some(t) = v.as_table() else {
        errors.at(path, "expected a table: { principals, extensions, sudo }");
        return None;
    };
    let before = errors.0.len();
    let mut out = SshGrant::default();
    for (key, value) in t {
        let p = format!("{path}.{}", key_path(key));
        match key.as_str() {
            "principals" => {
                out.principals.clear();
                for (i, s) in strings(value, &p, errors).into_iter().enumerate() {
                    if s == "autogroup:self" {
                        out.principals.push(SshPrincipal::Own);
                    } else if valid_account(&s) {
                        out.principals.push(SshPrincipal::Account(s));
                    } else {
                        errors.at(
                            format!("{p}[{i}]"),
                            format!("\"{s}\" is not autogroup:self or a Unix account name (a-z, 0-9, _ and -, at most 32)"),
                        );
                    }
                }
                if out.principals.is_empty() {
                    errors.at(&p, "empty: a certificate for no account");
                }
                out.principals.sort();
                out.principals.dedup();
            }
            "extensions" => {
                out.extensions.clear();
                for (i, s) in strings(value, &p, errors).into_iter().enumerate() {
                    if SSH_EXTENSIONS.contains(&s.as_str()) {
                        out.extensions.push(s);
                    } else {
                        errors.at(
                            format!("{p}[{i}]"),
                            format!("\"{s}\" is not one of {}", SSH_EXTENSIONS.join(", ")),
                        );
                    }
                }
                out.extensions.sort();
                out.extensions.dedup();
            }
            "sudo" => match value.as_str() {
                Some(r) if name_ok(r) => out.sudo = Some(r.to_owned()),
                _ => errors.at(&p, "a sudo role is a name (a-z, 0-9, - and _)"),
            },
            _ => errors.at(&p, "unknown key (expected principals, extensions, sudo)"),
        }
    }
    (errors.0.len() == before).then_some(out)
}

/// A grant's source.
pub(crate) fn source(s: &str, file: &PolicyFile) -> Result<Src, String> {
    if s == "*" {
        return Ok(Src::Anyone);
    }
    if s == "autogroup:member" {
        return Ok(Src::Member);
    }
    if let Some(rest) = s.strip_prefix("autogroup:") {
        return Err(format!(
            "unknown autogroup \"{rest}\" (there is autogroup:member: any signed-in user)"
        ));
    }
    if s.starts_with("group:") {
        return if file.groups.contains_key(s) {
            Ok(Src::Group(s.to_owned()))
        } else {
            Err(format!("group \"{s}\" is not defined in [groups]"))
        };
    }
    if s.starts_with("tag:") {
        return owned_tag(s, file).map(Src::Tag);
    }
    if let Some(id) = s.strip_prefix("key:") {
        return if !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            Ok(Src::Key(id.to_owned()))
        } else {
            Err(format!(
                "\"{s}\": an API key is named key:ID (its public id)"
            ))
        };
    }
    match email(s) {
        Some(e) => Ok(Src::User(e)),
        None => Err(format!(
            "\"{s}\" is not a user (email), group:, tag:, key:, autogroup:member or *"
        )),
    }
}

fn owned_tag(s: &str, file: &PolicyFile) -> Result<String, String> {
    match file.tags.get(s) {
        None => Err(format!("tag \"{s}\" has no owner: declare it in [tags]")),
        Some(owners) => {
            for o in owners {
                if o.starts_with("group:") && !file.groups.contains_key(o) {
                    return Err(format!(
                        "tag \"{s}\" is owned by group \"{o}\", which is not defined"
                    ));
                }
            }
            Ok(s.to_owned())
        }
    }
}

/// Splits `OBJECT[:PORTS]`, where OBJECT may itself be `tag:NAME` or
/// `host:NAME`, and an IPv6 address or network is written in brackets
/// (`[fd00::]/64:443`). Returns the object (brackets removed), the ports,
/// and whether it was bracketed.
fn split_ports(s: &str) -> (String, Option<&str>, bool) {
    if let Some(rest) = s.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return (s.to_owned(), None, false);
        };
        let addr = &rest[..end];
        let after = &rest[end + 1..];
        let (len, ports) = match after.strip_prefix('/') {
            Some(l) => match l.split_once(':') {
                Some((l, p)) => (Some(l), Some(p)),
                None => (Some(l), None),
            },
            None => (None, after.strip_prefix(':')),
        };
        let object = match len {
            Some(l) => format!("{addr}/{l}"),
            None => addr.to_owned(),
        };
        return (object, ports, true);
    }
    let prefixed = s.starts_with("tag:") || s.starts_with("host:");
    let colons = s.matches(':').count();
    if (prefixed && colons >= 2) || (!prefixed && colons >= 1) {
        let (a, b) = s.rsplit_once(':').expect("counted");
        (a.to_owned(), Some(b), false)
    } else {
        (s.to_owned(), None, false)
    }
}

/// A grant's destination: `OBJECT[:PORTS]`.
fn destination(d: &str, file: &PolicyFile) -> Result<Dst, String> {
    let (object, ports, bracketed) = split_ports(d);
    let object = object.as_str();
    let ports = match ports {
        None | Some("*") => Vec::new(),
        Some(p) => ports_of(p).map_err(|e| format!("\"{d}\": {e}"))?,
    };
    let object = if object == "*" {
        DstObject::Any
    } else if object.starts_with("tag:") {
        DstObject::Tag(owned_tag(object, file)?)
    } else if let Some(h) = object.strip_prefix("host:") {
        match file.hosts.get(h) {
            Some(net) => DstObject::Net(*net),
            None => return Err(format!("host \"{h}\" is not defined in [hosts]")),
        }
    } else if bracketed || object.starts_with(|c: char| c.is_ascii_digit()) {
        DstObject::Net(crate::model::Net::parse(object).map_err(|e| format!("\"{d}\": {e}"))?)
    } else if object.starts_with("group:") || object.contains('@') {
        return Err(format!(
            "\"{d}\": a destination is a resource, tag:, host:, an address or CIDR, or *; users and groups go in src"
        ));
    } else if resource_name_ok(object) {
        DstObject::Resource(object.to_owned())
    } else {
        return Err(format!(
            "\"{d}\" is not a resource name, tag:, host:, an address or CIDR, or *"
        ));
    };
    Ok(Dst { object, ports })
}

fn resource_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn ports_of(p: &str) -> Result<Vec<PortRange>, String> {
    let mut out = Vec::new();
    for part in p.split(',') {
        let range = match part.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let n = port(part)?;
                (n, n)
            }
        };
        if range.0 > range.1 {
            return Err(format!("port range {part} runs backwards"));
        }
        out.push(PortRange(range.0, range.1));
    }
    Ok(out)
}

fn port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "\"{s}\" is not a port (1-65535, a range a-b, or *)"
        )),
    }
}

/// A path prefix matched on the normalised path: it must itself be normal.
fn path_prefix(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("\"{p}\": a path starts with /"));
    }
    if p.contains("//")
        || p.split('/').any(|seg| seg == "." || seg == "..")
        || p.contains(['%', ';', '\\', '?', '#'])
        || p.chars().any(|c| c.is_control() || c == ' ')
    {
        return Err(format!(
            "\"{p}\" is not a normalised path (no //, . or .. segments, %, ;, \\, ? or #): requests are matched after normalisation"
        ));
    }
    Ok(())
}

const TEST_KEYS: &[&str] = &["src", "groups", "accept", "deny"];

fn test_case(
    path: &str,
    t: &toml::Table,
    file: &PolicyFile,
    errors: &mut Errors,
) -> Option<TestCase> {
    let before = errors.0.len();
    for key in t.keys() {
        if !TEST_KEYS.contains(&key.as_str()) {
            errors.at(
                format!("{path}.{key}"),
                "unknown key (expected src, groups, accept, deny)",
            );
        }
    }
    let src = match t.get("src").and_then(|v| v.as_str()) {
        Some(s) => match source(s, file) {
            Ok(Src::User(_)) | Ok(Src::Key(_)) | Ok(Src::Tag(_)) => s.to_ascii_lowercase(),
            Ok(_) => {
                errors.at(
                    format!("{path}.src"),
                    format!("\"{s}\": a test is for one principal: a user, key: or tag:"),
                );
                String::new()
            }
            Err(e) => {
                errors.at(format!("{path}.src"), e);
                String::new()
            }
        },
        None => {
            errors.at(format!("{path}.src"), "missing: a user, key: or tag:");
            String::new()
        }
    };
    let mut groups = BTreeSet::new();
    if let Some(v) = t.get("groups") {
        let p = format!("{path}.groups");
        for (i, g) in strings(v, &p, errors).into_iter().enumerate() {
            if file.groups.contains_key(&g) {
                groups.insert(g);
            } else {
                errors.at(
                    format!("{p}[{i}]"),
                    format!("group \"{g}\" is not defined in [groups]"),
                );
            }
        }
    }
    let mut targets = |key: &str| -> Vec<TestTarget> {
        let mut out = Vec::new();
        if let Some(v) = t.get(key) {
            let p = format!("{path}.{key}");
            for (i, s) in strings(v, &p, errors).into_iter().enumerate() {
                match TestTarget::parse(&s, file) {
                    Ok(target) => out.push(target),
                    Err(e) => errors.at(format!("{p}[{i}]"), e),
                }
            }
        }
        out
    };
    let accept = targets("accept");
    let deny = targets("deny");
    if accept.is_empty() && deny.is_empty() && errors.0.len() == before {
        errors.at(path, "a test with nothing to accept or deny");
    }
    (errors.0.len() == before).then_some(TestCase {
        src,
        groups: groups.into_iter().collect(),
        accept,
        deny,
    })
}
