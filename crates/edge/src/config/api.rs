//! Resources submitted through the API, checked by exactly the rules of the
//! config file.
//!
//! A resource arrives as JSON in the shape of a `[[resource]]` table. It is
//! turned into TOML text and read by the file's own parser and
//! [`Validator`], so the API cannot accept what the file would refuse (or
//! the other way round). Then [`Claims`] checks it against every other
//! resource being served: a clash is a conflict, not a validation error.

use super::raw::RawResource;
use super::validate::{Claims, Validator};
use super::*;
use serde::Deserialize;

/// Why a resource from the API was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiResourceError {
    /// The resource breaks rules of its own: every problem, keyed by field
    /// (`listen`, `targets[0].site`, ...).
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// It claims a name, host, route or port another resource has.
    #[error("{field}: {message}")]
    Conflict {
        /// The clashing field.
        field: String,
        /// With what.
        message: String,
    },
}

/// What a resource from the API is checked against.
pub struct ApiContext<'a> {
    /// Whether a site id exists (in the file or the store).
    pub site_known: &'a dyn Fn(&str) -> bool,
    /// Whether the edge has `https_listen` (http and tls need it).
    pub have_https: bool,
    /// Every other resource served (file and API), the one being replaced
    /// left out.
    pub others: &'a [Resource],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OneResource {
    resource: RawResource,
}

const SOURCE: &str = "request";

fn invalid(key: &str, message: impl Into<String>) -> ApiResourceError {
    ApiResourceError::Invalid(ConfigErrors(vec![ConfigError {
        file: SOURCE.into(),
        line: None,
        key: key.into(),
        message: message.into(),
    }]))
}

/// The first `null` in `value`, as a key path.
fn find_null(value: &serde_json::Value, path: &str) -> Option<String> {
    match value {
        serde_json::Value::Null => Some(path.to_owned()),
        serde_json::Value::Object(m) => m.iter().find_map(|(k, v)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            find_null(v, &p)
        }),
        serde_json::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_null(v, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// Validates one resource given as JSON (see the module docs).
pub fn parse_api_resource(
    spec: &serde_json::Value,
    cx: &ApiContext<'_>,
) -> Result<Resource, ApiResourceError> {
    if !spec.is_object() {
        return Err(invalid("(body)", "expected a JSON object"));
    }
    if let Some(key) = find_null(spec, "") {
        return Err(invalid(&key, "null is not a value here; leave the key out"));
    }
    let value = toml::Value::try_from(spec)
        .map_err(|e| invalid("(body)", format!("not representable: {e}")))?;
    let mut doc = toml::Table::new();
    doc.insert("resource".into(), value);
    let text =
        toml::to_string(&doc).map_err(|e| invalid("(body)", format!("not representable: {e}")))?;
    let raw: OneResource = toml::from_str(&text).map_err(|e| {
        // serde names the field in its message (`unknown field `x``,
        // `invalid type: ...` for `name`); the key is the body.
        invalid("(body)", e.message().trim_end())
    })?;
    let mut v = Validator::new(&text, SOURCE);
    let resource = v.resource_alone(raw.resource, "resource", cx.site_known, cx.have_https);
    let errors: Vec<ConfigError> = v
        .into_errors()
        .into_iter()
        .map(|e| ConfigError {
            line: None,
            key: e.key.strip_prefix("resource.").unwrap_or(&e.key).to_owned(),
            ..e
        })
        .collect();
    let resource = match resource {
        Some(r) if errors.is_empty() => r,
        _ => return Err(ApiResourceError::Invalid(ConfigErrors(errors))),
    };
    if cx.others.iter().any(|o| o.name == resource.name) {
        return Err(ApiResourceError::Conflict {
            field: "name".into(),
            message: format!("a resource named `{}` already exists", resource.name),
        });
    }
    let mut claims = Claims::default();
    for other in cx.others {
        // Others were accepted together already; a clash among them (which
        // the file's validation prevents) is not this request's doing.
        let _ = claims.claim(other);
    }
    claims
        .claim(&resource)
        .map_err(|(field, message)| ApiResourceError::Conflict {
            field: field.into(),
            message,
        })?;
    Ok(resource)
}
