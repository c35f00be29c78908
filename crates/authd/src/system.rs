//! The host's side: reading `/etc/passwd`, `useradd`, sudoers drop-ins
//! checked with `visudo -c`. Names reaching here passed
//! [`crate::name::valid_account`]; emails, `warren_policy::valid_email`.

use crate::files::write_atomic;
use crate::{AuthdError, Config};
use std::process::Command;

/// Every account: (name, uid).
pub(crate) fn passwd() -> Result<Vec<(String, u32)>, AuthdError> {
    let text = std::fs::read_to_string("/etc/passwd").map_err(|e| AuthdError::State {
        path: "/etc/passwd".into(),
        error: e.to_string(),
    })?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((name.to_owned(), uid))
        })
        .collect())
}

fn run(command: &'static str, cmd: &mut Command) -> Result<(), AuthdError> {
    let out = cmd.output().map_err(|e| AuthdError::Command {
        command,
        message: e.to_string(),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(AuthdError::Command {
            command,
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Whether `useradd` failed because something else changed the accounts
/// meanwhile (the name or UID taken, the files locked): worth a new look.
pub(crate) fn is_race(e: &AuthdError) -> bool {
    match e {
        AuthdError::Command {
            command: "useradd",
            message,
        } => {
            message.contains("not unique")
                || message.contains("already exists")
                || message.contains("lock")
        }
        _ => false,
    }
}

/// `useradd` with a home directory, its own group, the configured groups.
pub(crate) fn create_user(
    config: &Config,
    account: &str,
    uid: u32,
    email: &str,
) -> Result<(), AuthdError> {
    let mut cmd = Command::new("useradd");
    // Its words are read (`is_race`): in English whatever the host's locale.
    cmd.env("LC_ALL", "C");
    // `*`: no password works, and the account is not locked (sshd with
    // UsePAM no refuses locked accounts even to a certificate).
    cmd.args(["--create-home", "--user-group", "--password", "*", "--uid"])
        .arg(uid.to_string())
        .args(["--shell", &config.shell])
        .args(["--comment", &format!("warren {email}")]);
    if !config.groups.is_empty() {
        cmd.args(["--groups", &config.groups.join(",")]);
    }
    cmd.arg("--").arg(account);
    run("useradd", &mut cmd)
}

/// Gives `account` full sudo (`on`) through `warren-ACCOUNT` in the
/// sudoers directory, checked by `visudo -c` before it is renamed into
/// place, or removes it.
pub(crate) fn set_sudo(config: &Config, account: &str, on: bool) -> Result<(), AuthdError> {
    let path = config.sudoers_dir.join(format!("warren-{account}"));
    if !on {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(AuthdError::State {
                path,
                error: e.to_string(),
            }),
            _ => Ok(()),
        };
    }
    let text =
        format!("# written by warren's auth daemon\n{account} ALL=(ALL:ALL) NOPASSWD: ALL\n");
    // sudo skips names with a dot: the checked file is never read half-made.
    let check = config.sudoers_dir.join(format!(".warren-{account}.check"));
    write_atomic(&check, text.as_bytes(), 0o440)?;
    let checked = run("visudo", Command::new("visudo").arg("-cqf").arg(&check));
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&check);
        return Err(e);
    }
    std::fs::rename(&check, &path).map_err(|e| AuthdError::State {
        path,
        error: e.to_string(),
    })
}
