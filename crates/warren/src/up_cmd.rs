//! `warren up`: the all-in-one quickstart.
//!
//! First run: creates the data directory, a self-signed tunnel certificate, a
//! site with a generated secret (stored only as an argon2 hash) and an
//! `edge.toml`, then prints the exact `warren site` command. Later runs reuse
//! all of it.

use crate::cli::UpArgs;
use crate::Failure;
use anyhow::Context;
use warren_edge::certs;
use warren_edge::tunnel::credentials::{generate_secret, hash_secret};

pub(crate) async fn run(args: UpArgs) -> Result<(), Failure> {
    let dir = &args.data_dir;
    let config_path = dir.join("edge.toml");
    let mut first_secret = None;
    let site_id;
    if config_path.exists() {
        site_id = None;
    } else {
        certs::create_dir_private(dir).context("creating the data directory")?;
        let id = format!("site-{}", hex_suffix());
        let secret = generate_secret();
        let text = format!(
            r#"# Written by `warren up`. Edit, then `kill -HUP <pid>` to apply without a restart.
[edge]
data_dir      = "."                 # relative to this file
tunnel_listen = "{tunnel}"      # agents dial in here (TCP+TLS and QUIC)
admin_listen  = "{admin}"    # status API

[[site]]
id          = "{id}"
secret_hash = "{hash}"

# Publish a TCP service of the site on port 2222 of this edge:
# [[resource]]
# name    = "ssh"
# type    = "tcp"
# listen  = "0.0.0.0:2222"
# targets = [{{ site = "{id}", address = "127.0.0.1:22" }}]
"#,
            hash = hash_secret(secret.expose()),
            tunnel = args.tunnel_listen,
            admin = args.admin_listen,
        );
        certs::write_private(&config_path, text.as_bytes()).context("writing edge.toml")?;
        site_id = Some(id);
        first_secret = Some(secret);
    }
    let config = crate::edge_cmd::load(&config_path)?;
    let site = site_id
        .or_else(|| config.sites.keys().next().cloned())
        .unwrap_or_default();
    crate::edge_cmd::serve(config, &config_path, |edge| {
        let port = edge.tunnel_addr().port();
        // Shown once, on purpose: the operator copies it to the site.
        let secret = first_secret
            .as_ref()
            .map_or("<SECRET-SHOWN-AT-FIRST-RUN>", |s| s.expose());
        println!(
            "\nWarren edge is up.\n\
             \n  config:     {config}\
             \n  tunnel:     {tunnel} (TCP+TLS and QUIC)\
             \n  status:     warren status --api http://{admin}   (API: http://{admin}/api/v1, bearer token below)\
             \n\nRun this on a site (from another machine, replace 127.0.0.1 with this host's address;\
             \nthe secret goes in the environment or a 0600 file, never on a command line others can see):\n\
             \n  export WARREN_SECRET={secret}\
             \n  warren site --endpoint https://127.0.0.1:{port} --id {site} \\\
             \n              --pin {pin} --allow 127.0.0.1:22/tcp\n",
            config = config_path.display(),
            tunnel = edge.tunnel_addr(),
            admin = edge.admin_addr(),
            pin = edge.pin(),
        );
        if first_secret.is_some() {
            println!("The secret is shown only now: the edge keeps just its SHA-256 digest.\n");
        }
        if let Some(token) = edge
            .created_token()
            .and_then(|p| std::fs::read_to_string(p).ok())
        {
            println!(
                "Admin API token (also in {}, readable by you only):\n\n  export WARREN_TOKEN={}\n",
                edge.created_token().map(|p| p.display().to_string()).unwrap_or_default(),
                token.trim()
            );
        }
        println!(
            "Publish a service (live, no restart):\n\n  warren resource create web --type tcp --listen 0.0.0.0:8080 --target {site}=127.0.0.1:80 --api http://{admin}\n\n\
             or add a [[resource]] to {} and send SIGHUP.",
            config_path.display(),
            admin = edge.admin_addr(),
        );
    })
    .await
}

fn hex_suffix() -> String {
    format!("{:04x}", rand::random::<u16>())
}
