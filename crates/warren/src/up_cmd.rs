//! `warren up`: the all-in-one quickstart.
//!
//! First run: creates the data directory, a self-signed tunnel certificate, a
//! site with a generated secret (stored only as a digest), an `edge.toml`
//! with an HTTPS listener and a sign-in host, a `policy.toml` granting
//! `group:admins` everything, and the first admin (its password printed
//! once); then prints the exact `warren site` command. With `--domain`,
//! the listeners are 80 and 443 and certificates come from ACME; without,
//! a self-signed certificate for `*.localhost`. Later runs reuse all of it.

use crate::cli::UpArgs;
use crate::Failure;
use anyhow::Context;
use warren_edge::certs;
use warren_edge::tunnel::credentials::{generate_secret, hash_secret};

/// Where people sign in and how the edge gets its certificates, as the
/// first run writes them.
struct Web {
    /// `[edge]` lines: the https (and http) listeners.
    listeners: String,
    /// The `[tls]` table.
    tls: String,
    /// The sign-in host.
    auth_host: String,
    /// A resource's host, for the banner's example.
    example_host: String,
    /// The first admin's email.
    email: String,
}

fn web(args: &UpArgs, dir: &std::path::Path) -> Result<Web, Failure> {
    match &args.domain {
        Some(domain) => {
            let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            let email = args.email.clone().ok_or_else(|| {
                Failure::Usage(
                    "--domain needs --email (the first admin, and the ACME account)".into(),
                )
            })?;
            let https = args.https_listen.unwrap_or(([0, 0, 0, 0], 443).into());
            let http = args.http_listen.unwrap_or(([0, 0, 0, 0], 80).into());
            let ca = args
                .acme_ca
                .as_ref()
                .map(|c| format!(", ca = \"{}\"", c.display()))
                .unwrap_or_default();
            Ok(Web {
                listeners: format!("https_listen  = \"{https}\"\nhttp_listen   = \"{http}\"\n"),
                tls: format!(
                    "[tls]\n# Certificates for every resource's host (and the sign-in host), from ACME.\n\
                     acme = {{ email = \"{email}\", directory = \"{}\"{ca} }}\n",
                    args.acme_directory
                ),
                auth_host: format!("auth.{domain}"),
                example_host: format!("web.{domain}"),
                email,
            })
        }
        None => {
            let email = args
                .email
                .clone()
                .unwrap_or_else(|| "admin@warren.localhost".into());
            let https = args.https_listen.unwrap_or(([127, 0, 0, 1], 8443).into());
            // Browsers send every *.localhost name to this machine.
            let names = vec!["localhost".to_owned(), "*.localhost".to_owned()];
            let generated = warren_transport::tls::generate_self_signed(names)
                .context("generating the local certificate")?;
            certs::write_private(&dir.join("web-key.pem"), generated.key_pem.as_bytes())
                .context("writing web-key.pem")?;
            std::fs::write(dir.join("web-cert.pem"), generated.cert_pem.as_bytes())
                .context("writing web-cert.pem")?;
            Ok(Web {
                listeners: format!("https_listen  = \"{https}\"\n"),
                tls: "[tls]\n# Self-signed, for *.localhost (browsers warn once).\n\
                      certs = [{ cert = \"web-cert.pem\", key = \"web-key.pem\" }]\n"
                    .into(),
                auth_host: "auth.localhost".into(),
                example_host: "web.localhost".into(),
                email,
            })
        }
    }
}

pub(crate) async fn run(args: UpArgs) -> Result<(), Failure> {
    let dir = &args.data_dir;
    let config_path = dir.join("edge.toml");
    let mut first_secret = None;
    let mut admin_email = None;
    let site_id;
    if config_path.exists() {
        site_id = None;
    } else {
        if args
            .email
            .as_deref()
            .is_some_and(|e| !warren_policy::valid_email(&e.to_ascii_lowercase()))
        {
            return Err(Failure::Usage("--email is not an email address".into()));
        }
        certs::create_dir_private(dir).context("creating the data directory")?;
        let web = web(&args, dir)?;
        let id = format!("site-{}", hex_suffix());
        let secret = generate_secret();
        let text = format!(
            r#"# Written by `warren up`. Edit, then `kill -HUP <pid>` to apply without a restart.
[edge]
data_dir      = "."                 # relative to this file
tunnel_listen = "{tunnel}"      # agents dial in here (TCP+TLS and QUIC)
admin_listen  = "{admin}"    # status API
{listeners}
{tls}
[auth]
host = "{auth_host}"                # where people sign in

[policy]
file = "policy.toml"                # who may reach what

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
            listeners = web.listeners,
            tls = web.tls,
            auth_host = web.auth_host,
        );
        let email = web.email.to_ascii_lowercase();
        let policy = format!(
            r#"# Written by `warren up`: who may reach what (default deny). Edit, then
# `kill -HUP <pid>` on the edge; `warren policy check policy.toml` first.
[groups]
"group:admins" = ["{email}"]

[[grants]]
src = ["group:admins"]
dst = ["*"]

[[tests]]
src = "{email}"
accept = ["any-resource:443"]
"#
        );
        certs::write_private(&dir.join("policy.toml"), policy.as_bytes())
            .context("writing policy.toml")?;
        certs::write_private(&config_path, text.as_bytes()).context("writing edge.toml")?;
        site_id = Some(id);
        first_secret = Some(secret);
        admin_email = Some((email, web.example_host));
    }
    let config = crate::edge_cmd::load(&config_path)?;
    let site = site_id
        .or_else(|| config.sites.keys().next().cloned())
        .unwrap_or_default();
    let sign_in = config.auth.as_ref().map(|a| a.host.clone());
    crate::edge_cmd::serve(config, &config_path, async |edge| {
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
        let mut example = None;
        if let Some((email, host)) = &admin_email {
            match edge.first_admin(email).await {
                Ok(Some(password)) => {
                    println!(
                        "First admin (signs in on https://{auth}; in group:admins of policy.toml):\n\
                         \n  email:      {email}\n  password:   {password}\n\
                         \nThe password is shown only now: the edge keeps just its argon2id hash.\n",
                        auth = with_port(sign_in.as_deref().unwrap_or(""), edge.https_addr()),
                    );
                }
                Ok(None) => {}
                Err(e) => eprintln!("could not create the first admin: {e}"),
            }
            example = Some(host.clone());
        }
        if let Some(host) = example {
            println!(
                "Publish a web app over HTTPS, behind the sign-in (live, no restart):\n\
                 \n  warren resource create web --type http --host {host} --target {site}=127.0.0.1:8080 --api http://{admin}\n",
                admin = edge.admin_addr(),
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

/// `host` with the https port when it is not 443.
fn with_port(host: &str, https: Option<std::net::SocketAddr>) -> String {
    match https.map(|a| a.port()) {
        Some(443) | None => host.to_owned(),
        Some(port) => format!("{host}:{port}"),
    }
}

fn hex_suffix() -> String {
    format!("{:04x}", rand::random::<u16>())
}
