//! `warren ssh`, `warren scp`, `warren sign-key` and `warren ssh ca-key`.
//!
//! `warren ssh [USER@]ALIAS [-- CMD]`: with the saved session (`warren
//! login`), a throwaway ed25519 key, a certificate for it valid five
//! minutes (`POST /cli/ssh/sign` on the sign-in host), then the system's
//! OpenSSH client with `ProxyCommand warren ssh --proxy ALIAS`, which
//! carries the bytes to the host's sshd through the edge (`GET
//! /cli/ssh/connect`, upgraded). OpenSSH does the session; sshd checks the
//! certificate. The key lives in a 0700 directory of its own (in
//! `$XDG_RUNTIME_DIR` when set) for as long as ssh runs, then is removed:
//! OpenSSH reads keys and certificates from files.
//!
//! `warren scp ... ALIAS:PATH ...` is the same with scp (the account as
//! `-o User=`, unless the operand names one).
//!
//! `warren sign-key --key-file KEY.pub --resource ALIAS`: a certificate
//! for a key of your own, written beside it (`KEY-cert.pub`), for other
//! tools; `warren ssh --print-config ALIAS` prints an `~/.ssh/config` block
//! that signs on each connection (`Match exec`).

use crate::api_client::ApiArgs;
use crate::login_cmd::{self, Edge};
use crate::Failure;
use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// The longest public key file read.
const MAX_KEY_FILE: u64 = 16 * 1024;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct SshArgs {
    #[command(subcommand)]
    command: Option<SshCommand>,
    /// `[USER@]ALIAS`: the ssh resource, and the account (default: your
    /// own, which the host makes just in time).
    target: Option<String>,
    /// The command to run there (after `--`).
    #[arg(last = true)]
    remote: Vec<String>,
    /// An OpenSSH option passed on (`-o StrictHostKeyChecking=yes`).
    #[arg(short = 'o', value_name = "OPTION")]
    options: Vec<String>,
    /// Print an ~/.ssh/config block for ALIAS (for plain `ssh ALIAS`) and exit.
    #[arg(long)]
    print_config: bool,
    /// The key `--print-config` names (its certificate is written beside it).
    #[arg(long, default_value = "~/.ssh/id_ed25519", requires = "print_config")]
    key: String,
    /// ProxyCommand mode: carry stdin and stdout to ALIAS's sshd.
    #[arg(long, hide = true)]
    proxy: bool,
    /// The OpenSSH client to run.
    #[arg(long, env = "WARREN_SSH_PROGRAM", default_value = "ssh", hide = true)]
    ssh_program: String,
    #[command(flatten)]
    session: SessionArgs,
}

/// Where the session (`warren login`) is.
#[derive(Args, Debug, Clone)]
pub(crate) struct SessionArgs {
    /// Where the session is kept (default ~/.config/warren/login.json).
    #[arg(long, env = "WARREN_LOGIN_FILE")]
    login_file: Option<PathBuf>,
    /// Connect to this address instead of resolving the edge's name.
    #[arg(long, hide = true)]
    connect: Option<std::net::SocketAddr>,
}

impl SessionArgs {
    fn file(&self) -> Result<PathBuf, Failure> {
        match &self.login_file {
            Some(f) => Ok(f.clone()),
            None => login_cmd::default_file(),
        }
    }

    /// The edge and a live access token.
    pub(crate) async fn edge(&self) -> Result<(Edge, String), Failure> {
        let saved = login_cmd::session(&self.file()?, self.connect, false).await?;
        let edge = Edge::new(&saved.edge, saved.ca.as_deref(), self.connect)?;
        Ok((edge, saved.access_token))
    }

    /// The flags that name this session again (for the ProxyCommand).
    fn flags(&self) -> Result<String, Failure> {
        let mut out = format!(
            " --login-file {}",
            quote(&self.file()?.display().to_string())
        );
        if let Some(c) = self.connect {
            out.push_str(&format!(" --connect {c}"));
        }
        Ok(out)
    }
}

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

/// `warren sign-key`.
#[derive(Args, Debug)]
pub(crate) struct SignKeyArgs {
    /// Your public key (`~/.ssh/id_ed25519.pub`).
    #[arg(long)]
    key_file: PathBuf,
    /// The ssh resource the certificate is for.
    #[arg(long)]
    resource: String,
    /// Where the certificate goes (default: beside the key, `KEY-cert.pub`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Say nothing when it works (for ssh_config's `Match exec`).
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    session: SessionArgs,
}

pub(crate) async fn run(args: SshArgs) -> Result<(), Failure> {
    if let Some(cmd) = args.command {
        return ca_key(cmd).await;
    }
    let Some(target) = args.target.as_deref() else {
        return Err(Failure::Usage(
            "usage: warren ssh [USER@]ALIAS [-- CMD] (or warren ssh ca-key)".into(),
        ));
    };
    let (user, alias) = match target.split_once('@') {
        Some((u, a)) => (Some(u), a),
        None => (None, target),
    };
    if alias.is_empty()
        || !alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(Failure::Usage(format!("`{alias}` is not a resource name")));
    }
    if args.proxy {
        return proxy(&args.session, alias).await;
    }
    if args.print_config {
        print_config(&args.session, alias, &args.key)?;
        return Ok(());
    }
    login(&args, user, alias).await
}

async fn ca_key(cmd: SshCommand) -> Result<(), Failure> {
    match cmd {
        SshCommand::CaKey {
            rotate,
            overlap,
            api,
        } => {
            let ca = if rotate {
                let body = json!({ "overlap": overlap });
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

/// A certificate for `public_key` on `resource`: the edge's answer.
async fn sign(session: &SessionArgs, resource: &str, public_key: &str) -> Result<Value, Failure> {
    let (edge, token) = session.edge().await?;
    let (status, answer) = edge
        .post_json(
            "/cli/ssh/sign",
            &json!({ "resource": resource, "public_key": public_key }),
            &token,
        )
        .await?;
    if status != 200 {
        return Err(Failure::Other(anyhow!(
            "no certificate for `{resource}` ({status} {}): {}",
            answer["error"].as_str().unwrap_or("?"),
            answer["message"].as_str().unwrap_or("the edge refused")
        )));
    }
    Ok(answer)
}

fn text<'a>(v: &'a Value, key: &str) -> Result<&'a str, Failure> {
    v[key]
        .as_str()
        .ok_or_else(|| Failure::Other(anyhow!("the edge's answer has no {key}")))
}

/// `'...'` for a POSIX shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A 0700 directory for the throwaway key, removed when dropped.
struct KeyDir(PathBuf);

impl KeyDir {
    fn new() -> Result<KeyDir, Failure> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("warren-ssh-{}", hex_id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        Ok(KeyDir(dir))
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn hex_id() -> String {
    rand::random::<[u8; 8]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A throwaway key with a certificate for `alias`, in a directory of its
/// own, and the OpenSSH options that use them and the edge's way through.
struct Certified {
    dir: KeyDir,
    account: String,
    options: Vec<String>,
}

async fn certified(session: &SessionArgs, alias: &str) -> Result<Certified, Failure> {
    use ssh_key::{Algorithm, LineEnding, PrivateKey};
    let key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
        .map_err(|e| anyhow!("making a key: {e}"))?;
    let public = key.public_key().to_openssh().map_err(|e| anyhow!("{e}"))?;
    let answer = sign(session, alias, &public).await?;
    let certificate = text(&answer, "certificate")?;
    if let Some(role) = answer["vetoed"].as_str() {
        eprintln!(
            "warren: the host refused the sudo role `{role}` the policy grants (its own veto)"
        );
    }
    let dir = KeyDir::new()?;
    let key_path = dir.0.join("id");
    let cert_path = dir.0.join("id-cert.pub");
    let pem = key.to_openssh(LineEnding::LF).map_err(|e| anyhow!("{e}"))?;
    write_private(&key_path, pem.as_bytes())?;
    write_private(&cert_path, format!("{certificate}\n").as_bytes())?;
    let exe = std::env::current_exe().context("finding this program")?;
    // ssh expands %-tokens in a ProxyCommand: only %n (the alias) is ours.
    let proxy = format!(
        "{} ssh --proxy{}",
        quote(&exe.display().to_string()),
        session.flags()?
    )
    .replace('%', "%%")
        + " %n";
    let options = vec![
        format!("IdentityFile={}", key_path.display()),
        format!("CertificateFile={}", cert_path.display()),
        "IdentitiesOnly=yes".to_owned(),
        "IdentityAgent=none".to_owned(),
        format!("ProxyCommand={proxy}"),
    ];
    Ok(Certified {
        account: text(&answer, "account")?.to_owned(),
        dir,
        options,
    })
}

/// Runs `cmd` (ssh or scp) to its end, then removes the key; its exit
/// status is ours.
async fn run_client(mut cmd: tokio::process::Command, certified: Certified) -> Result<(), Failure> {
    // The client has the terminal: Ctrl-C is its, not a reason to leave the key.
    let _ignore = tokio::spawn(async { while tokio::signal::ctrl_c().await.is_ok() {} });
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let status = cmd
        .status()
        .await
        .with_context(|| format!("running {program}"))?;
    drop(certified.dir);
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(Failure::Status(code.clamp(1, 255) as u8)),
        None => Err(Failure::Status(255)),
    }
}

async fn login(args: &SshArgs, user: Option<&str>, alias: &str) -> Result<(), Failure> {
    let certified = certified(&args.session, alias).await?;
    let mut cmd = tokio::process::Command::new(&args.ssh_program);
    for o in certified.options.iter().chain(&args.options) {
        cmd.arg("-o").arg(o);
    }
    cmd.arg("-l")
        .arg(user.unwrap_or(&certified.account))
        .arg(alias);
    if !args.remote.is_empty() {
        cmd.arg("--").args(&args.remote);
    }
    run_client(cmd, certified).await
}

/// `warren scp`.
#[derive(Args, Debug)]
pub(crate) struct ScpArgs {
    /// scp's own arguments; one ssh resource among them as `[USER@]ALIAS:PATH`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    args: Vec<String>,
    /// The scp client to run.
    #[arg(long, env = "WARREN_SCP_PROGRAM", default_value = "scp", hide = true)]
    scp_program: String,
    #[command(flatten)]
    session: SessionArgs,
}

/// The `[USER@]ALIAS` of an scp operand `[USER@]ALIAS:PATH`, if it is one.
fn remote_operand(arg: &str) -> Option<(Option<&str>, &str)> {
    if arg.starts_with('-') || arg.starts_with('/') || arg.starts_with("scp://") {
        return None;
    }
    let (host, _) = arg.split_once(':')?;
    if host.contains('/') {
        return None; // a local path with a colon further on
    }
    let (user, alias) = match host.rsplit_once('@') {
        Some((u, a)) => (Some(u), a),
        None => (None, host),
    };
    let ok = !alias.is_empty()
        && alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    ok.then_some((user, alias))
}

/// `warren scp [SCP ARGS] [USER@]ALIAS:PATH ...`: scp with a certificate
/// for the one ssh resource its operands name, through the edge.
pub(crate) async fn scp(args: ScpArgs) -> Result<(), Failure> {
    let mut aliases: Vec<&str> = args
        .args
        .iter()
        .filter_map(|a| remote_operand(a).map(|(_, alias)| alias))
        .collect();
    aliases.dedup();
    let alias = match aliases.as_slice() {
        [one] => *one,
        [] => {
            return Err(Failure::Usage(
                "warren scp: name an ssh resource as ALIAS:PATH".into(),
            ))
        }
        _ => {
            return Err(Failure::Usage(
                "warren scp: one ssh resource per copy".into(),
            ))
        }
    };
    let certified = certified(&args.session, alias).await?;
    let mut cmd = tokio::process::Command::new(&args.scp_program);
    for o in &certified.options {
        cmd.arg("-o").arg(o);
    }
    cmd.arg("-o").arg(format!("User={}", certified.account));
    cmd.args(&args.args);
    run_client(cmd, certified).await
}

/// The ProxyCommand: stdin and stdout to the host's sshd, through the edge.
async fn proxy(session: &SessionArgs, alias: &str) -> Result<(), Failure> {
    let (edge, token) = session.edge().await?;
    let path = format!("/cli/ssh/connect?resource={alias}");
    match edge.upgrade(&path, "warren-ssh", &token).await? {
        Ok(upgraded) => {
            // Not tokio::io::stdout(): std's stdout is line-buffered, and
            // binary SSH packets would wait in it for a newline.
            let out = std::io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .context("stdout")?;
            let out = tokio::fs::File::from_std(std::fs::File::from(out));
            let io = tokio::io::join(tokio::io::stdin(), out);
            let _ = warren_transport::pump(hyper_util::rt::TokioIo::new(upgraded), io).await;
            Ok(())
        }
        Err((status, answer)) => Err(Failure::Other(anyhow!(
            "no way through to `{alias}` ({status} {}): {}",
            answer["error"].as_str().unwrap_or("?"),
            answer["message"].as_str().unwrap_or("the edge refused")
        ))),
    }
}

fn print_config(session: &SessionArgs, alias: &str, key: &str) -> Result<(), Failure> {
    let exe = std::env::current_exe().context("finding this program")?;
    let exe = quote(&exe.display().to_string());
    let flags = session.flags()?;
    println!(
        "# warren: `ssh {alias}` signs {key}.pub for five minutes, then goes through the edge\n\
         Match host {alias} exec \"{exe} sign-key --quiet --resource %n --key-file {key}.pub{flags}\"\n\
         \x20 ProxyCommand {exe} ssh --proxy{flags} %n\n\
         \x20 IdentityFile {key}\n\
         \x20 CertificateFile {key}-cert.pub\n\
         \x20 IdentitiesOnly yes"
    );
    Ok(())
}

/// `warren sign-key`.
pub(crate) async fn sign_key(args: SignKeyArgs) -> Result<(), Failure> {
    use std::io::Read;
    let mut public = String::new();
    std::fs::File::open(&args.key_file)
        .with_context(|| format!("reading {}", args.key_file.display()))?
        .take(MAX_KEY_FILE)
        .read_to_string(&mut public)
        .with_context(|| format!("reading {}", args.key_file.display()))?;
    let answer = sign(&args.session, &args.resource, public.trim()).await?;
    let certificate = text(&answer, "certificate")?;
    let out = match args.out {
        Some(o) => o,
        None => {
            let name = args.key_file.display().to_string();
            PathBuf::from(format!(
                "{}-cert.pub",
                name.strip_suffix(".pub").unwrap_or(&name)
            ))
        }
    };
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, format!("{certificate}\n"))
        .and_then(|()| std::fs::rename(&tmp, &out))
        .with_context(|| format!("writing {}", out.display()))?;
    if args.quiet {
        return Ok(());
    }
    eprintln!(
        "certificate for {} written to {} (log in as {}; valid until {} Unix time)",
        args.resource,
        out.display(),
        text(&answer, "account")?,
        answer["valid_before"]
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::remote_operand;

    #[test]
    fn scp_operands_name_the_resource() {
        assert_eq!(remote_operand("vm-01:/etc/x"), Some((None, "vm-01")));
        assert_eq!(
            remote_operand("deploy@vm-01:x"),
            Some((Some("deploy"), "vm-01"))
        );
        for local in [
            "-P",
            "./a:b",
            "/tmp/a:b",
            "file.txt",
            "scp://vm-01/x",
            "a b:c",
        ] {
            assert_eq!(remote_operand(local), None, "{local}");
        }
    }
}
