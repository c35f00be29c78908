//! `warren connect` through the real edge and agent: local forwards and
//! SOCKS5 onto a private resource, as `warren login`'s user, with what the
//! policy does not grant and what the agent's list does not name refused.

mod common;
mod web;

use common::bin;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use warren_testkit::{http_backend, EdgeProcess, Process, ResourceSpec};
use web::browser::{start_login, user_add, Browser, AUTH};

/// `warren login` for `email`, confirmed in a browser signed in as them.
async fn cli_login(dir: &Path, port: u16, email: &str) -> PathBuf {
    let ca = dir.join("cert.pem");
    let file = dir.join("alice/login.json");
    let b = Browser::new(dir, "alice", ca.clone(), port);
    let (page, _) = b.sign_in("/", email, "correct horse battery").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let (child, code) = start_login(port, &ca, &file).await;
    assert_eq!(b.confirm_device(&code, "approve").await, 200);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    file
}

/// `curl` through `args`: the body, or curl's exit code.
fn curl(args: &[&str]) -> Result<String, i32> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(out.status.code().unwrap_or(-1))
    }
}

struct Connect(std::process::Child);

impl Drop for Connect {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn warren_connect_forwards_and_proxies_only_what_is_granted() {
    let dir = tempfile::tempdir().unwrap();
    let live = http_backend("live").await;
    let grafana = http_backend("grafana").await;
    let secret = http_backend("secret").await;
    let unlisted = http_backend("unlisted").await;
    let (g, s, u) = (
        grafana.addr.port(),
        secret.addr.port(),
        unlisted.addr.port(),
    );
    let spec = web::web_spec(
        vec![ResourceSpec::http("app", "api.test", "home", live.addr)],
        dir.path(),
    );
    std::fs::write(
        dir.path().join("edge.toml"),
        format!(
            "{}\n[auth]\nhost = \"{AUTH}\"\n\n[devices]\nlisten = \"127.0.0.1:0\"\nendpoint = \"vps.example.com:51820\"\n\n\
             [[resource]]\nname = \"grafana\"\ntype = \"private\"\nsite = \"home\"\naddress = \"127.0.0.1\"\n\
             ports = [\"{g}/tcp\", \"{s}/tcp\", \"{u}/tcp\"]\nalias = \"grafana.home.example\"\n",
            spec.to_toml()
        ),
    )
    .unwrap();
    let edge = EdgeProcess::start_existing(bin(), dir.path());
    edge.put_policy(&format!(
        "[[grants]]\nsrc = [\"alice@corp.com\"]\ndst = [\"app\", \"grafana:{g}\", \"grafana:{u}\"]\n"
    ));
    user_add(&edge, dir.path(), "alice@corp.com", "correct horse battery");
    let args = edge.site_args(
        "home",
        "S3CRET-for-tests",
        "tcp",
        &[
            &format!("{}/tcp", live.addr),
            &format!("127.0.0.1:{g}/tcp"),
            &format!("127.0.0.1:{s}/tcp"),
        ],
    );
    let agent = Process::spawn("agent", bin(), &args, dir.path());
    agent.wait_event("edge_connected");
    let port = edge.https.unwrap().port();
    let login = cli_login(dir.path(), port, "alice@corp.com").await;

    let mut child = Command::new(bin())
        .arg("connect")
        .arg("--login-file")
        .arg(&login)
        .args(["--connect", &format!("127.0.0.1:{port}")])
        .args(["-L", &format!("127.0.0.1:0=grafana:{g}")])
        .args(["-L", &format!("127.0.0.1:0=grafana.home.example:{s}")])
        .args(["-L", &format!("127.0.0.1:0=127.0.0.1:{u}")])
        .args(["--socks", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let connect = Connect(child);
    let mut local = Vec::new();
    for _ in 0..4 {
        let line = lines.next().unwrap().unwrap();
        let addr = line
            .split_whitespace()
            .find(|w| w.starts_with("127.0.0.1:"))
            .unwrap_or_else(|| panic!("{line}"))
            .to_owned();
        local.push(addr);
    }
    let url = |i: usize| format!("http://{}/", local[i]);
    // Granted and listed.
    let body = curl(&[&url(0)]).unwrap();
    assert!(body.contains("grafana"), "{body}");
    // Listed, not granted; granted, not listed: refused, nothing sent.
    assert!(curl(&[&url(1)]).is_err());
    assert!(curl(&[&url(2)]).is_err());
    // SOCKS5, by alias: through; and refused where the policy says no.
    let socks = local[3].clone();
    let body = curl(&[
        "--socks5-hostname",
        &socks,
        &format!("http://grafana.home.example:{g}/"),
    ])
    .unwrap();
    assert!(body.contains("grafana"), "{body}");
    let refused = curl(&[
        "--socks5-hostname",
        &socks,
        &format!("http://grafana.home.example:{s}/"),
    ]);
    assert_eq!(
        refused,
        Err(97),
        "curl: the SOCKS5 proxy refused the connection"
    );
    // No request reached what was refused.
    assert_eq!(
        secret.requests.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(
        unlisted.requests.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // Every decision is in the audit trail, as warren connect's.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let d = edge.admin_get("/api/v1/decisions").to_string();
        if d.contains("(warren connect)") && d.contains("\"decision\":\"deny\"") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{d}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(connect);
}

/// The escalated tier: a grant with `within` opens only after a TOTP check
/// (at sign-in, or on the sign-in host's step-up page), closes when its
/// window has passed, and the default grants stay open meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn an_escalated_grant_opens_after_a_totp_check_and_closes_after_its_window() {
    use web::browser::field;
    let dir = tempfile::tempdir().unwrap();
    let live = http_backend("live").await;
    let grafana = http_backend("grafana").await;
    let full = http_backend("full-access").await;
    let admin = http_backend("admin-page").await;
    let (g, f) = (grafana.addr.port(), full.addr.port());
    let mut spec = web::web_spec(
        vec![
            ResourceSpec::http("app", "api.test", "home", live.addr),
            ResourceSpec::http("admin", "admin.app.test", "home", admin.addr),
        ],
        dir.path(),
    );
    // The bastion's SSH: certificates are signed only while the factor is
    // fresh (no sshd needed to ask for one).
    let key = dir.path().join("id_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    spec.resources.push(ResourceSpec {
        kind: "ssh".into(),
        listen: String::new(),
        ..ResourceSpec::tcp("bastion", "home", "127.0.0.1:22".to_owned())
    });
    std::fs::write(
        dir.path().join("edge.toml"),
        format!(
            "{}\n[auth]\nhost = \"{AUTH}\"\nrequire_2fa = true\n\n[devices]\nlisten = \"127.0.0.1:0\"\nendpoint = \"vps.example.com:51820\"\n\n\
             [[resource]]\nname = \"grafana\"\ntype = \"private\"\nsite = \"home\"\naddress = \"127.0.0.1\"\n\
             ports = [\"{g}/tcp\", \"{f}/tcp\"]\n",
            spec.to_toml()
        ),
    )
    .unwrap();
    let edge = EdgeProcess::start_existing(bin(), dir.path());
    edge.put_policy(&format!(
        "[[grants]]\nsrc = [\"alice@corp.com\"]\ndst = [\"app\", \"grafana:{g}\"]\n\n\
         [[grants]]\nsrc = [\"alice@corp.com\"]\ndst = [\"grafana:{f}\", \"admin\", \"bastion\"]\nwithin = \"8s\"\n\
         ssh = {{ principals = [\"autogroup:self\"] }}\n"
    ));
    user_add(&edge, dir.path(), "alice@corp.com", "correct horse battery");
    let args = edge.site_args(
        "home",
        "S3CRET-for-tests",
        "tcp",
        &[
            &format!("{}/tcp", live.addr),
            &format!("127.0.0.1:{g}/tcp"),
            &format!("127.0.0.1:{f}/tcp"),
            &format!("{}/tcp", admin.addr),
        ],
    );
    let agent = Process::spawn("agent", bin(), &args, dir.path());
    agent.wait_event("edge_connected");
    let port = edge.https.unwrap().port();
    let ca = dir.path().join("cert.pem");

    // First sign-in: enrol the second factor (a TOTP check: the window opens).
    let b = Browser::new(dir.path(), "alice", ca.clone(), port);
    let (page, _) = b
        .sign_in("/", "alice@corp.com", "correct horse battery")
        .await;
    let start = page.body.find("<code>").expect("the enrolment page") + 6;
    let secret = page.body[start..start + page.body[start..].find("</code>").unwrap()].to_owned();
    let enrolled = b
        .get(
            &b.url(AUTH, "/login/2fa"),
            &[
                "--data-urlencode",
                &format!("csrf={}", field(&page.body, "csrf")),
                "--data-urlencode",
                &format!("code={}", web::browser::totp_now(&secret, 0)),
            ],
        )
        .await;
    assert_eq!(enrolled.status, 200, "{}", enrolled.body);
    let checked = std::time::Instant::now();
    let file = dir.path().join("alice/login.json");
    let (child, code) = start_login(port, &ca, &file).await;
    assert_eq!(b.confirm_device(&code, "approve").await, 200);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = Command::new(bin())
        .arg("connect")
        .arg("--login-file")
        .arg(&file)
        .args(["--connect", &format!("127.0.0.1:{port}")])
        .args(["-L", &format!("127.0.0.1:0=grafana:{g}")])
        .args(["-L", &format!("127.0.0.1:0=grafana:{f}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let _connect = Connect(child);
    let mut local = Vec::new();
    for _ in 0..2 {
        let line = lines.next().unwrap().unwrap();
        local.push(line.split_whitespace().nth(2).unwrap().to_owned());
    }
    let url = |i: usize| format!("http://{}/", local[i]);
    // Within the window: both tiers.
    assert!(
        checked.elapsed() < std::time::Duration::from_secs(7),
        "the setup took too long"
    );
    assert!(curl(&[&url(1)]).unwrap().contains("full-access"));
    assert!(curl(&[&url(0)]).unwrap().contains("grafana"));
    // The bastion's certificate: the policy allows it, so the edge goes on
    // to ask the site to let alice in (this agent runs no auth daemon, so
    // that step fails: a 502, where a policy refusal is a 403).
    let sign = || {
        Command::new(bin())
            .args(["sign-key", "--resource", "bastion", "--key-file"])
            .arg(key.with_extension("pub"))
            .arg("--login-file")
            .arg(&file)
            .args(["--connect", &format!("127.0.0.1:{port}")])
            .output()
            .unwrap()
    };
    let signed = String::from_utf8_lossy(&sign().stderr).into_owned();
    assert!(signed.contains("(502 site_unavailable)"), "{signed}");
    // The escalated http resource too, with the browser's session.
    let page = visit(&b, "admin.app.test").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("admin-page"), "{}", page.body);
    // After it: the default tier only.
    std::thread::sleep(std::time::Duration::from_secs(9).saturating_sub(checked.elapsed()));
    assert!(curl(&[&url(1)]).is_err(), "the escalation ended on its own");
    let refused = String::from_utf8_lossy(&sign().stderr).into_owned();
    assert!(refused.contains("(403 not_granted)"), "{refused}");
    assert!(curl(&[&url(0)]).unwrap().contains("grafana"));
    let page = b.get(&b.url("admin.app.test", "/"), &[]).await;
    assert_eq!(page.status, 403, "the http resource too: {}", page.body);
    assert!(
        page.body.contains(&format!(
            "it needs a second factor passed recently: pass it again at https://{AUTH}:{port}/step-up"
        )),
        "the page points to the step-up: {}",
        page.body
    );

    // A step-up on the sign-in host opens it again.
    let form = b.get(&b.url(AUTH, "/step-up"), &[]).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let stepped = b
        .get(
            &b.url(AUTH, "/step-up"),
            &[
                "--data-urlencode",
                &format!("csrf={}", field(&form.body, "csrf")),
                "--data-urlencode",
                &format!("code={}", web::browser::totp_now(&secret, 30)),
            ],
        )
        .await;
    assert_eq!(stepped.status, 200, "{}", stepped.body);
    assert!(curl(&[&url(1)]).unwrap().contains("full-access"));
    let page = b.get(&b.url("admin.app.test", "/"), &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
}

/// GET `/` on `host` in a browser signed in on the sign-in host: the
/// hand-off's redirects followed.
async fn visit(b: &Browser, host: &str) -> web::browser::Got {
    let mut url = b.url(host, "/");
    for _ in 0..6 {
        let got = b.get(&url, &["-H", "Accept: text/html"]).await;
        match got.header("location") {
            Some(next) if (300..400).contains(&got.status) => {
                url = if next.starts_with("https://") {
                    next.to_owned()
                } else {
                    b.url(host, next)
                };
            }
            _ => return got,
        }
    }
    panic!("too many redirects from {host}");
}
