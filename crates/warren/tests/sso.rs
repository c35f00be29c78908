//! Single sign-on against a real OpenID provider: npm's certified
//! `oidc-provider`, started by the test with Node (tests/oidc/provider.mjs),
//! through the real edge, agent and origin, with curl as the browser. No
//! mock: discovery, PKCE, the code exchange, the ID token's signature and
//! claims are the provider's and the `openidconnect` crate's.
//!
//! The attacks come first: a callback replayed in another browser, a state
//! that is not this browser's, an answer naming another issuer, an email
//! that only looks like it is in the allowed domain, an unverified email.
//! Then what must work: a user made just in time with the provider's
//! groups, the policy deciding by those groups, a key rotation followed
//! without a restart, a disabled user refused.

mod common;
mod web;

use common::bin;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use warren_testkit::{http_backend, EdgeProcess, ResourceSpec};
use web::browser::{Browser, Got, AUTH};

/// tests/oidc: the provider script and its node_modules (`npm ci`).
fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// Whether Node and the provider's packages are here; skips the test
/// (a failure in CI) when not.
pub fn node_ready() -> bool {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        warren_testkit::skip("node is not installed (.ci/run installs nodejs)");
        return false;
    }
    if !oidc_dir().join("node_modules/oidc-provider").exists() {
        warren_testkit::skip(
            "tests/oidc/node_modules is missing: run `npm ci --prefix crates/warren/tests/oidc`",
        );
        return false;
    }
    true
}

/// The provider, killed on drop.
pub struct Idp {
    child: Child,
    pub port: u16,
    pub ca: PathBuf,
    log: PathBuf,
}

impl Idp {
    /// Its certificate (for `localhost`) and key, written once into `dir`:
    /// the path of the certificate, the CA its clients trust.
    pub fn certificate(dir: &Path) -> PathBuf {
        let ca = dir.join("idp-cert.pem");
        if !ca.exists() {
            let (cert, key) = warren_testkit::self_signed(&["localhost"]);
            std::fs::write(&ca, cert).unwrap();
            std::fs::write(dir.join("idp-key.pem"), key).unwrap();
        }
        ca
    }

    /// Starts the provider on `port`, signing with a new key named `kid`,
    /// with client `warren` returning to `redirect`.
    pub fn start(dir: &Path, port: u16, kid: &str, redirect: &str) -> Idp {
        let ca = Idp::certificate(dir);
        let account = |email: &str, verified: bool, groups: &[&str]| json!({ "email": email, "email_verified": verified, "name": email.split('@').next(), "groups": groups });
        let conf = json!({
            "port": port,
            "cert": ca,
            "key": dir.join("idp-key.pem"),
            "issuer": format!("https://localhost:{port}"),
            "kid": kid,
            "clients": [{
                "client_id": "warren",
                "client_secret": "a-client-secret-of-thirty-two-bytes",
                "redirect_uris": [redirect],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
            }],
            "accounts": {
                "alice": account("Alice@Corp.com", true, &["ops", "not a group name"]),
                "bob": account("bob@corp.com", true, &[]),
                "mallory": account("mallory@corp.com.evil.net", true, &["ops"]),
                "carol": account("carol@corp.com", false, &["ops"]),
            },
        });
        let conf_file = dir.join(format!("idp-{kid}.json"));
        std::fs::write(&conf_file, conf.to_string()).unwrap();
        let log = dir.join(format!("idp-{kid}.log"));
        let mut child = Command::new("node")
            .arg(oidc_dir().join("provider.mjs"))
            .arg(&conf_file)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::File::options().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .expect("node starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("listening") {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the provider exited ({status}): {text}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the provider did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Idp {
            child,
            port,
            ca,
            log,
        }
    }

    pub fn issuer(&self) -> String {
        format!("https://localhost:{}", self.port)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "provider log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// The `href` of the sign-in page's single sign-on button.
fn sso_link(html: &str) -> String {
    let start = html.find("class=\"sso\" href=\"").expect("an SSO button") + 18;
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].replace("&amp;", "&")
}

/// The provider's login form's action.
fn form_action(html: &str) -> String {
    let start = html.find("action=\"").expect("a form") + 8;
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].replace("&amp;", "&")
}

/// One browser's single sign-on, step by step: returns the answers in
/// order (the last one is where it ended) and the provider's callback URL
/// (the edge's `/login/sso/corp/callback?code=...`), stopping before the
/// edge sees the callback when `stop_at_callback`.
async fn sso(b: &Browser, login: &str, stop_at_callback: bool) -> (Vec<Got>, String) {
    let html = ["-H", "Accept: text/html"];
    let mut seen = Vec::new();
    let first = b.get(&b.url("api.test", "/page?x=1"), &html).await;
    assert_eq!(first.status, 302, "{}", first.body);
    let page = b.get(first.header("location").unwrap(), &html).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let start = b.get(&b.url(AUTH, &sso_link(&page.body)), &html).await;
    assert_eq!(start.status, 302, "{}", start.body);
    let to_idp = start.header("location").unwrap().to_owned();
    assert!(to_idp.starts_with("https://localhost:"), "{to_idp}");
    assert!(to_idp.contains("code_challenge_method=S256"), "{to_idp}");
    seen.extend([first, page, start]);
    // The provider's own pages: its login form (unless it remembers this
    // browser), then back to its /auth, then to the edge's callback.
    let mut next = to_idp;
    let callback = loop {
        let got = b.get(&next, &[]).await;
        let location = got.header("location").map(str::to_owned);
        match (got.status, location) {
            (200, _) => {
                let posted = b
                    .get(
                        &form_action(&got.body),
                        &[
                            "--data",
                            &format!("prompt=login&login={login}&password=any"),
                        ],
                    )
                    .await;
                assert_eq!(posted.status, 303, "{}", posted.body);
                next = posted.header("location").unwrap().to_owned();
                seen.extend([got, posted]);
            }
            (302 | 303, Some(l)) if l.contains("/login/sso/corp/callback") => {
                seen.push(got);
                break l;
            }
            (302 | 303, Some(l)) => {
                next = if l.starts_with('/') {
                    format!("{}{l}", &next[..next[8..].find('/').unwrap() + 8])
                } else {
                    l
                };
                seen.push(got);
            }
            (status, _) => panic!("the provider answered {status}: {}", got.body),
        }
    };
    if stop_at_callback {
        return (seen, callback);
    }
    let mut next = callback.clone();
    for _ in 0..4 {
        let got = b.get(&absolute(b, &next), &html).await;
        let location = got.header("location").map(str::to_owned);
        seen.push(got);
        match location {
            Some(l) => next = l,
            None => break,
        }
    }
    (seen, callback)
}

fn absolute(b: &Browser, url: &str) -> String {
    if url.starts_with('/') {
        b.url("api.test", url)
    } else {
        url.to_owned()
    }
}

/// An edge with one resource behind single sign-on (`app` on api.test,
/// granted to group:ops) and the provider it trusts.
struct SsoEdge {
    edge: EdgeProcess,
    _agent: warren_testkit::Process,
    _live: warren_testkit::HttpBackend,
    idp: Option<Idp>,
    idp_port: u16,
    port: u16,
    redirect: String,
    /// The edge's and the provider's certificates, for curl.
    both: PathBuf,
    dir: tempfile::TempDir,
    /// A second provider, `mute`: it takes the connection and never says a word.
    _mute: std::net::TcpListener,
}

async fn sso_edge() -> SsoEdge {
    let live = http_backend("live").await;
    let dir = tempfile::tempdir().unwrap();
    let idp_port = warren_testkit::free_tcp_ports(1)[0];
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mute_port = mute.local_addr().unwrap().port();
    Idp::certificate(dir.path());
    let spec = web::web_spec(
        vec![ResourceSpec::http("app", "api.test", "home", live.addr)],
        dir.path(),
    );
    let toml = format!(
        "{}\n[auth]\nhost = \"{AUTH}\"\n\n[[auth.oidc]]\nname = \"corp\"\n\
         display_name = \"Corp\"\nissuer = \"https://localhost:{idp_port}\"\n\
         client_id = \"warren\"\nclient_secret = \"a-client-secret-of-thirty-two-bytes\"\n\
         scopes = [\"openid\", \"email\", \"profile\", \"groups\"]\n\
         groups_claim = \"groups\"\nallowed_domains = [\"corp.com\"]\ncreate_users = true\n\
         ca = \"idp-cert.pem\"\n\n[[auth.oidc]]\nname = \"mute\"\n\
         issuer = \"https://localhost:{mute_port}\"\nclient_id = \"warren\"\nclient_secret = \"x\"\n\
         ca = \"idp-cert.pem\"\n",
        spec.to_toml()
    );
    std::fs::write(dir.path().join("edge.toml"), toml).unwrap();
    let edge = EdgeProcess::start_existing(bin(), dir.path());
    let agent = edge.start_agent("agent", "tcp", &[&format!("{}/tcp", live.addr)]);
    let port = edge.https.unwrap().port();
    let redirect = format!("https://{AUTH}:{port}/login/sso/corp/callback");
    let idp = Idp::start(dir.path(), idp_port, "k1", &redirect);
    // One CA file for curl: the edge's and the provider's certificates.
    let both = dir.path().join("both.pem");
    std::fs::write(
        &both,
        std::fs::read_to_string(dir.path().join("cert.pem")).unwrap()
            + &std::fs::read_to_string(&idp.ca).unwrap(),
    )
    .unwrap();
    let policy =
        "[groups]\n\"group:ops\" = []\n\n[[grants]]\nsrc = [\"group:ops\"]\ndst = [\"app\"]\n";
    let (status, body) = edge.admin_request(
        "PUT",
        "/api/v1/policy",
        Some(&json!({ "text": policy }).to_string()),
        edge.token.as_deref(),
    );
    assert_eq!(status, 200, "{body}");
    SsoEdge {
        edge,
        _agent: agent,
        _live: live,
        idp: Some(idp),
        idp_port,
        port,
        redirect,
        both,
        dir,
        _mute: mute,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_with_a_real_provider() {
    if !node_ready() {
        return;
    }
    let mut t = sso_edge().await;
    let (edge, dir, both, port) = (&t.edge, &t.dir, &t.both, t.port);
    // A callback URL (code and state) carried to another browser is
    // refused: the state is bound to the browser that started the sign-on.
    let alice = Browser::new(dir.path(), "alice", both.clone(), port);
    let (_, callback) = sso(&alice, "alice", true).await;
    let thief = Browser::new(dir.path(), "thief", both.clone(), port);
    let stolen = thief.get(&callback, &[]).await;
    assert_eq!(stolen.status, 403, "{}", stolen.body);
    // In the right browser with the state changed: refused too.
    let tampered = callback.replace("state=", "state=x");
    let got = alice.get(&tampered, &[]).await;
    assert_eq!(got.status, 403, "{}", got.body);
    // An answer that names another issuer (a mix-up) is refused.
    let (_, callback) = sso(&alice, "alice", true).await;
    let mixed = format!(
        "{}&iss=https%3A%2F%2Fevil.example",
        callback.split("&iss=").next().unwrap()
    );
    assert_eq!(alice.get(&mixed, &[]).await.status, 403);

    // An email that only looks like the allowed domain, and an email the
    // provider has not verified: refused, and no user made.
    let mallory = Browser::new(dir.path(), "mallory", both.clone(), port);
    let (seen, _) = sso(&mallory, "mallory", false).await;
    let last = seen.last().unwrap();
    assert_eq!(last.status, 403, "{}", last.body);
    assert!(last.body.contains("not allowed"), "{}", last.body);
    let carol = Browser::new(dir.path(), "carol", both.clone(), port);
    let (seen, _) = sso(&carol, "carol", false).await;
    assert_eq!(seen.last().unwrap().status, 403);
    let users = edge.admin_get("/api/v1/users");
    assert_eq!(users.as_array().unwrap().len(), 0, "{users}");

    // Alice signs on: made a user just in time, in group:ops from the
    // provider's claims, let in by the policy, her identity sent on.
    let alice = Browser::new(dir.path(), "alice2", both.clone(), port);
    let (seen, _) = sso(&alice, "alice", false).await;
    let last = seen.last().unwrap();
    assert_eq!(last.status, 200, "{}", last.body);
    let redirects = seen
        .iter()
        .filter(|g| (300..400).contains(&g.status))
        .count();
    eprintln!("single sign-on: {redirects} redirects");
    let origin: Value = serde_json::from_str(&last.body).unwrap();
    assert_eq!(origin["headers"]["remote-user"], json!(["alice@corp.com"]));
    assert_eq!(origin["headers"]["remote-groups"], json!(["group:ops"]));
    let users = edge.admin_get("/api/v1/users");
    assert_eq!(users[0]["email"], "alice@corp.com", "{users}");
    assert_eq!(users[0]["groups"], json!(["group:ops"]), "{users}");
    assert_eq!(users[0]["has_password"], false);

    // Bob signs on too, and the policy (no group) keeps him out.
    let bob = Browser::new(dir.path(), "bob", both.clone(), port);
    let (seen, _) = sso(&bob, "bob", false).await;
    assert_eq!(
        seen.last().unwrap().status,
        403,
        "{}",
        seen.last().unwrap().body
    );

    // The provider rotates its key (a restart with a new one): the edge
    // reads the keys again on the first token it cannot place.
    t.idp = None;
    t.idp = Some(Idp::start(dir.path(), t.idp_port, "k2", &t.redirect));
    let again = Browser::new(dir.path(), "alice3", both.clone(), port);
    let (seen, _) = sso(&again, "alice", false).await;
    assert_eq!(
        seen.last().unwrap().status,
        200,
        "{}",
        seen.last().unwrap().body
    );
    // The log is read by another thread: wait for the line, then count.
    edge.process
        .wait_event_nth("sso_discovered", 1, warren_testkit::EVENT_TIMEOUT);
    assert_eq!(edge.process.events("sso_discovered").len(), 2);

    // A disabled user is refused at the callback.
    let out = Command::new(bin())
        .args(["user", "disable", "alice@corp.com", "--api"])
        .arg(format!("http://{}", edge.admin))
        .env("WARREN_TOKEN", edge.token.as_deref().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let late = Browser::new(dir.path(), "alice4", both.clone(), port);
    let (seen, _) = sso(&late, "alice", false).await;
    let last = seen.last().unwrap();
    assert_eq!(last.status, 403, "{}", last.body);
    assert!(last.body.contains("disabled"), "{}", last.body);

    // A provider that takes the connection and never answers costs a
    // sign-on its bounded wait (10 s), then a 502 page; nothing hangs.
    let html = ["-H", "Accept: text/html"];
    let b = Browser::new(dir.path(), "mute", both.clone(), port);
    let first = b.get(&b.url("api.test", "/"), &html).await;
    let page = b.get(first.header("location").unwrap(), &html).await;
    let link = sso_link(&page.body).replace("/login/sso/corp?", "/login/sso/mute?");
    // (curl gives up after 20 s: a hang fails the test there.)
    let got = b.get(&b.url(AUTH, &link), &html).await;
    assert_eq!(got.status, 502, "{}", got.body);
    assert!(got.body.contains("not available"), "{}", got.body);
}

/// Debian's Chromium, driven by playwright-core, through the whole single
/// sign-on: the redirects it follows are counted (a loop would show), and
/// Warren's sign-in page is kept as a screenshot in target/test-artifacts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_signs_on_without_a_loop() {
    if !node_ready() {
        return;
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        warren_testkit::skip("no Chromium (.ci/run installs Debian's chromium)");
        return;
    }
    let t = sso_edge().await;
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("sso-sign-in-page.png");
    let _ = std::fs::remove_file(&shot);
    let start = format!("https://api.test:{}/page?x=1", t.port);
    let out = tokio::process::Command::new("node")
        .arg(oidc_dir().join("browser.mjs"))
        .args([start.as_str(), "alice"])
        .arg(&shot)
        .args(["api.test", AUTH])
        .env("CHROMIUM", &chromium)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "the browser run failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let run: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    eprintln!(
        "chromium: {} redirects: {}; screenshot {}",
        run["redirects"],
        run["chain"],
        shot.display()
    );
    assert_eq!(run["signInPage"]["title"], "Sign in · Warren", "{run}");
    assert_eq!(run["url"], start, "{run}");
    let origin: Value = serde_json::from_str(run["body"].as_str().unwrap()).unwrap();
    assert_eq!(origin["headers"]["remote-user"], json!(["alice@corp.com"]));
    // resource → sign-in page; button → provider → its form; form → /auth
    // → callback → hand-off → resource: a fixed count, never a loop.
    let redirects = run["redirects"].as_u64().unwrap();
    assert!((5..=8).contains(&redirects), "{run}");
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 2_000);
}
