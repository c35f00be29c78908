//! `warren ssh ...` (issue 17, in steps). So far `warren ssh ca-key`: the
//! organisation's SSH CA public key, for hosts' `TrustedUserCAKeys`.

use crate::api_client::ApiArgs;
use crate::Failure;
use clap::Subcommand;
use hyper::Method;

#[derive(Subcommand, Debug)]
pub(crate) enum SshCommand {
    /// Print the organisation's SSH CA public keys (made on first use): the
    /// lines of sshd's `TrustedUserCAKeys` file, the signing one first.
    CaKey {
        /// Make a new CA the one that signs; the previous one stays trusted
        /// for `--overlap`.
        #[arg(long)]
        rotate: bool,
        /// With --rotate: how long the previous CA stays trusted.
        #[arg(long, default_value = "7d", requires = "rotate")]
        overlap: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub(crate) async fn run(cmd: SshCommand) -> Result<(), Failure> {
    match cmd {
        SshCommand::CaKey {
            rotate,
            overlap,
            api,
        } => {
            let ca = if rotate {
                let body = serde_json::json!({ "overlap": overlap });
                api.call(Method::POST, "/api/v1/ssh/ca/rotate", Some(&body))
                    .await?
            } else {
                api.call(Method::GET, "/api/v1/ssh/ca", None).await?
            };
            for line in ca["trusted"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                println!("{}", line.as_str().unwrap_or_default());
            }
            eprintln!(
                "({} signs; put these lines in the file sshd_config's TrustedUserCAKeys names)",
                ca["fingerprint"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}
