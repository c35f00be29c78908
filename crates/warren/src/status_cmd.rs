//! `warren edge status`: the admin API's site list as a table or JSON.

use crate::cli::StatusArgs;
use crate::Failure;
use anyhow::{anyhow, Context};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

async fn get(base: &str, path: &str, token: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--admin must be an http:// URL (the admin listener)"))?
        .trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("connecting to the admin API at {authority}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let token = token.ok_or_else(|| {
        anyhow!("the admin API needs a token: --token or WARREN_TOKEN (the first one is in the edge's data_dir/admin-token)")
    })?;
    let req = hyper::Request::get(path)
        .header("host", authority)
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<bytes::Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes().to_vec();
    if !status.is_success() {
        return Err(anyhow!(
            "admin API answered {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(body)
}

pub(crate) async fn run(args: StatusArgs) -> Result<(), Failure> {
    let body = get(&args.admin, "/api/v1/sites", args.token.as_deref()).await?;
    if args.json {
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    let sites: Vec<Value> =
        serde_json::from_slice(&body).context("decoding the admin API's answer")?;
    println!(
        "{:<16} {:<8} {:<14} {:<8} {:<5} {:<22} {:<21} {:>7} {:>12} {:>12}",
        "SITE",
        "STATUS",
        "AGENT",
        "VERSION",
        "VIA",
        "REMOTE",
        "SINCE",
        "STREAMS",
        "BYTES IN",
        "BYTES OUT"
    );
    for site in &sites {
        let id = site["id"].as_str().unwrap_or("?");
        let status = site["status"].as_str().unwrap_or("?");
        let agents = site["agents"].as_array().cloned().unwrap_or_default();
        if agents.is_empty() {
            println!("{id:<16} {status:<8} -");
        }
        for a in agents {
            println!(
                "{:<16} {:<8} {:<14} {:<8} {:<5} {:<22} {:<21} {:>7} {:>12} {:>12}",
                id,
                status,
                a["instance"].as_str().unwrap_or("?"),
                a["version"].as_str().unwrap_or("?"),
                a["transport"].as_str().unwrap_or("?"),
                a["remote"].as_str().unwrap_or("?"),
                a["connected_since"].as_str().unwrap_or("?"),
                a["active_streams"].as_u64().unwrap_or(0),
                a["bytes_in"].as_u64().unwrap_or(0),
                a["bytes_out"].as_u64().unwrap_or(0),
            );
        }
        if let Some(r) = site["last_refusal"].as_object() {
            println!(
                "  last refusal {}: {} → {} ({})",
                r.get("at").and_then(Value::as_str).unwrap_or("?"),
                r.get("resource").and_then(Value::as_str).unwrap_or("?"),
                r.get("target").and_then(Value::as_str).unwrap_or("?"),
                r.get("message").and_then(Value::as_str).unwrap_or("?"),
            );
        }
    }
    Ok(())
}
