//! `warren auth-daemon`: the SSH auth daemon's commands on a host.
//!
//! * `warren auth-daemon principals --username %u`: sshd's
//!   `AuthorizedPrincipalsCommand`. Prints the certificate principals that
//!   may log in as the account, from the records the daemon keeps (no
//!   network at login); nothing for an account with none; exit 1, printing
//!   nothing, for a name that could not be an account (`../x`, `%`).
//! * `warren auth-daemon --pre-shared-key-file F --listen ADDR`: the
//!   daemon for hosts the agent is not on. Not built yet: today the agent
//!   runs the daemon on its own host (`warren site --ssh-auth-daemon`).
//!
//! [`DaemonOptions`] are the host's own configuration (what certificates
//! may become here), shared by `warren site --ssh-auth-daemon`.

use crate::Failure;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// The default state directory.
const STATE_DIR: &str = "/var/lib/warren/auth-daemon";

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct AuthDaemonArgs {
    #[command(subcommand)]
    command: Option<AuthDaemonCommand>,
    /// The key the agent presents (standalone daemon).
    #[arg(long)]
    pre_shared_key_file: Option<PathBuf>,
    /// Where the standalone daemon listens (HTTPS).
    #[arg(long)]
    listen: Option<String>,
}

#[derive(Subcommand, Debug)]
enum AuthDaemonCommand {
    /// For sshd's AuthorizedPrincipalsCommand: the principals that may log
    /// in as USERNAME, one per line.
    Principals {
        /// The account sshd asks about (`%u`).
        #[arg(long)]
        username: String,
        /// The daemon's state directory.
        #[arg(long, default_value = STATE_DIR)]
        state_dir: PathBuf,
    },
}

/// What this host lets certificates become (`warren site
/// --ssh-auth-daemon`).
#[derive(Args, Debug, Clone)]
pub(crate) struct DaemonOptions {
    /// Where the daemon keeps its records (readable by sshd's
    /// AuthorizedPrincipalsCommandUser).
    #[arg(long = "ssh-state-dir", default_value = STATE_DIR)]
    pub(crate) state_dir: PathBuf,
    /// A named account certificates may log in as when the policy grants
    /// it (repeat); no other named account is ever let in.
    #[arg(long = "ssh-account", value_name = "NAME")]
    pub(crate) accounts: Vec<String>,
    /// A sudo role this host grants when the policy names it (repeat); any
    /// other role is vetoed.
    #[arg(long = "ssh-sudo-role", value_name = "ROLE")]
    pub(crate) sudo_roles: Vec<String>,
    /// A group every just-in-time account joins (repeat; it must exist).
    #[arg(long = "ssh-group", value_name = "GROUP")]
    pub(crate) groups: Vec<String>,
    /// Where sudoers drop-ins go.
    #[arg(
        long = "ssh-sudoers-dir",
        default_value = "/etc/sudoers.d",
        hide = true
    )]
    pub(crate) sudoers_dir: PathBuf,
}

impl DaemonOptions {
    /// The daemon, its records ready.
    pub(crate) fn start(&self) -> Result<warren_authd::AuthDaemon, Failure> {
        let mut config = warren_authd::Config::new(self.state_dir.clone());
        config.accounts = self.accounts.clone();
        config.sudo_roles = self.sudo_roles.clone();
        config.groups = self.groups.clone();
        config.sudoers_dir = self.sudoers_dir.clone();
        warren_authd::AuthDaemon::start(config)
            .map_err(|e| Failure::Usage(format!("--ssh-auth-daemon: {e}")))
    }
}

pub(crate) async fn run(args: AuthDaemonArgs) -> Result<(), Failure> {
    match args.command {
        Some(AuthDaemonCommand::Principals {
            username,
            state_dir,
        }) => match warren_authd::principals(&state_dir, &username) {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
                Ok(())
            }
            Err(e) => Err(Failure::Other(anyhow::anyhow!("{e}"))),
        },
        None => {
            let _ = (args.pre_shared_key_file, args.listen);
            Err(Failure::Usage(
                "the standalone auth daemon (--pre-shared-key-file, --listen) is not built yet: \
                 run the agent on the SSH host with `warren site --ssh-auth-daemon`"
                    .into(),
            ))
        }
    }
}
