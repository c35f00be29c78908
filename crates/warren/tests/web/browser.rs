//! A browser made of curl: a cookie jar, the test hosts resolved to the
//! edge, and the whole password sign-in.

use crate::common::bin;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use warren_testkit::EdgeProcess;
use warren_testkit::{http_backend, ResourceSpec};

pub const AUTH: &str = "auth.app.test";

/// One curl run: status, headers (lower-case names), body.
pub struct Got {
    pub status: u16,
    pub headers: HashMap<String, Vec<String>>,
    pub body: String,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

pub struct Browser {
    pub ca: PathBuf,
    pub port: u16,
    pub jar: PathBuf,
}

impl Browser {
    pub fn new(dir: &Path, name: &str, ca: PathBuf, port: u16) -> Browser {
        Browser {
            ca,
            port,
            jar: dir.join(format!("{name}.jar")),
        }
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port)
    }

    pub async fn get(&self, url: &str, args: &[&str]) -> Got {
        self.run(url, args).await
    }

    /// As [`Browser::get`], `None` where curl itself fails (no
    /// connection, a certificate not trusted yet).
    pub async fn try_get(&self, url: &str, args: &[&str]) -> Option<Got> {
        self.attempt(url, args).await.ok()
    }

    pub async fn run(&self, url: &str, args: &[&str]) -> Got {
        match self.attempt(url, args).await {
            Ok(got) => got,
            Err(e) => panic!("curl {url}: {e}"),
        }
    }

    async fn attempt(&self, url: &str, args: &[&str]) -> Result<Got, String> {
        let dir = tempfile::tempdir().unwrap();
        let (head, body) = (dir.path().join("h"), dir.path().join("b"));
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "--cacert"])
            .arg(&self.ca)
            .args(["-b"])
            .arg(&self.jar)
            .args(["-c"])
            .arg(&self.jar)
            .args(["-D"])
            .arg(&head)
            .args(["-o"])
            .arg(&body);
        // Every name is this machine (the port as in the URL).
        cmd.args(["--connect-to", "::127.0.0.1:"]);
        let out = cmd.args(args).arg(url).output().await.unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let head = std::fs::read_to_string(head).unwrap();
        let mut headers: HashMap<String, Vec<String>> = HashMap::new();
        let mut status = 0;
        for line in head.lines() {
            if let Some(rest) = line.strip_prefix("HTTP/") {
                status = rest
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                headers.clear();
            } else if let Some((k, v)) = line.split_once(':') {
                headers
                    .entry(k.trim().to_ascii_lowercase())
                    .or_default()
                    .push(v.trim().to_owned());
            }
        }
        Ok(Got {
            status,
            headers,
            body: std::fs::read_to_string(body).unwrap_or_default(),
        })
    }

    /// The whole browser sign-in: resource → login page → form → hand-off →
    /// resource. Returns the last answer and how many redirects it took.
    pub async fn sign_in(&self, path: &str, email: &str, password: &str) -> (Got, usize) {
        let html = ["-H", "Accept: text/html"];
        let first = self.get(&self.url("api.test", path), &html).await;
        assert_eq!(first.status, 302, "{}", first.body);
        let login = first.header("location").unwrap().to_owned();
        let form = self.get(&login, &html).await;
        assert_eq!(form.status, 200, "{}", form.body);
        assert!(
            form.body
                .contains("to reach <strong>app</strong> (api.test)"),
            "the page names the resource: {}",
            form.body
        );
        let csrf = field(&form.body, "csrf");
        let rd = field(&form.body, "rd");
        let posted = self
            .get(
                &self.url(AUTH, "/login"),
                &[
                    "--data-urlencode",
                    &format!("csrf={csrf}"),
                    "--data-urlencode",
                    &format!("rd={rd}"),
                    "--data-urlencode",
                    &format!("st={}", field(&form.body, "st")),
                    "--data-urlencode",
                    &format!("email={email}"),
                    "--data-urlencode",
                    &format!("password={password}"),
                ],
            )
            .await;
        if posted.status != 303 {
            return (posted, 1);
        }
        let handoff = posted.header("location").unwrap().to_owned();
        let landed = self.get(&handoff, &html).await;
        assert_eq!(landed.status, 303, "{}", landed.body);
        let back = landed.header("location").unwrap().to_owned();
        assert_eq!(back, path, "back where the visitor was going");
        let last = self.get(&self.url("api.test", &back), &html).await;
        (last, 3)
    }
}

/// The value of a hidden form field (HTML-escaped `&amp;` undone).
pub fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].replace("&amp;", "&")
}

pub fn user_add(edge: &EdgeProcess, dir: &Path, email: &str, password: &str) {
    let file = dir.join(format!("{email}.pw"));
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let out = std::process::Command::new(bin())
        .args(["user", "add", email, "--password-file"])
        .arg(&file)
        .args(["--api", &format!("http://{}", edge.admin)])
        .env("WARREN_TOKEN", edge.token.as_deref().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An edge with `app` on api.test granted to alice@corp.com (a user with
/// a password), `[auth]` on auth.app.test with `auth_extra`.
pub struct AliceEdge {
    pub _live: warren_testkit::HttpBackend,
    pub _agent: warren_testkit::Process,
    pub dir: tempfile::TempDir,
    pub edge: EdgeProcess,
    pub port: u16,
}

pub async fn alice_edge(auth_extra: &str) -> AliceEdge {
    let live = http_backend("live").await;
    let dir = tempfile::tempdir().unwrap();
    let spec = super::web_spec(
        vec![ResourceSpec::http("app", "api.test", "home", live.addr)],
        dir.path(),
    );
    let toml = format!(
        "{}\n[auth]\nhost = \"{AUTH}\"\n{auth_extra}",
        spec.to_toml()
    );
    std::fs::write(dir.path().join("edge.toml"), toml).unwrap();
    let edge = EdgeProcess::start_existing(bin(), dir.path());
    let agent = edge.start_agent("agent", "tcp", &[&format!("{}/tcp", live.addr)]);
    let (status, body) = edge.admin_request(
        "PUT",
        "/api/v1/policy",
        Some(
            &json!({ "text": "[[grants]]\nsrc = [\"alice@corp.com\"]\ndst = [\"app\"]\n" })
                .to_string(),
        ),
        edge.token.as_deref(),
    );
    assert_eq!(status, 200, "{body}");
    user_add(&edge, dir.path(), "alice@corp.com", "correct horse battery");
    let port = edge.https.unwrap().port();
    AliceEdge {
        _live: live,
        _agent: agent,
        dir,
        edge,
        port,
    }
}

/// `warren login ...` against the test edge, with the session in `file`.
pub fn login_command(port: u16, ca: &Path, file: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(["login", "--edge", &format!("https://{AUTH}:{port}"), "--ca"])
        .arg(ca)
        .args(["--connect", &format!("127.0.0.1:{port}"), "--login-file"])
        .arg(file);
    cmd
}

/// Starts `warren login` and reads the code it asks to confirm (within
/// 20 s; its own lines, from our own binary).
pub async fn start_login(port: u16, ca: &Path, file: &Path) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = login_command(port, ca, file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let code = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("confirm the code ").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("warren login printed no code");
    })
    .await
    .unwrap();
    (child, code)
}

impl Browser {
    /// Confirms (`approve`) or refuses (`deny`) a `warren login` code on
    /// the sign-in host's `/device` page, signed in as this browser: the
    /// status of the choice.
    pub async fn confirm_device(&self, code: &str, action: &str) -> u16 {
        let page = self
            .get(&self.url(AUTH, &format!("/device?code={code}")), &[])
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains(code), "{}", page.body);
        self.get(
            &self.url(AUTH, "/device"),
            &[
                "--data-urlencode",
                &format!("csrf={}", field(&page.body, "csrf")),
                "--data-urlencode",
                &format!("code={code}"),
                "--data-urlencode",
                &format!("action={action}"),
            ],
        )
        .await
        .status
    }
}

/// The code an authenticator app would show for `secret` (base32) now,
/// `offset_s` seconds from now.
pub fn totp_now(secret: &str, offset_s: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(secret).unwrap())
        .build()
        .unwrap();
    t.generate((now + offset_s) as u64).to_string()
}
