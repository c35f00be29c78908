//! `warren site create|list|rotate|delete` and
//! `warren resource create|update|list|delete`: the admin API from the
//! command line.

use crate::api_client::ApiArgs;
use crate::status_cmd::{print_resources, print_table};
use crate::Failure;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub(crate) enum SiteCommand {
    /// Create a site; prints its secret (shown once) and the agent command.
    Create {
        /// Site id (a-z, 0-9, `-`, `_`).
        id: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// The edge's tunnel URL for the printed agent command (default:
        /// the API's host with the tunnel port).
        #[arg(long)]
        endpoint: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List sites and their agents.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Issue a new secret; agents on the old one keep working for the grace period.
    Rotate {
        /// Site id.
        id: String,
        /// How long the old secret keeps working (`0s` disconnects its agents now).
        #[arg(long, default_value = "24h")]
        grace: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Delete a site (refused while resources target it); its agents are disconnected.
    Delete {
        /// Site id.
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum ResourceCommand {
    /// Publish a resource; it serves when the command returns.
    Create(ResourceSpecArgs),
    /// Replace a resource made through the API (give every setting again).
    Update(ResourceSpecArgs),
    /// List resources with their targets' health.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Delete a resource made through the API; its port closes at once.
    Delete {
        /// Resource name.
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Set (`--file F`) or remove (`--remove`) the resource's PIN (its `auth` lists `pin`).
    Pin(crate::door_cmd::SecretArgs),
    /// Set or remove the resource's password (its `auth` lists `password`).
    Password(crate::door_cmd::SecretArgs),
    /// Make a share link (its `auth` lists `link`); the URL is shown once.
    Share(crate::door_cmd::ShareArgs),
    /// The resource's share links, live and dead.
    Links(crate::door_cmd::LinksArgs),
    /// Revoke a share link, and the cookies it gave.
    Unshare(crate::door_cmd::UnshareArgs),
}

/// A resource, as flags or as a JSON file in the config file's shape.
#[derive(Args, Debug)]
pub(crate) struct ResourceSpecArgs {
    /// Resource name.
    name: String,
    /// `http`, `tls`, `tcp` or `udp`.
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// http/tls: the Host / SNI name.
    #[arg(long)]
    host: Option<String>,
    /// http: path prefix.
    #[arg(long)]
    path: Option<String>,
    /// tcp/udp: the edge's `ip:port`.
    #[arg(long)]
    listen: Option<String>,
    /// `SITE=HOST:PORT`; repeatable.
    #[arg(long = "target", value_name = "SITE=HOST:PORT")]
    targets: Vec<String>,
    /// http health check path (checked by the site's agents).
    #[arg(long)]
    health_path: Option<String>,
    /// tcp/tls: `v1` or `v2`.
    #[arg(long)]
    proxy_protocol: Option<String>,
    /// `least_active`, `round_robin` or `sticky`.
    #[arg(long)]
    balance: Option<String>,
    /// The whole resource as JSON (the `[[resource]]` keys), `-` for stdin;
    /// flags given as well override its keys.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    api: ApiArgs,
}

impl ResourceSpecArgs {
    fn spec(&self) -> Result<Value, Failure> {
        let mut spec: Map<String, Value> = match &self.json {
            Some(path) => {
                let text = if path.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin())
                } else {
                    std::fs::read_to_string(path)
                }
                .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
                match serde_json::from_str(&text) {
                    Ok(Value::Object(m)) => m,
                    Ok(_) => {
                        return Err(Failure::Usage(format!(
                            "{}: expected a JSON object",
                            path.display()
                        )))
                    }
                    Err(e) => return Err(Failure::Usage(format!("{}: {e}", path.display()))),
                }
            }
            None => Map::new(),
        };
        spec.insert("name".into(), json!(self.name));
        let strings = [
            ("type", &self.kind),
            ("host", &self.host),
            ("path", &self.path),
            ("listen", &self.listen),
            ("proxy_protocol", &self.proxy_protocol),
            ("balance", &self.balance),
        ];
        for (key, value) in strings {
            if let Some(v) = value {
                spec.insert(key.into(), json!(v));
            }
        }
        if !self.targets.is_empty() {
            let mut targets = Vec::new();
            for t in &self.targets {
                let (site, address) = t.split_once('=').ok_or_else(|| {
                    Failure::Usage(format!("--target `{t}`: expected SITE=HOST:PORT"))
                })?;
                targets.push(json!({ "site": site, "address": address }));
            }
            spec.insert("targets".into(), Value::Array(targets));
        }
        if let Some(p) = &self.health_path {
            spec.insert("health".into(), json!({ "path": p }));
        }
        Ok(Value::Object(spec))
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

pub(crate) async fn site(cmd: SiteCommand) -> Result<(), Failure> {
    match cmd {
        SiteCommand::Create {
            id,
            name,
            endpoint,
            api,
        } => {
            let mut body = json!({ "id": id });
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            let site = api.call(Method::POST, "/api/v1/sites", Some(&body)).await?;
            let status = api.call(Method::GET, "/api/v1/status", None).await?;
            let port = status["tunnel_listen"]
                .as_str()
                .and_then(|a| a.rsplit_once(':'))
                .map_or("7443", |(_, p)| p)
                .to_owned();
            let endpoint = endpoint.unwrap_or_else(|| {
                let authority = api.authority().unwrap_or("127.0.0.1:7080");
                let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
                format!("https://{host}:{port}")
            });
            let secret = site["secret"].as_str().unwrap_or_default();
            println!("site `{id}` created. Its secret is shown this once:\n\n  {secret}\n");
            println!("Run the agent at the site (add --allow for each service it may reach):\n");
            println!(
                "  WARREN_SECRET='{secret}' warren site --endpoint {endpoint} --id {id} --pin {} --allow 127.0.0.1:8080/tcp",
                status["tunnel_pin"].as_str().unwrap_or("?")
            );
        }
        SiteCommand::List { json, api } => {
            let sites = api.call(Method::GET, "/api/v1/sites", None).await?;
            if json {
                println!("{}", pretty(&sites));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = sites
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|s| {
                    let agents = s["agents"].as_array().map_or(0, |a| a.len());
                    let old = s["agents"].as_array().map_or(0, |a| {
                        a.iter().filter(|a| a["on_old_secret"] == true).count()
                    });
                    vec![
                        s["id"].as_str().unwrap_or("?").to_owned(),
                        s["status"].as_str().unwrap_or("?").to_owned(),
                        agents.to_string(),
                        if old > 0 {
                            format!("{old} on old secret")
                        } else {
                            String::new()
                        },
                    ]
                })
                .collect();
            print_table(&["SITE", "STATUS", "AGENTS", "NOTES"], &rows);
        }
        SiteCommand::Rotate { id, grace, api } => {
            let path = format!("/api/v1/sites/{id}/rotate");
            let r = api
                .call(Method::POST, &path, Some(&json!({ "grace": grace })))
                .await?;
            println!(
                "new secret for site `{id}` (shown this once):\n\n  {}\n",
                r["secret"].as_str().unwrap_or_default()
            );
            match r["grace_s"].as_u64() {
                Some(0) | None => println!("agents on the old secret were disconnected."),
                Some(s) => println!(
                    "agents on the old secret keep working for {s} s; `warren status` flags them."
                ),
            }
        }
        SiteCommand::Delete { id, api } => {
            api.call(Method::DELETE, &format!("/api/v1/sites/{id}"), None)
                .await?;
            println!("site `{id}` deleted; its agents were disconnected.");
        }
    }
    Ok(())
}

pub(crate) async fn resource(cmd: ResourceCommand) -> Result<(), Failure> {
    match cmd {
        ResourceCommand::Create(args) => {
            let spec = args.spec()?;
            let r = args
                .api
                .call(Method::POST, "/api/v1/resources", Some(&spec))
                .await?;
            println!("resource `{}` created and serving.", args.name);
            print_bound(&args.api, &args.name, &r).await;
        }
        ResourceCommand::Update(args) => {
            let spec = args.spec()?;
            let path = format!("/api/v1/resources/{}", args.name);
            let r = args.api.call(Method::PUT, &path, Some(&spec)).await?;
            println!(
                "resource `{}` updated (version {}).",
                args.name, r["version"]
            );
        }
        ResourceCommand::List { json, api } => {
            let list = api.call(Method::GET, "/api/v1/resources", None).await?;
            if json {
                println!("{}", pretty(&list));
            } else {
                print_resources(&list);
            }
        }
        ResourceCommand::Delete { name, api } => {
            api.call(Method::DELETE, &format!("/api/v1/resources/{name}"), None)
                .await?;
            println!("resource `{name}` deleted.");
        }
        ResourceCommand::Pin(args) => crate::door_cmd::secret("pin", args).await?,
        ResourceCommand::Password(args) => crate::door_cmd::secret("password", args).await?,
        ResourceCommand::Share(args) => crate::door_cmd::share(args).await?,
        ResourceCommand::Links(args) => crate::door_cmd::links(args).await?,
        ResourceCommand::Unshare(args) => crate::door_cmd::unshare(args).await?,
    }
    Ok(())
}

/// For tcp/udp resources, the address actually bound (port 0 picks one).
async fn print_bound(api: &ApiArgs, name: &str, created: &Value) {
    if created["listen"].is_null() {
        return;
    }
    if let Ok(list) = api.call(Method::GET, "/api/v1/resources", None).await {
        if let Some(r) = list
            .as_array()
            .and_then(|a| a.iter().find(|r| r["name"] == name))
        {
            println!("listening on {}", r["bound"].as_str().unwrap_or("?"));
        }
    }
}
