//! The daemon's records in its state directory:
//!
//! * `state.json`: which email owns which just-in-time account, and the
//!   next UID (a high-water mark, so a UID is never given twice even after
//!   an account is deleted);
//! * `principals/<account>`: the certificate principals that may log in as
//!   the account, one per line, each scoped to the ssh resource it was
//!   granted for (`vm-01/alice@corp.com`, `vm-01/deploy`), so a certificate
//!   for one host is none for another; all `warren auth-daemon principals`
//!   reads. They are kept in `state.json` too, and the files rewritten
//!   from there at start.
//!
//! Files are written whole, to a temporary name then renamed.

use crate::files::write_atomic;
use crate::{name, system, AuthdError, Config};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The first UID handed out (below are system accounts on Debian).
const FIRST_UID: u32 = 2000;
/// UIDs stop here (Debian reserves 60000 and up).
const LAST_UID: u32 = 59_999;
/// How often `useradd` is tried again after a race.
const RETRIES: u64 = 8;
/// The largest principals file read.
const MAX_PRINCIPALS_FILE: u64 = 64 * 1024;

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct State {
    /// Email → account.
    accounts: BTreeMap<String, String>,
    /// The next UID to try.
    next_uid: u32,
    /// Account → the principals that may log in as it.
    #[serde(default)]
    principals: BTreeMap<String, BTreeSet<String>>,
}

fn err(path: &Path, e: impl std::fmt::Display) -> AuthdError {
    AuthdError::State {
        path: path.to_owned(),
        error: e.to_string(),
    }
}

fn state_file(config: &Config) -> PathBuf {
    config.state_dir.join("state.json")
}

fn principals_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("principals")
}

fn load(config: &Config) -> Result<State, AuthdError> {
    let path = state_file(config);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| err(&path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
            next_uid: FIRST_UID,
            ..State::default()
        }),
        Err(e) => Err(err(&path, e)),
    }
}

fn save(config: &Config, state: &State) -> Result<(), AuthdError> {
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| err(&state_file(config), e))?;
    write_atomic(&state_file(config), &bytes, 0o600)
}

/// Makes the directories and writes every account's principals file from
/// the records and the configuration, removing any other.
pub(crate) fn prepare(config: &Config) -> Result<(), AuthdError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = principals_dir(&config.state_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .map_err(|e| err(&dir, e))?;
    let state = load(config)?;
    if let Some((email, a)) = state
        .accounts
        .iter()
        .find(|(_, a)| config.accounts.contains(a))
    {
        return Err(AuthdError::Refused(format!(
            "--ssh-account {a} is {email}'s own account here: list another name"
        )));
    }
    // A named account the host no longer lists loses its principals.
    let own: BTreeSet<&String> = state.accounts.values().collect();
    let files: BTreeMap<&String, &BTreeSet<String>> = state
        .principals
        .iter()
        .filter(|(a, _)| own.contains(a) || config.accounts.contains(a))
        .collect();
    let entries = std::fs::read_dir(&dir).map_err(|e| err(&dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !files.contains_key(&name.to_str().unwrap_or("").to_owned()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    for (account, lines) in files {
        write_principals(&config.state_dir, account, lines)?;
    }
    Ok(())
}

/// Lets `principal` log in as `account` from now on (recorded, and the
/// account's file rewritten). The caller serialises.
pub(crate) fn allow(config: &Config, account: &str, principal: String) -> Result<(), AuthdError> {
    let mut state = load(config)?;
    let lines = state.principals.entry(account.to_owned()).or_default();
    if lines.insert(principal) {
        let lines = lines.clone();
        save(config, &state)?;
        write_principals(&config.state_dir, account, &lines)?;
    }
    Ok(())
}

fn write_principals(
    state_dir: &Path,
    account: &str,
    lines: &BTreeSet<String>,
) -> Result<(), AuthdError> {
    let mut text = lines.iter().cloned().collect::<Vec<_>>().join("\n");
    text.push('\n');
    write_atomic(
        &principals_dir(state_dir).join(account),
        text.as_bytes(),
        0o644,
    )
}

/// The user's own account: the one recorded for `email` (made again if it
/// was deleted), or a new one. The caller serialises.
pub(crate) fn own_account(config: &Config, email: &str) -> Result<String, AuthdError> {
    let mut state = load(config)?;
    let passwd = system::passwd()?;
    let exists = |n: &str| passwd.iter().any(|(name, _)| name == n);
    if let Some(account) = state.accounts.get(email).cloned() {
        if !exists(&account) {
            let uid = next_uid(&mut state, &passwd)?;
            system::create_user(config, &account, uid, email)?;
            save(config, &state)?;
        }
        return Ok(account);
    }
    if state.accounts.len() >= config.max_accounts {
        return Err(AuthdError::Refused(format!(
            "{} just-in-time accounts already (--ssh-max-accounts)",
            state.accounts.len()
        )));
    }
    let stem = name::stem(email);
    let mut passwd = passwd;
    let mut attempt = 0;
    let (account, uid) = loop {
        // A name the host lists for certificates is never anyone's own.
        let taken = |n: &str| {
            passwd.iter().any(|(name, _)| name == n)
                || state.accounts.values().any(|a| a == n)
                || config.accounts.iter().any(|a| a == n)
        };
        let account = (1..1000)
            .map(|n| name::candidate(&stem, n))
            .find(|c| !taken(c))
            .ok_or_else(|| AuthdError::Refused(format!("no free account name from {stem:?}")))?;
        let uid = next_uid(&mut state, &passwd)?;
        match system::create_user(config, &account, uid, email) {
            Ok(()) => break (account, uid),
            // Someone else (useradd by hand, another daemon) took the name
            // or the UID meanwhile, or holds the lock: look again.
            Err(e) if attempt < RETRIES && system::is_race(&e) => {
                attempt += 1;
                tracing::info!(event = "account_retry", account = %account, uid, error = %e, "useradd raced another change to the accounts; trying again");
                std::thread::sleep(std::time::Duration::from_millis(50 * attempt));
                passwd = system::passwd()?;
            }
            Err(e) => return Err(e),
        }
    };
    state.accounts.insert(email.to_owned(), account.clone());
    save(config, &state)?;
    tracing::info!(event = "account_created", user = %email, account = %account, uid, "a just-in-time account was created");
    Ok(account)
}

/// The next UID: above every UID ever given here and every UID in use.
fn next_uid(state: &mut State, passwd: &[(String, u32)]) -> Result<u32, AuthdError> {
    let in_use = passwd
        .iter()
        .map(|(_, uid)| *uid)
        .filter(|u| (FIRST_UID..=LAST_UID).contains(u))
        .max()
        .map_or(FIRST_UID, |u| u + 1);
    let uid = state.next_uid.max(in_use).max(FIRST_UID);
    if uid > LAST_UID {
        return Err(AuthdError::Refused("no UID left".into()));
    }
    state.next_uid = uid + 1;
    Ok(uid)
}

/// The principals that may log in as `username`, for sshd's
/// `AuthorizedPrincipalsCommand`. A name that could not be an account
/// (`../x`, spaces, `%`) is refused before it reaches a path; an account
/// with no record has none.
pub fn principals(state_dir: &Path, username: &str) -> Result<Vec<String>, AuthdError> {
    if !name::valid_account(username) {
        return Err(AuthdError::Refused(format!(
            "{username:?} is not an account name"
        )));
    }
    let path = principals_dir(state_dir).join(username);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(&path, e)),
    };
    let mut text = String::new();
    file.take(MAX_PRINCIPALS_FILE)
        .read_to_string(&mut text)
        .map_err(|e| err(&path, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_only_go_up() {
        let mut state = State {
            next_uid: FIRST_UID,
            ..State::default()
        };
        let passwd = vec![("root".into(), 0), ("bob".into(), 2004)];
        assert_eq!(next_uid(&mut state, &passwd).unwrap(), 2005);
        // bob (2004) deleted, and the account given 2005 too: 2006 next.
        assert_eq!(next_uid(&mut state, &[("root".into(), 0)]).unwrap(), 2006);
    }

    #[test]
    fn principals_files_are_read_by_valid_names_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().to_owned());
        config.accounts = vec!["deploy".into()];
        prepare(&config).unwrap();
        allow(&config, "deploy", "vm-01/deploy".into()).unwrap();
        allow(&config, "deploy", "vm-02/deploy".into()).unwrap();
        assert_eq!(
            principals(dir.path(), "deploy").unwrap(),
            vec!["vm-01/deploy", "vm-02/deploy"]
        );
        assert!(principals(dir.path(), "nobody").unwrap().is_empty());
        std::fs::write(dir.path().join("secret"), "alice@corp.com\n").unwrap();
        for hostile in ["../secret", "a b", "%u", "", "deploy/..", "Deploy"] {
            assert!(principals(dir.path(), hostile).is_err(), "{hostile:?}");
        }
        // A named account dropped from the configuration loses its file.
        config.accounts.clear();
        prepare(&config).unwrap();
        assert!(principals(dir.path(), "deploy").unwrap().is_empty());
    }
}

#[cfg(test)]
mod cap {
    use super::*;

    #[test]
    fn no_account_is_made_beyond_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().to_owned());
        config.max_accounts = 2;
        prepare(&config).unwrap();
        let mut state = load(&config).unwrap();
        state.accounts.insert("a@x.co".into(), "a".into());
        state.accounts.insert("b@x.co".into(), "b".into());
        save(&config, &state).unwrap();
        // Refused before useradd is run (this test needs no root).
        match own_account(&config, "c@x.co") {
            Err(AuthdError::Refused(why)) => assert!(why.contains("--ssh-max-accounts"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
