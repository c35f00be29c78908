//! `warren resource pin|password|share|links|unshare`: a resource's own
//! doors through the admin API (the resource must list the door in its
//! `auth` for it to open). Secrets are read from a file (or `-`, stdin),
//! never from the command line, where `ps` would show them.

use crate::api_client::ApiArgs;
use crate::Failure;
use clap::Args;
use hyper::Method;
use serde_json::{json, Value};
use std::path::PathBuf;

/// `warren resource pin NAME` / `password NAME`.
#[derive(Args, Debug)]
pub(crate) struct SecretArgs {
    /// Resource name.
    name: String,
    /// A file holding the PIN or password (`-`: standard input).
    #[arg(long, required_unless_present = "remove", conflicts_with = "remove")]
    file: Option<PathBuf>,
    /// Remove it instead (every pass it gave stops opening).
    #[arg(long)]
    remove: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// `warren resource share NAME`.
#[derive(Args, Debug)]
pub(crate) struct ShareArgs {
    /// Resource name.
    name: String,
    /// How long the link opens the resource (`24h`, `7d`); default: until revoked.
    #[arg(long)]
    expires: Option<String>,
    /// What it is for.
    #[arg(long, default_value = "")]
    note: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// `warren resource links NAME`.
#[derive(Args, Debug)]
pub(crate) struct LinksArgs {
    /// Resource name.
    name: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// `warren resource unshare ID`.
#[derive(Args, Debug)]
pub(crate) struct UnshareArgs {
    /// The link's id (`warren resource links NAME`).
    id: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// Sets or removes a PIN (`kind` = "pin") or password.
pub(crate) async fn secret(kind: &str, args: SecretArgs) -> Result<(), Failure> {
    let path = format!("/api/v1/resources/{}/{kind}", args.name);
    match &args.file {
        Some(file) if !args.remove => {
            let secret = crate::user_cmd::read_password(file)?;
            args.api
                .call(Method::PUT, &path, Some(&json!({ kind: secret })))
                .await?;
            println!(
                "`{}`'s {kind} is set; passes opened with an earlier one no longer open it.",
                args.name
            );
        }
        _ => {
            args.api.call(Method::DELETE, &path, None).await?;
            println!("`{}` has no {kind} now.", args.name);
        }
    }
    Ok(())
}

pub(crate) async fn share(args: ShareArgs) -> Result<(), Failure> {
    let mut body = json!({ "note": args.note });
    if let Some(e) = &args.expires {
        body["expires_in"] = json!(e);
    }
    let link = args
        .api
        .call(
            Method::POST,
            &format!("/api/v1/resources/{}/links", args.name),
            Some(&body),
        )
        .await?;
    println!(
        "link {} for `{}` ({}); shown only now:\n\n  {}\n\nor, for a machine:  Warren-Link: {}",
        link["id"].as_str().unwrap_or("?"),
        args.name,
        match link["expires_ms"].as_i64() {
            Some(ms) => format!("until {}", crate::duration::unix_ms_text(ms)),
            None => "until revoked".to_owned(),
        },
        link["url"].as_str().unwrap_or("(the resource has no host)"),
        link["token"].as_str().unwrap_or("?"),
    );
    Ok(())
}

pub(crate) async fn links(args: LinksArgs) -> Result<(), Failure> {
    let list = args
        .api
        .call(
            Method::GET,
            &format!("/api/v1/resources/{}/links", args.name),
            None,
        )
        .await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return Ok(());
    }
    println!("{:<14} {:<10} {:<26} NOTE", "ID", "STATE", "EXPIRES");
    let now = crate::duration::now_ms();
    for l in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        let state = if !l["revoked_ms"].is_null() {
            "revoked"
        } else if l["expires_ms"].as_i64().is_some_and(|e| e <= now) {
            "expired"
        } else {
            "live"
        };
        let expires = l["expires_ms"]
            .as_i64()
            .map_or("never".to_owned(), crate::duration::unix_ms_text);
        println!(
            "{:<14} {:<10} {:<26} {}",
            l["id"].as_str().unwrap_or("?"),
            state,
            expires,
            l["note"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

pub(crate) async fn unshare(args: UnshareArgs) -> Result<(), Failure> {
    let link: Value = args
        .api
        .call(Method::DELETE, &format!("/api/v1/links/{}", args.id), None)
        .await?;
    println!(
        "link {} for `{}` revoked: it and the cookies it gave stop opening now.",
        args.id,
        link["resource"].as_str().unwrap_or("?")
    );
    Ok(())
}
