//! The SSH auth daemon's work on one host (issue 17).
//!
//! Asked (by the site agent, or by `warren auth-daemon` for hosts the agent
//! is not on) to let a user in, it makes sure their account exists and
//! records which certificate principals may log in as which account; sshd's
//! `AuthorizedPrincipalsCommand` (`warren auth-daemon principals --username
//! %u`) answers from those records alone, with no network at login.
//!
//! ```text
//! Request{resource, email, accounts, sudo} --provision--> useradd (just in time),
//!                                               sudoers (only under the host's veto),
//!                                               principals/<account>   <--principals-- sshd
//! ```
//!
//! Invariants: nothing a request says is trusted to widen this host's own
//! configuration. A named account is let in only if [`Config::accounts`]
//! lists it; a sudo role only if [`Config::sudo_roles`] does; the
//! just-in-time account's name is this host's choice (from the email's
//! local part, a suffix on a clash, never an existing account that is not
//! the user's own), and a UID is never given twice. Every name from
//! outside passes [`name::valid_account`] before it reaches a path or a
//! command line.

mod files;
pub mod name;

use warren_proto::ssh_user::scoped;
mod state;
mod system;

pub use state::principals;

use std::path::PathBuf;
use std::sync::Mutex;

/// The host's own configuration: what it lets certificates become.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the records live (`principals/`, `state.json`); readable by
    /// the `AuthorizedPrincipalsCommandUser`.
    pub state_dir: PathBuf,
    /// Named accounts certificates may log in as (besides the users' own).
    pub accounts: Vec<String>,
    /// Sudo roles this host grants when the policy names them; any other
    /// role is vetoed.
    pub sudo_roles: Vec<String>,
    /// Supplementary groups every just-in-time account joins (they must
    /// exist).
    pub groups: Vec<String>,
    /// Where sudoers drop-ins go (`/etc/sudoers.d`).
    pub sudoers_dir: PathBuf,
    /// The login shell of new accounts.
    pub shell: String,
    /// At most this many just-in-time accounts are made (a compromised
    /// edge could otherwise ask for one per made-up email).
    pub max_accounts: usize,
}

impl Config {
    /// Defaults: `/var/lib/warren/auth-daemon`, no named accounts, no sudo.
    pub fn new(state_dir: PathBuf) -> Config {
        Config {
            state_dir,
            accounts: Vec::new(),
            sudo_roles: Vec::new(),
            groups: Vec::new(),
            sudoers_dir: PathBuf::from("/etc/sudoers.d"),
            shell: "/bin/bash".to_owned(),
            max_accounts: 1000,
        }
    }
}

/// What the edge asks for one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The ssh resource asked about: the principals recorded are scoped
    /// to it (`RESOURCE/EMAIL`, `RESOURCE/ACCOUNT`).
    pub resource: String,
    /// The user's email: the certificate principal of their own account.
    pub email: String,
    /// Whether the grant includes the user's own account.
    pub own: bool,
    /// Named accounts the grant includes.
    pub accounts: Vec<String>,
    /// The sudo role the grant names.
    pub sudo: Option<String>,
}

/// What this host granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Granted {
    /// The user's own account, if the grant includes it.
    pub own: Option<String>,
    /// The named accounts both the grant and this host allow.
    pub accounts: Vec<String>,
    /// Whether the own account has sudo now.
    pub sudo: bool,
    /// A sudo role the policy named that this host refused.
    pub vetoed: Option<String>,
}

/// Why a request was not carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthdError {
    /// The request names something that cannot be an account or email.
    #[error("refused: {0}")]
    Refused(String),
    /// Neither the user's own account nor any named account is allowed.
    #[error("no account this host allows")]
    NoAccount,
    /// The state directory could not be read or written.
    #[error("state {path}: {error}")]
    State {
        /// The file.
        path: PathBuf,
        /// The error.
        error: String,
    },
    /// A system command failed.
    #[error("{command}: {message}")]
    Command {
        /// Which one.
        command: &'static str,
        /// Its words.
        message: String,
    },
}

/// The daemon's work on this host; one per process (it serialises
/// provisioning: accounts and UIDs are handed out one at a time).
pub struct AuthDaemon {
    config: Config,
    lock: Mutex<()>,
}

impl AuthDaemon {
    /// Checks the configuration and writes the named accounts' principals.
    pub fn start(config: Config) -> Result<AuthDaemon, AuthdError> {
        for a in &config.accounts {
            if !name::valid_account(a) {
                return Err(AuthdError::Refused(format!(
                    "account {a:?} is not an account name"
                )));
            }
        }
        for r in config.sudo_roles.iter().chain(&config.groups) {
            if !name::valid_account(r) {
                return Err(AuthdError::Refused(format!("{r:?} is not a name")));
            }
        }
        state::prepare(&config)?;
        Ok(AuthDaemon {
            config,
            lock: Mutex::new(()),
        })
    }

    /// Lets `req`'s user in as far as the grant and this host both allow:
    /// the own account made (or found) and recorded, sudo written or
    /// removed. Blocking (runs `useradd` and `visudo`).
    pub fn provision(&self, req: &Request) -> Result<Granted, AuthdError> {
        if !warren_policy::valid_email(&req.email) {
            return Err(AuthdError::Refused("not an email address".into()));
        }
        if !valid_resource(&req.resource) {
            return Err(AuthdError::Refused("not a resource name".into()));
        }
        let accounts: Vec<String> = req
            .accounts
            .iter()
            .filter(|a| name::valid_account(a) && self.config.accounts.contains(a))
            .cloned()
            .collect();
        if !req.own && accounts.is_empty() {
            return Err(AuthdError::NoAccount);
        }
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let email = req.email.to_ascii_lowercase();
        let mut granted = Granted {
            own: None,
            accounts,
            sudo: false,
            vetoed: None,
        };
        if req.own {
            let account = state::own_account(&self.config, &email)?;
            let sudo = match &req.sudo {
                Some(role) if self.config.sudo_roles.contains(role) => true,
                Some(role) => {
                    tracing::warn!(event = "sudo_vetoed", user = %email, account = %account, role = %role, "the policy names a sudo role this host does not allow: no sudo");
                    granted.vetoed = Some(role.clone());
                    false
                }
                None => false,
            };
            system::set_sudo(&self.config, &account, sudo)?;
            state::allow(&self.config, &account, scoped(&req.resource, &email))?;
            granted.sudo = sudo;
            granted.own = Some(account);
        }
        for a in &granted.accounts {
            state::allow(&self.config, a, scoped(&req.resource, a))?;
        }
        Ok(granted)
    }
}

/// Whether `name` could be a resource name (1-64 of A-Z a-z 0-9 `-` `_`
/// `.`): nothing else reaches a principals line.
pub fn valid_resource(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}
