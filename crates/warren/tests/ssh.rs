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
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use warren_testkit::{http_backend, EdgeProcess, Process, ResourceSpec};
use web::browser::{start_login, user_add, Browser, AUTH};

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
/// sshd on 127.0.0.1 trusting `ca_keys`, principals from `state`; in the
/// network namespace `netns` when given.
async fn sshd(dir: &Path, ca_keys: &str, state: &Path, port: u16, netns: Option<&str>) -> Sshd {
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
         UsePAM yes\nStrictModes no\nLogLevel VERBOSE\nSubsystem sftp internal-sftp\n",
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
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = tokio::process::Command::new("ip");
            c.args(["netns", "exec", ns, SSHD]);
            c
        }
        None => tokio::process::Command::new(SSHD),
    };
    let child = cmd
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..200 {
        let log = std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
        if log.contains("Server listening on") {
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
    // Signed in; the app itself is out of the agent's reach when the agent
    // is at "home" (502), which is not what these tests are about.
    assert!(
        page.status == 200 || page.status == 502,
        "{} {}",
        page.status,
        page.body
    );
    let (child, code) = start_login(port, &ca, &file).await;
    assert_eq!(b.confirm_device(&code, "approve").await, 200);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    file
}

/// The OpenSSH client options of every login here: a throwaway host, no
/// questions, errors only.
const CLIENT_OPTIONS: [&str; 8] = [
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    "LogLevel=ERROR",
];

fn warren_ssh(login: &Path, port: u16, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("ssh")
        .arg("--login-file")
        .arg(login)
        .args(["--connect", &format!("127.0.0.1:{port}")])
        .args(CLIENT_OPTIONS)
        .args(args);
    cmd
}

/// Plain `ssh` with `key` and its certificate `cert`, and nothing else.
fn openssh(key: &Path, cert: &Path) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.arg("-i")
        .arg(key)
        .arg("-o")
        .arg(format!("CertificateFile={}", cert.display()))
        .args(["-o", "IdentitiesOnly=yes"])
        .args(CLIENT_OPTIONS);
    cmd
}

/// An edge with an `app` http resource and the `vm-01` ssh resource, the
/// policy `policy`, the users `emails`, one agent running the auth daemon
/// with `daemon` options, and sshd trusting the edge's CA and `extra_ca`.
struct World {
    /// First: fields drop in order, and it reads the state in `dir`.
    _accounts: Accounts,
    dir: tempfile::TempDir,
    edge: EdgeProcess,
    state: PathBuf,
    /// The edge's https port (the sign-in host).
    port: u16,
    sshd_port: u16,
    _live: warren_testkit::HttpBackend,
    _agent: Process,
    _sshd: Sshd,
    /// `warren auth-daemon` and its address, when it runs on its own.
    standalone: Option<(Process, String)>,
    /// Last: the namespace goes after the processes in it.
    home: Option<Home>,
}

/// Where the auth daemon runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Where {
    /// In the agent, on the test's own network.
    Agent,
    /// In the agent, the agent and sshd in a "home" network namespace.
    Home,
    /// `warren auth-daemon` on its own, it, the agent and sshd at home.
    HomeStandalone,
}

/// A "home" network namespace joined to this one by a veth pair: the
/// edge listens on this side's address; removed on drop.
struct Home {
    ns: String,
    edge_ip: String,
}

impl Home {
    fn new() -> Home {
        // Tests of this file run at once: a namespace and subnet each.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = std::process::id() % 10_000 * 10 + n;
        let ns = format!("wr-home-{id}");
        let octet = (std::process::id() % 50 * 4 + n) as u8;
        let edge_ip = format!("10.252.{octet}.1");
        let home_ip = format!("10.252.{octet}.2");
        let (outer, inner) = (format!("vho{id}"), format!("vhi{id}"));
        let (edge_cidr, home_cidr) = (format!("{edge_ip}/30"), format!("{home_ip}/30"));
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", &ns],
            vec![
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ],
            vec!["link", "set", &inner, "netns", &ns],
            vec!["addr", "add", &edge_cidr, "dev", &outer],
            vec!["link", "set", &outer, "up"],
            vec!["-n", &ns, "addr", "add", &home_cidr, "dev", &inner],
            vec!["-n", &ns, "link", "set", &inner, "up"],
            vec!["-n", &ns, "link", "set", "lo", "up"],
        ];
        let home = Home {
            ns: ns.clone(),
            edge_ip,
        };
        for step in steps {
            let out = run(Command::new("ip").args(&step));
            assert!(out.status.success(), "ip {step:?}: {}", text(&out.stderr));
        }
        home
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        // The veth pair goes with the namespace.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.ns])
            .output();
    }
}

impl World {
    async fn start(policy: &str, emails: &[&str], daemon: &[&str], extra_ca: &str) -> World {
        World::start_with(policy, emails, daemon, extra_ca, Where::Agent).await
    }

    /// As [`World::start`]; with `standalone`, the auth daemon is `warren
    /// auth-daemon` on its own (HTTPS, a pre-shared key), which the agent
    /// asks with `--auth-daemon`, instead of the agent's own.
    async fn start_with(
        policy: &str,
        emails: &[&str],
        daemon: &[&str],
        extra_ca: &str,
        place: Where,
    ) -> World {
        let standalone = place == Where::HomeStandalone;
        let home = matches!(place, Where::Home | Where::HomeStandalone).then(Home::new);
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("authd");
        let accounts = Accounts(state.clone());
        let sshd_port = free_port();
        let live = http_backend("live").await;
        let mut spec = web::web_spec(
            vec![ResourceSpec::http("app", "api.test", "home", live.addr)],
            dir.path(),
        );
        if let Some(h) = &home {
            spec.tunnel_listen = format!("{}:0", h.edge_ip);
        }
        spec.resources.push(ResourceSpec {
            kind: "ssh".into(),
            listen: String::new(),
            // At home sshd sees the agent connect from 127.0.0.1: the
            // certificates say so, and log in from nowhere else.
            extra: if home.is_some() {
                "source_address = \"127.0.0.1/32\"\n".into()
            } else {
                String::new()
            },
            ..ResourceSpec::tcp("vm-01", "home", format!("127.0.0.1:{sshd_port}"))
        });
        std::fs::write(
            dir.path().join("edge.toml"),
            format!("{}\n[auth]\nhost = \"{AUTH}\"\n", spec.to_toml()),
        )
        .unwrap();
        let edge = EdgeProcess::start_existing(bin(), dir.path());
        edge.put_policy(policy);
        for email in emails {
            user_add(&edge, dir.path(), email, "correct horse battery");
        }
        let mut args = edge.site_args(
            "home",
            "S3CRET-for-tests",
            "tcp",
            &[
                &format!("{}/tcp", live.addr),
                &format!("127.0.0.1:{sshd_port}/tcp"),
            ],
        );
        let state_arg = ["--ssh-state-dir".to_owned(), state.display().to_string()];
        let mut standalone_daemon = None;
        if standalone {
            let psk = dir.path().join("psk");
            std::fs::write(&psk, "0123456789abcdef0123456789abcdef-psk\n").unwrap();
            let mut dargs = vec!["auth-daemon".to_owned(), "--pre-shared-key-file".to_owned()];
            dargs.push(psk.display().to_string());
            dargs.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
            dargs.extend(state_arg.iter().cloned());
            dargs.extend(daemon.iter().map(|s| s.to_string()));
            let d = match &home {
                // The other host at home too: reached by the agent only.
                Some(h) => {
                    let mut wrapped = vec!["netns".to_owned(), "exec".to_owned(), h.ns.clone()];
                    wrapped.push(bin().display().to_string());
                    wrapped.extend(dargs);
                    Process::spawn(
                        "auth-daemon",
                        Path::new("/usr/sbin/ip"),
                        &wrapped,
                        dir.path(),
                    )
                }
                None => Process::spawn("auth-daemon", bin(), &dargs, dir.path()),
            };
            let listening = d.wait_event("auth_daemon_listening");
            let addr = listening["addr"].as_str().unwrap().to_owned();
            let pin = listening["pin"].as_str().unwrap().to_owned();
            // The daemon's own key, in the flag's fourth field.
            args.extend([
                "--auth-daemon".to_owned(),
                format!("127.0.0.1,{addr},{pin},{}", psk.display()),
            ]);
            standalone_daemon = Some((d, addr));
        } else {
            args.push("--ssh-auth-daemon".to_owned());
            args.extend(state_arg.iter().cloned());
            args.extend(daemon.iter().map(|s| s.to_string()));
        }
        let agent =
            match &home {
                // The agent and sshd at home: the agent dials the edge's
                // address on the veth; nothing at home is reachable from outside.
                Some(h) => {
                    let mut wrapped = vec!["netns".to_owned(), "exec".to_owned(), h.ns.clone()];
                    wrapped.push(bin().display().to_string());
                    wrapped.extend(args.iter().map(|a| {
                        a.replace("https://127.0.0.1:", &format!("https://{}:", h.edge_ip))
                    }));
                    Process::spawn("agent", Path::new("/usr/sbin/ip"), &wrapped, dir.path())
                }
                None => Process::spawn("agent", bin(), &args, dir.path()),
            };
        agent.wait_event("edge_connected");
        // The host: sshd trusting the CA, principals from the agent's records.
        let ca = ca_keys(&edge, &[]);
        let sshd = sshd(
            dir.path(),
            &format!("{ca}{extra_ca}"),
            &state,
            sshd_port,
            home.as_ref().map(|h| h.ns.as_str()),
        )
        .await;
        let port = edge.https.unwrap().port();
        World {
            _accounts: accounts,
            dir,
            edge,
            state,
            port,
            sshd_port,
            _live: live,
            _agent: agent,
            _sshd: sshd,
            standalone: standalone_daemon,
            home,
        }
    }

    async fn login(&self, who: &str, email: &str) -> PathBuf {
        cli_login(
            self.dir.path(),
            self.port,
            who,
            email,
            "correct horse battery",
        )
        .await
    }

    fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Plain `ssh` with `key` and `cert`, straight to sshd, as `user`.
    fn plain(&self, key: &Path, cert: &Path, user: &str) -> std::process::Output {
        run(openssh(key, cert)
            .args(["-p", &self.sshd_port.to_string()])
            .arg(format!("{user}@127.0.0.1"))
            .arg("true"))
    }

    /// `warren ssh` as `login` with `args`: it must succeed (sshd's log
    /// shown when not); its output, trimmed.
    fn ssh_ok(&self, login: &Path, args: &[&str]) -> String {
        let out = run(&mut warren_ssh(login, self.port, args));
        assert!(
            out.status.success(),
            "{}\n{}",
            text(&out.stderr),
            self.sshd_log()
        );
        text(&out.stdout).trim().to_owned()
    }

    /// A new key pair in the test's directory: (private, public).
    fn key(&self, name: &str) -> (PathBuf, PathBuf) {
        let key = self.dir.path().join(name);
        let out = run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let public = key.with_extension("pub");
        (key, public)
    }
}

/// `warren sign-key` for `public`: the certificate's path.
fn sign_key(login: &Path, port: u16, public: &Path) -> PathBuf {
    let out = run(Command::new(bin())
        .args(["sign-key", "--resource", "vm-01", "--key-file"])
        .arg(public)
        .arg("--login-file")
        .arg(login)
        .args(["--connect", &format!("127.0.0.1:{port}")]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let name = public.display().to_string();
    PathBuf::from(format!("{}-cert.pub", name.strip_suffix(".pub").unwrap()))
}

/// `warren ssh ca-key` (with `args`, e.g. `--rotate`): its lines.
fn ca_keys(edge: &EdgeProcess, args: &[&str]) -> String {
    let out = run(Command::new(bin())
        .args(["ssh", "ca-key", "--api", &format!("http://{}", edge.admin)])
        .args(args)
        .env("WARREN_TOKEN", edge.token.as_deref().unwrap()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warren_ssh_logs_in_with_a_certificate_as_a_just_in_time_user() {
    if !available() {
        return;
    }
    let policy = "[groups]\n\"group:ops\" = [\"wtalice@corp.com\"]\n\
        [[grants]]\nsrc = [\"group:ops\", \"wtbob@corp.com\"]\ndst = [\"app\"]\n\
        [[grants]]\nsrc = [\"group:ops\"]\ndst = [\"vm-01\"]\n\
        ssh = { principals = [\"autogroup:self\"], extensions = [\"permit-pty\"], sudo = \"admin\" }\n";
    let w = World::start(
        policy,
        &["wtalice@corp.com", "wtbob@corp.com"],
        &["--ssh-sudo-role", "admin"],
        "",
    )
    .await;
    let (edge, state, port) = (&w.edge, &w.state, w.port);
    let alice = w.login("alice", "wtalice@corp.com").await;

    // In: `warren ssh vm-01 -- id -un` runs as the account made just now.
    let out = run(&mut warren_ssh(&alice, port, &["vm-01", "--", "id", "-un"]));
    assert!(
        out.status.success(),
        "{}\nsshd: {}",
        text(&out.stderr),
        w.sshd_log()
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

    // `--print-config`: plain `ssh vm-01` with that block signs a key of
    // alice's own on each connection and goes through the edge.
    let (cfg_key, _) = w.key("id_cfg");
    let out = run(Command::new(bin())
        .args(["ssh", "--print-config", "vm-01", "--key"])
        .arg(&cfg_key)
        .arg("--login-file")
        .arg(&alice)
        .args(["--connect", &format!("127.0.0.1:{port}")]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = w.dir.path().join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "{}\nHost *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  BatchMode yes\n  LogLevel ERROR\n",
            text(&out.stdout)
        ),
    )
    .unwrap();
    let out = run(Command::new("ssh")
        .arg("-F")
        .arg(&config)
        .args(["-l", "wtalice", "vm-01", "id", "-un"]));
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        w.sshd_log()
    );
    assert_eq!(text(&out.stdout).trim(), "wtalice");

    // `warren scp` there and back, as the same account.
    let local = w.dir.path().join("hello.txt");
    std::fs::write(&local, "hello over scp\n").unwrap();
    let mut scp = Command::new(bin());
    scp.arg("scp")
        .arg("--login-file")
        .arg(&alice)
        .args(["--connect", &format!("127.0.0.1:{port}"), "--"])
        .args(CLIENT_OPTIONS)
        .arg("-q")
        .arg(&local)
        .arg("vm-01:copied.txt");
    let out = run(&mut scp);
    assert!(out.status.success(), "scp: {}", text(&out.stderr));
    let out = run(&mut warren_ssh(
        &alice,
        port,
        &["vm-01", "--", "cat", "copied.txt"],
    ));
    assert_eq!(
        text(&out.stdout),
        "hello over scp\n",
        "{}",
        text(&out.stderr)
    );

    // `warren sign-key` for a key of alice's own, accepted by plain ssh
    // (straight to sshd here: the certificate is what it checks).
    let (key, public) = w.key("id_ed25519");
    let cert = sign_key(&alice, port, &public);
    let plain = |user: &str| w.plain(&key, &cert, user);
    let out = plain("wtalice");
    assert!(out.status.success(), "plain ssh: {}", text(&out.stderr));
    let listed = run(Command::new("ssh-keygen").arg("-L").arg("-f").arg(&cert));
    let listed = text(&listed.stdout);
    assert!(listed.contains("vm-01/wtalice@corp.com"), "{listed}");
    assert!(listed.contains("permit-pty"), "{listed}");
    assert!(
        !listed.contains("source-address"),
        "none asked for: {listed}"
    );
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
    let bob = w.login("bob", "wtbob@corp.com").await;
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
            .arg(state));
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

/// Certificates sshd must refuse, after OpenSSH's own certificate regress
/// tests: minted by a CA the test holds (trusted beside the edge's, as a
/// second CA would be) so every field can be wrong on purpose, each next to
/// a certificate that differs only there and is accepted (so each refusal
/// is the field's doing). Then the edge's own: a CA rotated out, and a sudo
/// role the host vetoes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_refuses_what_the_certificate_or_the_host_does_not_allow() {
    if !available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let test_ca = tmp.path().join("test_ca");
    let out = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test-ca", "-f"])
        .arg(&test_ca));
    assert!(out.status.success());
    let test_ca_pub = std::fs::read_to_string(test_ca.with_extension("pub")).unwrap();
    let policy = "[[grants]]\nsrc = [\"wtcarol@corp.com\"]\ndst = [\"app\", \"vm-01\"]\n\
        ssh = { sudo = \"ops\" }\n";
    let w = World::start(
        policy,
        &["wtcarol@corp.com"],
        &["--ssh-sudo-role", "admin"],
        &test_ca_pub,
    )
    .await;
    let carol = w.login("carol", "wtcarol@corp.com").await;

    // The policy names the sudo role `ops`; this host allows only `admin`:
    // carol is in, without sudo, and told so.
    let out = run(&mut warren_ssh(
        &carol,
        w.port,
        &["vm-01", "--", "id", "-un"],
    ));
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        w.sshd_log()
    );
    assert_eq!(text(&out.stdout).trim(), "wtcarol");
    assert!(
        text(&out.stderr).contains("refused the sudo role `ops`"),
        "{}",
        text(&out.stderr)
    );
    assert!(!Path::new("/etc/sudoers.d/warren-wtcarol").exists());
    let out = run(&mut warren_ssh(
        &carol,
        w.port,
        &["vm-01", "--", "sudo", "-n", "true"],
    ));
    assert!(!out.status.success(), "sudo despite the host's veto");

    // Certificates from the test's CA, for the account the daemon made.
    let (key, public) = w.key("id_carol");
    let mint = |name: &str, ca: &Path, args: &[&str]| -> PathBuf {
        let cert = w.dir.path().join(format!("{name}-cert.pub"));
        let pub_copy = w.dir.path().join(format!("{name}.pub"));
        std::fs::copy(&public, &pub_copy).unwrap();
        let out = run(Command::new("ssh-keygen")
            .arg("-s")
            .arg(ca)
            .args(["-q", "-I", name])
            .args(args)
            .arg(&pub_copy));
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        cert
    };
    let valid = ["-n", "vm-01/wtcarol@corp.com", "-V", "-5m:+5m"];
    let good = mint("good", &test_ca, &valid);
    let out = w.plain(&key, &good, "wtcarol");
    assert!(
        out.status.success(),
        "the control certificate: {}\n{}",
        text(&out.stderr),
        w.sshd_log()
    );
    let other_ca = tmp.path().join("other_ca");
    let out = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other_ca));
    assert!(out.status.success());
    let refused = [
        (
            "expired",
            mint(
                "expired",
                &test_ca,
                &["-n", "vm-01/wtcarol@corp.com", "-V", "-2h:-1h"],
            ),
        ),
        (
            "not yet valid",
            mint(
                "early",
                &test_ca,
                &["-n", "vm-01/wtcarol@corp.com", "-V", "+1h:+2h"],
            ),
        ),
        (
            "wrong principal",
            mint(
                "mallory",
                &test_ca,
                &["-n", "vm-01/mallory@corp.com", "-V", "-5m:+5m"],
            ),
        ),
        ("another CA", mint("other", &other_ca, &valid)),
        (
            "a principal for another host",
            mint(
                "vm02",
                &test_ca,
                &["-n", "vm-02/wtcarol@corp.com", "-V", "-5m:+5m"],
            ),
        ),
        (
            "the bare email (no host)",
            mint(
                "bare",
                &test_ca,
                &["-n", "wtcarol@corp.com", "-V", "-5m:+5m"],
            ),
        ),
        (
            "source-address mismatch",
            mint(
                "elsewhere",
                &test_ca,
                &[
                    "-n",
                    "vm-01/wtcarol@corp.com",
                    "-V",
                    "-5m:+5m",
                    "-O",
                    "source-address=10.9.9.9/32",
                ],
            ),
        ),
    ];
    for (what, cert) in &refused {
        let out = w.plain(&key, cert, "wtcarol");
        assert!(!out.status.success(), "sshd accepted a certificate: {what}");
    }
    // The same source-address option naming where the agent connects from.
    let here = mint(
        "here",
        &test_ca,
        &[
            "-n",
            "vm-01/wtcarol@corp.com",
            "-V",
            "-5m:+5m",
            "-O",
            "source-address=127.0.0.1/32",
        ],
    );
    let out = w.plain(&key, &here, "wtcarol");
    assert!(
        out.status.success(),
        "source-address control: {}",
        text(&out.stderr)
    );

    // A CA rotated out: once hosts trust only the new CA, a certificate the
    // old one signed is refused, and a new `warren ssh` gets in.
    let old = sign_key(&carol, w.port, &public);
    let out = w.plain(&key, &old, "wtcarol");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rotated = ca_keys(&w.edge, &["--rotate", "--overlap", "0s"]);
    assert_eq!(
        rotated.lines().count(),
        1,
        "overlap 0s: only the new CA: {rotated}"
    );
    std::fs::write(
        w.dir.path().join("ca.pub"),
        format!("{rotated}{test_ca_pub}"),
    )
    .unwrap();
    let out = w.plain(&key, &old, "wtcarol");
    assert!(
        !out.status.success(),
        "a certificate of a CA rotated out was accepted"
    );
    let out = run(&mut warren_ssh(&carol, w.port, &["vm-01", "--", "true"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The standalone daemon (`warren auth-daemon`, for hosts the agent is not
/// on): the agent reaches it over HTTPS, pinning its certificate and
/// presenting the pre-shared key; it makes the account and answers from the
/// same records sshd's principals command reads. All of it at "home", in a
/// network namespace only the agent's outbound link leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_auth_daemon_lets_users_in_for_the_agent() {
    if !available() {
        return;
    }
    let policy = "[[grants]]\nsrc = [\"wtdave@corp.com\"]\ndst = [\"app\", \"vm-01\"]\n\
        ssh = { sudo = \"admin\" }\n";
    let w = World::start_with(
        policy,
        &["wtdave@corp.com"],
        &["--ssh-sudo-role", "admin"],
        "",
        Where::HomeStandalone,
    )
    .await;
    let dave = w.login("dave", "wtdave@corp.com").await;
    assert_eq!(
        w.ssh_ok(&dave, &["vm-01", "--", "sudo", "-n", "id", "-un"]),
        "root"
    );
    let out = run(&mut warren_ssh(
        &dave,
        w.port,
        &["vm-01", "--", "id", "-un"],
    ));
    assert_eq!(text(&out.stdout).trim(), "wtdave", "{}", text(&out.stderr));

    // Without the key, or with another, the daemon does nothing.
    let (daemon, addr) = w.standalone.as_ref().unwrap();
    let url = format!("https://{addr}/v1/ssh-user");
    let ns = w.home.as_ref().unwrap().ns.clone();
    for key in [None, Some("0123456789abcdef0123456789abcdef-psX")] {
        let mut curl = Command::new("ip");
        curl.args(["netns", "exec", &ns, "curl"]);
        curl.args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-binary",
            "@/dev/null",
        ]);
        if let Some(k) = key {
            curl.args(["-H", &format!("Authorization: Bearer {k}")]);
        }
        let out = run(curl.arg(&url));
        assert_eq!(text(&out.stdout), "401", "key {key:?}");
    }
    assert!(!daemon.events("auth_daemon_refused").is_empty());
}

/// The SSH host at "home": sshd and the agent in a network namespace of
/// their own, joined to the edge's only by the agent's outbound link (sshd
/// listens on the namespace's loopback, which nothing outside can reach).
/// `warren ssh` and a plain `ssh` with a `warren sign-key` certificate both
/// get in through the edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warren_ssh_reaches_a_host_at_home_with_no_port_open() {
    if !available() {
        return;
    }
    let policy = "[[grants]]\nsrc = [\"wterin@corp.com\"]\ndst = [\"app\", \"vm-01\"]\n";
    let w = World::start_with(policy, &["wterin@corp.com"], &[], "", Where::Home).await;
    // From out here, nothing listens where sshd does.
    assert!(std::net::TcpStream::connect(("127.0.0.1", w.sshd_port)).is_err());
    let erin = w.login("erin", "wterin@corp.com").await;
    assert_eq!(w.ssh_ok(&erin, &["vm-01", "--", "id", "-un"]), "wterin");
    // No sudo: the grant names no role.
    let out = run(&mut warren_ssh(
        &erin,
        w.port,
        &["vm-01", "--", "sudo", "-n", "true"],
    ));
    assert!(!out.status.success(), "sudo without a grant");
    // Plain ssh with a signed key of erin's own, through `warren ssh --proxy`.
    let (key, public) = w.key("id_erin");
    let cert = sign_key(&erin, w.port, &public);
    let listed = run(Command::new("ssh-keygen").arg("-L").arg("-f").arg(&cert));
    let listed = text(&listed.stdout);
    assert!(listed.contains("source-address 127.0.0.1/32"), "{listed}");
    assert!(listed.contains("vm-01/wterin@corp.com"), "{listed}");
    let proxy = format!(
        "ProxyCommand={} ssh --proxy --login-file {} --connect 127.0.0.1:{} %n",
        bin().display(),
        erin.display(),
        w.port
    );
    let out = run(openssh(&key, &cert)
        .args(["-o", &proxy])
        .args(["wterin@vm-01", "id", "-un"]));
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        w.sshd_log()
    );
    assert_eq!(text(&out.stdout).trim(), "wterin");
}
