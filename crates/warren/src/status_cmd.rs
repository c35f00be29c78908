//! `warren status` (also `warren edge status`): sites, agents, versions,
//! health, streams and bytes, and devices, from `GET /api/v1/status`, as
//! tables or JSON.

use crate::api_client::ApiArgs;
use crate::Failure;
use hyper::Method;
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) api: ApiArgs,
    /// Print the API's JSON instead of tables.
    #[arg(long)]
    pub(crate) json: bool,
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// Prints `rows` under `header` with columns padded to fit.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let out: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", out.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub(crate) async fn run(args: StatusArgs) -> Result<(), Failure> {
    let status = args.api.call(Method::GET, "/api/v1/status", None).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).unwrap_or_default()
        );
        return Ok(());
    }
    println!(
        "edge {}  ·  config version {}  ·  agents older than {} are refused\n",
        s(&status, "version"),
        n(&status, "config_version"),
        s(&status, "min_agent_version"),
    );
    let config_version = n(&status, "config_version");
    let mut rows = Vec::new();
    let empty = Vec::new();
    for site in status["sites"].as_array().unwrap_or(&empty) {
        let agents = site["agents"].as_array().unwrap_or(&empty);
        if agents.is_empty() {
            rows.push(vec![
                s(site, "id").to_owned(),
                s(site, "status").to_owned(),
                "-".into(),
            ]);
        }
        for a in agents {
            let mut notes = Vec::new();
            if a["on_old_secret"].as_bool() == Some(true) {
                notes.push("ON OLD SECRET".to_owned());
            }
            if a["draining"].as_bool() == Some(true) {
                notes.push("draining".to_owned());
            }
            if n(a, "config_version") != config_version {
                notes.push(format!("config v{} (behind)", n(a, "config_version")));
            }
            rows.push(vec![
                s(site, "id").to_owned(),
                s(site, "status").to_owned(),
                s(a, "instance").to_owned(),
                s(a, "version").to_owned(),
                s(a, "platform").to_owned(),
                s(a, "transport").to_owned(),
                s(a, "remote").to_owned(),
                s(a, "connected_since").to_owned(),
                n(a, "active_streams").to_string(),
                n(a, "bytes_in").to_string(),
                n(a, "bytes_out").to_string(),
                notes.join(", "),
            ]);
        }
        if let Some(r) = site["last_refusal"].as_object() {
            let r = Value::Object(r.clone());
            rows.push(vec![
                String::new(),
                "refused".into(),
                format!(
                    "{} {} → {}: {}",
                    s(&r, "at"),
                    s(&r, "resource"),
                    s(&r, "target"),
                    s(&r, "message")
                ),
            ]);
        }
    }
    print_table(
        &[
            "SITE",
            "STATUS",
            "AGENT",
            "VERSION",
            "PLATFORM",
            "VIA",
            "REMOTE",
            "SINCE",
            "STREAMS",
            "BYTES IN",
            "BYTES OUT",
            "NOTES",
        ],
        &rows,
    );
    println!();
    print_resources(&status["resources"]);
    if status["devices"].as_array().is_some_and(|d| !d.is_empty()) {
        println!();
        print_devices(&status["devices"]);
    }
    Ok(())
}

/// The resource table of `warren status` and `warren resource list`.
pub(crate) fn print_resources(resources: &Value) {
    let empty = Vec::new();
    let mut rows = Vec::new();
    for r in resources.as_array().unwrap_or(&empty) {
        let route = match (r["host"].as_str(), r["path"].as_str(), r["bound"].as_str()) {
            (Some(h), Some(p), _) => format!("{h}{p}"),
            (Some(h), None, _) => h.to_owned(),
            (None, _, Some(b)) => b.to_owned(),
            _ => s(r, "listen").to_owned(),
        };
        for t in r["targets"].as_array().unwrap_or(&empty) {
            rows.push(vec![
                s(r, "name").to_owned(),
                s(r, "type").to_owned(),
                route.clone(),
                format!("{}/{}", s(t, "site"), s(t, "address")),
                s(t, "health").to_owned(),
                s(r, "managed_by").to_owned(),
            ]);
        }
    }
    print_table(
        &[
            "RESOURCE",
            "TYPE",
            "ROUTE",
            "TARGET",
            "HEALTH",
            "MANAGED BY",
        ],
        &rows,
    );
}

/// The device table of `warren device list` and `warren status`.
pub(crate) fn print_devices(devices: &Value) {
    let empty = Vec::new();
    let rows: Vec<Vec<String>> = devices
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|d| {
            let stats = &d["stats"];
            let (handshake, flows) = if stats.is_object() {
                (
                    stats["last_handshake_secs"]
                        .as_u64()
                        .map_or_else(|| "never".to_owned(), ago),
                    stats["flows"].as_u64().unwrap_or(0).to_string(),
                )
            } else {
                // This edge runs no endpoint: nothing to say about traffic.
                ("-".to_owned(), "-".to_owned())
            };
            let tags: Vec<&str> = d["tags"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter_map(Value::as_str)
                .collect();
            vec![
                s(d, "name").to_owned(),
                s(d, "user").to_owned(),
                s(d, "address").to_owned(),
                tags.join(","),
                handshake,
                flows,
            ]
        })
        .collect();
    print_table(
        &["DEVICE", "USER", "ADDRESS", "TAGS", "HANDSHAKE", "FLOWS"],
        &rows,
    );
}

/// How long ago, for people: `42s ago`, `5m ago`, `3h ago`, `2d ago`.
fn ago(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s ago"),
        s if s < 2 * 3600 => format!("{}m ago", s / 60),
        s if s < 2 * 86400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::ago;

    #[test]
    fn handshakes_read_as_ages() {
        assert_eq!(ago(5), "5s ago");
        assert_eq!(ago(600), "10m ago");
        assert_eq!(ago(5 * 3600), "5h ago");
        assert_eq!(ago(3 * 86400), "3d ago");
    }
}
