//! A provider's claims mapped to policy groups, sans I/O.
//!
//! Two ways, both bounded: every value of one claim (`groups_claim`)
//! becomes a group of that name, and rules put a user whose claim is (or
//! lists) a value in a named group. Values that could not be a group name
//! (1-64 of `A-Z a-z 0-9 - _ .`) are skipped, and at most [`MAX_GROUPS`]
//! are kept: a provider says who someone is, it cannot flood the edge.

use serde_json::Value;

/// The most groups one sign-on gives.
pub const MAX_GROUPS: usize = 64;

/// `group:NAME` for a value that can be a group name.
pub fn group_name(value: &str) -> Option<String> {
    let bare = value.strip_prefix("group:").unwrap_or(value);
    let ok = (1..=64).contains(&bare.len())
        && bare
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    ok.then(|| format!("group:{bare}"))
}

/// The values of claim `name`: a string, or the strings of an array.
fn values<'a>(claims: &'a Value, name: &str) -> Vec<&'a str> {
    match claims.get(name) {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The policy groups `claims` (a verified ID token's payload) put a user
/// in: sorted, without repeats, at most [`MAX_GROUPS`].
pub fn groups<'r>(
    claims: &Value,
    groups_claim: Option<&str>,
    rules: impl IntoIterator<Item = (&'r str, &'r str, &'r str)>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(name) = groups_claim {
        out.extend(values(claims, name).into_iter().filter_map(group_name));
    }
    for (claim, value, group) in rules {
        if values(claims, claim).contains(&value) {
            out.extend(group_name(group));
        }
    }
    out.sort();
    out.dedup();
    out.truncate(MAX_GROUPS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_become_groups_by_name_and_by_rule() {
        let claims = json!({
            "groups": ["ops", "dev team", "group:admins", 7],
            "department": "finance",
        });
        assert_eq!(
            groups(
                &claims,
                Some("groups"),
                [("department", "finance", "money")]
            ),
            vec!["group:admins", "group:money", "group:ops"],
            "`dev team` is no group name; a number is no value"
        );
        assert_eq!(
            groups(&claims, None, [("groups", "dev", "dev")]),
            Vec::<String>::new(),
            "a rule matches whole values only"
        );
        let many: Vec<String> = (0..1000).map(|i| format!("g{i}")).collect();
        assert_eq!(
            groups(&json!({ "groups": many }), Some("groups"), []).len(),
            MAX_GROUPS
        );
        assert!(groups(&json!({}), Some("groups"), []).is_empty());
    }
}
