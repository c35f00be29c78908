//! `warren ssh` end to end, with Debian's OpenSSH `sshd` started by the
//! test and configured as a host trusting the organisation's CA
//! (`TrustedUserCAKeys`) and asking the agent's auth daemon for principals
//! (`AuthorizedPrincipalsCommand warren auth-daemon principals`). The agent
//! runs `--ssh-auth-daemon`, so the user's account is made just in time.
//!
//! Needs root (sshd, useradd) and sshd; skips otherwise. The accounts the
//! test makes are removed at the end (`userdel -r`).

mod common;
mod web;

use common::bin;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use warren_testkit::{http_backend, EdgeProcess, Process, ResourceSpec};
use web::browser::{field, user_add, Browser, AUTH};

const SSHD: &str = "/usr/sbin/sshd";

fn available() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root && Path::new(SSHD).exists() && Path::new("/usr/sbin/visudo").exists() {
        return true;
    }
    warren_testkit::skip("needs root, sshd (openssh-server) and visudo (sudo)");
    false
}

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The accounts a state dir records, removed on drop with their homes
/// and sudoers files.
struct Accounts(PathBuf);

impl Drop for Accounts {
    fn drop(&mut self) {
        let Ok(state) = std::fs::read_to_string(self.0.join("state.json")) else {
            return;
        };
        let state: serde_json::Value = serde_json::from_str(&state).unwrap_or_default();
        for account in state["accounts"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
        {
            let a = account.as_str().unwrap_or_default();
            let _ = Command::new("userdel").args(["-r", a]).output();
            let _ = std::fs::remove_file(format!("/etc/sudoers.d/warren-{a}"));
        }
    }
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Sshd {
    _child: tokio::process::Child,
}

/// sshd on 127.0.0.1 trusting `ca_keys`, principals from `state`.
async fn sshd(dir: &Path, ca_keys: &str, state: &Path, port: u16) -> Sshd {
    std::fs::create_dir_all("/run/sshd").unwrap();
    let host_key = dir.join("host_ed25519");
    let out = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_key));
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(dir.join("ca.pub"), ca_keys).unwrap();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nPidFile {dir}/sshd.pid\n\
         TrustedUserCAKeys {dir}/ca.pub\n\
         AuthorizedPrincipalsCommand {bin} auth-daemon principals --username %u --state-dir {state}\n\
         AuthorizedPrincipalsCommandUser nobody\n\
         AuthorizedKeysFile none\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         UsePAM yes\nStrictModes no\nLogLevel VERBOSE\n",
        key = host_key.display(),
        dir = dir.display(),
        bin = bin().display(),
        state = state.display(),
    );
    std::fs::write(dir.join("sshd_config"), config).unwrap();
    let out = run(Command::new(SSHD)
        .arg("-t")
        .arg("-f")
        .arg(dir.join("sshd_config")));
    assert!(out.status.success(), "sshd -t: {}", text(&out.stderr));
    let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
    let child = tokio::process::Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Sshd { _child: child };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "sshd did not listen: {}",
        std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
    );
}

/// `warren login` for `email`, confirmed in a browser signed in as them.
async fn cli_login(dir: &Path, port: u16, who: &str, email: &str, password: &str) -> PathBuf {
    let ca = dir.join("cert.pem");
    let file = dir.join(format!("{who}/login.json"));
    let b = Browser::new(dir, who, ca.clone(), port);
    let (page, _) = b.sign_in("/", email, password).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let mut child = tokio::process::Command::new(bin())
        .args(["login", "--edge", &format!("https://{AUTH}:{port}"), "--ca"])
        .arg(&ca)
        .args(["--connect", &format!("127.0.0.1:{port}"), "--login-file"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let code = loop {
        let line = lines.next_line().await.unwrap().expect("a code");
        if let Some(rest) = line.split("confirm the code ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let page = b
        .get(&b.url(AUTH, &format!("/device?code={code}")), &[])
        .await;
    let confirmed = b
        .get(
            &b.url(AUTH, "/device"),
            &[
                "--data-urlencode",
                &format!("csrf={}", field(&page.body, "csrf")),
                "--data-urlencode",
                &format!("code={code}"),
                "--data-urlencode",
                "action=approve",
            ],
        )
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    file
}

fn warren_ssh(login: &Path, port: u16, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("ssh")
        .arg("--login-file")
        .arg(login)
        .args(["--connect", &format!("127.0.0.1:{port}")])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "BatchMode=yes",
        ])
        .args(args);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warren_ssh_logs_in_with_a_certificate_as_a_just_in_time_user() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("authd");
    let _accounts = Accounts(state.clone());
    let sshd_port = free_port();
    let live = http_backend("live").await;
    let mut spec = web::web_spec(
        vec![ResourceSpec::http("app", "api.test", "home", live.addr)],
        dir.path(),
    );
    spec.resources.push(ResourceSpec {
        kind: "ssh".into(),
        listen: String::new(),
        ..ResourceSpec::tcp("vm-01", "home", format!("127.0.0.1:{sshd_port}"))
    });
    std::fs::write(
        dir.path().join("edge.toml"),
        format!("{}\n[auth]\nhost = \"{AUTH}\"\n", spec.to_toml()),
    )
    .unwrap();
    let edge = EdgeProcess::start_existing(bin(), dir.path());
    let policy = "[groups]\n\"group:ops\" = [\"wtalice@corp.com\"]\n\
        [[grants]]\nsrc = [\"group:ops\", \"wtbob@corp.com\"]\ndst = [\"app\"]\n\
        [[grants]]\nsrc = [\"group:ops\"]\ndst = [\"vm-01\"]\n\
        ssh = { principals = [\"autogroup:self\"], extensions = [\"permit-pty\"], sudo = \"admin\" }\n";
    let (status, body) = edge.admin_request(
        "PUT",
        "/api/v1/policy",
        Some(&json!({ "text": policy }).to_string()),
        edge.token.as_deref(),
    );
    assert_eq!(status, 200, "{body}");
    user_add(
        &edge,
        dir.path(),
        "wtalice@corp.com",
        "correct horse battery",
    );
    user_add(&edge, dir.path(), "wtbob@corp.com", "correct horse battery");
    let mut args = edge.site_args(
        "home",
        "S3CRET-for-tests",
        "tcp",
        &[
            &format!("{}/tcp", live.addr),
            &format!("127.0.0.1:{sshd_port}/tcp"),
        ],
    );
    args.extend(
        [
            "--ssh-auth-daemon",
            "--ssh-state-dir",
            &state.display().to_string(),
            "--ssh-sudo-role",
            "admin",
        ]
        .map(String::from),
    );
    let agent = Process::spawn("agent", bin(), &args, dir.path());
    agent.wait_event("edge_connected");
    // The host: sshd trusting the CA, principals from the agent's records.
    let ca = run(Command::new(bin())
        .args(["ssh", "ca-key", "--api", &format!("http://{}", edge.admin)])
        .env("WARREN_TOKEN", edge.token.as_deref().unwrap()));
    assert!(ca.status.success(), "{}", text(&ca.stderr));
    let _sshd = sshd(dir.path(), &text(&ca.stdout), &state, sshd_port).await;
    let port = edge.https.unwrap().port();
    let alice = cli_login(
        dir.path(),
        port,
        "alice",
        "wtalice@corp.com",
        "correct horse battery",
    )
    .await;

    // In: `warren ssh vm-01 -- id -un` runs as the account made just now.
    let out = run(&mut warren_ssh(&alice, port, &["vm-01", "--", "id", "-un"]));
    assert!(
        out.status.success(),
        "{}\nsshd: {}",
        text(&out.stderr),
        std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default()
    );
    assert_eq!(text(&out.stdout).trim(), "wtalice");
    // With sudo: the policy names `admin`, which this host allows.
    let out = run(&mut warren_ssh(
        &alice,
        port,
        &["vm-01", "--", "sudo", "-n", "id", "-u"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "0");
    // The remote command's exit status is the command's.
    let out = run(&mut warren_ssh(&alice, port, &["vm-01", "--", "exit", "7"]));
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));

    // `warren sign-key` for a key of alice's own, accepted by plain ssh
    // (straight to sshd here: the certificate is what it checks).
    let key = dir.path().join("id_ed25519");
    let out = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key));
    assert!(out.status.success());
    let out = run(Command::new(bin())
        .args(["sign-key", "--resource", "vm-01", "--key-file"])
        .arg(key.with_extension("pub"))
        .arg("--login-file")
        .arg(&alice)
        .args(["--connect", &format!("127.0.0.1:{port}")]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cert = dir.path().join("id_ed25519-cert.pub");
    let plain = |user: &str| {
        run(Command::new("ssh")
            .arg("-i")
            .arg(&key)
            .arg("-o")
            .arg(format!("CertificateFile={}", cert.display()))
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                "-p",
                &sshd_port.to_string(),
            ])
            .arg(format!("{user}@127.0.0.1"))
            .arg("true"))
    };
    let out = plain("wtalice");
    assert!(out.status.success(), "plain ssh: {}", text(&out.stderr));
    let listed = run(Command::new("ssh-keygen").arg("-L").arg("-f").arg(&cert));
    let listed = text(&listed.stdout);
    assert!(listed.contains("wtalice@corp.com"), "{listed}");
    assert!(listed.contains("permit-pty"), "{listed}");
    assert!(
        !listed.contains("permit-port-forwarding"),
        "only the extensions granted: {listed}"
    );
    // The same certificate is no way into another account.
    for other in ["root", "nobody"] {
        let out = plain(other);
        assert!(
            !out.status.success(),
            "logged in as {other} with alice's certificate"
        );
    }

    // A user the policy does not grant gets no certificate.
    let bob = cli_login(
        dir.path(),
        port,
        "bob",
        "wtbob@corp.com",
        "correct horse battery",
    )
    .await;
    let out = run(&mut warren_ssh(&bob, port, &["vm-01", "--", "true"]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not_granted"),
        "{}",
        text(&out.stderr)
    );

    // Hostile names never reach a path: the principals command refuses them.
    for name in ["../authd", "a b", "%u", "wtalice/../x"] {
        let out = run(Command::new(bin())
            .args([
                "auth-daemon",
                "principals",
                "--username",
                name,
                "--state-dir",
            ])
            .arg(&state));
        assert!(!out.status.success(), "{name:?}");
        assert!(out.stdout.is_empty(), "{name:?}: {}", text(&out.stdout));
    }

    // Every issuance and decision is on record.
    let events = edge.admin_get("/api/v1/events?limit=500");
    let issued: Vec<_> = events
        .as_array()
        .or_else(|| events["events"].as_array())
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "ssh_certificate")
        .collect();
    assert!(issued.len() >= 4, "{events}");
    assert!(issued.iter().all(|e| e["subject"] == "wtalice@corp.com"));
}
