//! `warren ssh ...` (issue 17, in steps). So far `warren ssh ca-key`: the
//! organisation's SSH CA public key, for hosts' `TrustedUserCAKeys`.

use crate::api_client::ApiArgs;
use crate::Failure;
use clap::Subcommand;
use hyper::Method;

#[derive(Subcommand, Debug)]
pub(crate) enum SshCommand {
    /// Print the organisation's SSH CA public key (made on first use), one
    /// line for sshd's `TrustedUserCAKeys` file.
    CaKey {
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub(crate) async fn run(cmd: SshCommand) -> Result<(), Failure> {
    match cmd {
        SshCommand::CaKey { api } => {
            let ca = api.call(Method::GET, "/api/v1/ssh/ca", None).await?;
            println!("{}", ca["public_key"].as_str().unwrap_or_default());
            eprintln!(
                "({}; put the line in the file sshd_config's TrustedUserCAKeys names)",
                ca["fingerprint"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}
