//! `warren device add|list|revoke`: people's WireGuard devices, through the
//! admin API. `add` prints the device's `wg-quick` config and, when the edge
//! made its key pair, a QR code of it for a phone; the private key is in
//! that output only, this once.

use crate::api_client::ApiArgs;
use crate::status_cmd::print_devices;
use crate::Failure;
use clap::Subcommand;
use hyper::Method;
use serde_json::{json, Value};

#[derive(Subcommand, Debug)]
pub(crate) enum DeviceCommand {
    /// Add a device: prints its wg-quick config and a QR code (the private
    /// key is shown this once).
    Add {
        /// Device name (a-z, 0-9, `-`, `_`, `.`), e.g. alice-phone.
        name: String,
        /// The user it acts for (their email; `warren user add` first).
        #[arg(long, value_name = "EMAIL")]
        user: String,
        /// A `tag:NAME` the policy may name the device by; repeatable.
        #[arg(long = "tag", value_name = "T")]
        tags: Vec<String>,
        /// The device's own WireGuard public key (`wg pubkey`), when it made
        /// its key pair itself; without it the edge makes one.
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List devices: user, address, tags, last handshake, flows.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Revoke a device: its key stops working and its flows are cut.
    Revoke {
        /// Device name.
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub(crate) async fn run(cmd: DeviceCommand) -> Result<(), Failure> {
    match cmd {
        DeviceCommand::Add {
            name,
            user,
            tags,
            public_key,
            api,
        } => {
            let mut body = json!({ "name": name, "user": user, "tags": tags });
            if let Some(k) = public_key {
                body["public_key"] = json!(k);
            }
            let added = api
                .call(Method::POST, "/api/v1/devices", Some(&body))
                .await?;
            print!("{}", added_text(&added));
        }
        DeviceCommand::List { json, api } => {
            let devices = api.call(Method::GET, "/api/v1/devices", None).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&devices).unwrap_or_default()
                );
                return Ok(());
            }
            print_devices(&devices);
        }
        DeviceCommand::Revoke { name, api } => {
            api.call(Method::DELETE, &format!("/api/v1/devices/{name}"), None)
                .await?;
            println!("device `{name}` revoked: its key no longer opens the tunnel.");
        }
    }
    Ok(())
}

/// What `warren device add` prints for the API's answer.
fn added_text(added: &Value) -> String {
    let device = &added["device"];
    let mut out = format!(
        "device `{}` added for {} at {}.\n\n",
        s(device, "name"),
        s(device, "user"),
        s(device, "address"),
    );
    out += "# wg-quick config (e.g. /etc/wireguard/wg0.conf):\n";
    out += added["config"].as_str().unwrap_or_default();
    out += "\n";
    out += added["resolved"].as_str().unwrap_or_default();
    match added["qr"].as_str() {
        Some(qr) => {
            out += "\nThe same config for a phone's WireGuard app (scan it):\n\n";
            out += qr;
            out += "\n";
        }
        None if added["private_key"].is_string() => {
            out += "\n(The config is too long for a QR code: copy it to the device as a file.)\n";
        }
        None => {}
    }
    if added["private_key"].is_string() {
        out += "\nThe private key is shown only this once, in the config above: \
                the edge keeps only the public key.\n";
    } else {
        out += "\nPut the device's own private key in the PrivateKey line.\n";
    }
    out
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_prints_the_config_then_the_qr_code_and_says_once() {
        let answer = json!({
            "device": { "name": "phone", "user": "alice@corp.com", "address": "100.96.0.2" },
            "private_key": "cHJpdmF0ZQ==",
            "config": "[Interface]\nPrivateKey = cHJpdmF0ZQ==\n",
            "resolved": "# resolvectl\n",
            "qr": "\u{2588}\u{2584}",
        });
        let text = added_text(&answer);
        let config = text.find("PrivateKey = cHJpdmF0ZQ==").unwrap();
        let qr = text.find("\u{2588}\u{2584}").unwrap();
        assert!(config < qr, "{text}");
        assert_eq!(text.matches("cHJpdmF0ZQ==").count(), 1, "{text}");
        assert!(text.contains("shown only this once"), "{text}");

        let own_key = json!({
            "device": { "name": "laptop", "user": "alice@corp.com", "address": "100.96.0.3" },
            "private_key": null,
            "config": "[Interface]\n# PrivateKey = (the device's own key)\n",
            "resolved": "",
            "qr": null,
        });
        let text = added_text(&own_key);
        assert!(
            !text.contains("this once") && !text.contains("scan"),
            "{text}"
        );
        assert!(text.contains("device's own private key"), "{text}");
    }
}
