//! `warren up` as a newcomer uses it: the printed command works, state is reused.

mod common;
mod web;

use common::{bin, echo_ok};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use warren_testkit::{echo_tcp, Process};

struct Up {
    child: Child,
    _lines: mpsc::Receiver<String>,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn up(dir: &std::path::Path) -> (Up, String) {
    up_with(dir, &["--https-listen", "127.0.0.1:0"])
}

fn up_with(dir: &std::path::Path, extra: &[&str]) -> (Up, String) {
    let mut child = Command::new(bin())
        .args([
            "up",
            "--data-dir",
            "state",
            "--tunnel-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut text = String::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("warren up printed its banner");
        text.push_str(&line);
        text.push('\n');
        if line.starts_with("Publish a service") {
            break;
        }
    }
    (Up { child, _lines: rx }, text)
}

/// The `warren site ...` command from the banner, as arguments.
fn site_command(banner: &str) -> Vec<String> {
    let start = banner.find("warren site").expect("a warren site command");
    let cmd: String = banner[start..]
        .lines()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
        .replace('\\', " ");
    cmd.split_whitespace().skip(1).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_prints_a_working_site_command_and_reuses_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let (first, banner) = up(dir.path());
    assert!(banner.contains("shown only now"), "{banner}");
    assert!(banner.contains("export WARREN_TOKEN=wrn_"), "{banner}");
    let mut args = site_command(&banner);
    // The secret is printed for the environment, never as an argument.
    assert!(!args.iter().any(|a| a.starts_with("--secret")), "{args:?}");
    let secret = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("export WARREN_SECRET="))
        .expect("an export WARREN_SECRET= line")
        .to_owned();
    assert_eq!(secret.len(), 32);
    // Given to the agent through --secret-file.
    let secret_file = dir.path().join("site-secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(
        &secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    args.extend([
        "--secret-file".to_owned(),
        secret_file.display().to_string(),
    ]);
    // The secret is not stored in clear.
    let config = std::fs::read_to_string(dir.path().join("state/edge.toml")).unwrap();
    assert!(!config.contains(&secret));
    assert!(config.contains("secret_hash = \"$sha256$"));

    // The printed command connects, as printed but for the allowlist.
    let echo = echo_tcp().await;
    let allow_at = args.iter().position(|a| a == "--allow").unwrap() + 1;
    args[allow_at] = format!("{echo}/tcp");
    let agent = Process::spawn("agent", bin(), &args, dir.path());
    agent.wait_event("edge_connected");

    // Publishing a resource by editing the file and sending SIGHUP.
    let site = args[args.iter().position(|a| a == "--id").unwrap() + 1].clone();
    let resource = format!(
        "\n[[resource]]\nname = \"echo\"\ntype = \"tcp\"\nlisten = \"127.0.0.1:0\"\ntargets = [{{ site = \"{site}\", address = \"{echo}\" }}]\n"
    );
    std::fs::write(
        dir.path().join("state/edge.toml"),
        config.clone() + &resource,
    )
    .unwrap();
    Command::new("kill")
        .args(["-HUP", &first.child.id().to_string()])
        .status()
        .unwrap();
    drop(first);
    drop(agent);

    // Second run: same site and pin, no secret shown, the old secret still works.
    let (second, banner2) = up(dir.path());
    assert!(!banner2.contains("shown only now"), "{banner2}");
    assert!(
        !banner2.contains("WARREN_TOKEN=wrn_"),
        "the token is printed once: {banner2}"
    );
    let args2 = site_command(&banner2);
    let pin_of = |a: &[String]| a[a.iter().position(|x| x == "--pin").unwrap() + 1].clone();
    assert_eq!(pin_of(&args2), pin_of(&args));
    assert!(banner2.contains(&site));
    assert!(!banner2.contains(&secret), "the secret is printed once");
    let mut args3 = args2.clone();
    args3.extend([
        "--secret-file".to_owned(),
        secret_file.display().to_string(),
    ]);
    let a = args3.iter().position(|a| a == "--allow").unwrap() + 1;
    args3[a] = format!("{echo}/tcp");
    let agent = Process::spawn("agent2", bin(), &args3, dir.path());
    agent.wait_event("edge_connected");
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_metrics_and_health_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_tcp().await;
    let edge = warren_testkit::EdgeProcess::start(
        bin(),
        dir.path(),
        &warren_testkit::EdgeSpec::new()
            .resource(warren_testkit::ResourceSpec::tcp("echo", "home", echo)),
    );
    let mut args = edge.site_args("home", "S3CRET-for-tests", "tcp", &[&format!("{echo}/tcp")]);
    args.extend(["--metrics".to_owned(), "127.0.0.1:0".to_owned()]);
    let agent = Process::spawn("agent", bin(), &args, dir.path());
    let addr: std::net::SocketAddr = agent.wait_event("metrics_listening")["addr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    agent.wait_event("edge_connected");
    echo_ok(edge.resource_addr("echo"), b"count me")
        .await
        .unwrap();
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    };
    assert!(get("/healthz").starts_with("HTTP/1.1 200"));
    let metrics = get("/metrics");
    assert!(metrics.contains("warren_site_connected 1"), "{metrics}");
    assert!(metrics.contains("warren_site_streams_total 1"), "{metrics}");
    drop(edge);
    // With the edge gone, health turns 503.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !get("/healthz").starts_with("HTTP/1.1 503") {
        assert!(
            std::time::Instant::now() < deadline,
            "healthz stayed 200 without an edge"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `warren up --domain`: HTTPS with certificates from a real ACME server
/// (Debian's pebble), the sign-in host, the first admin and a policy
/// granting them everything, so the first http resource is served over
/// HTTPS behind a login with one command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_a_domain_serves_https_behind_a_login() {
    if !warren_testkit::pebble_installed() {
        warren_testkit::skip("Debian's pebble is not installed (apt-get install pebble)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ports = warren_testkit::free_tcp_ports(2);
    let (https, http) = (ports[0], ports[1]);
    let pebble = warren_testkit::Pebble::start(dir.path(), http, https);
    let (https_at, http_at) = (format!("127.0.0.1:{https}"), format!("127.0.0.1:{http}"));
    let ca = pebble.server_ca.display().to_string();
    let (_up, banner) = up_with(
        dir.path(),
        &[
            "--domain",
            "example.test",
            "--email",
            "ops@example.test",
            "--https-listen",
            &https_at,
            "--http-listen",
            &http_at,
            "--acme-directory",
            &pebble.directory,
            "--acme-ca",
            &ca,
        ],
    );
    let value = |prefix: &str| {
        banner
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {banner}"))
            .trim()
            .to_owned()
    };
    let token = value("export WARREN_TOKEN=");
    let password = value("password:");
    assert_eq!(value("email:"), "ops@example.test");
    let admin = banner
        .split("warren status --api ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();

    // The printed site command, allowed to an origin; then the resource,
    // published through the API as the banner says.
    let origin = warren_testkit::http_backend("origin").await;
    let mut args = site_command(&banner);
    let allow_at = args.iter().position(|a| a == "--allow").unwrap() + 1;
    args[allow_at] = format!("{}/tcp", origin.addr);
    let secret = value("export WARREN_SECRET=");
    let secret_file = dir.path().join("site-secret");
    std::fs::write(&secret_file, &secret).unwrap();
    args.extend([
        "--secret-file".to_owned(),
        secret_file.display().to_string(),
    ]);
    let agent = Process::spawn("agent", bin(), &args, dir.path());
    agent.wait_event("edge_connected");
    let site = args[args.iter().position(|a| a == "--id").unwrap() + 1].clone();
    let out = Command::new(bin())
        .args([
            "resource",
            "create",
            "web",
            "--type",
            "http",
            "--host",
            "web.example.test",
        ])
        .args(["--target", &format!("{site}={}", origin.addr)])
        .args(["--api", &admin])
        .env("WARREN_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A browser: over HTTPS with pebble's certificate, to the sign-in
    // page on auth.example.test, signed in as the first admin, at the app.
    let b = web::browser::Browser::new(dir.path(), "ops", pebble.roots_pem.clone(), https);
    let html = ["-H", "Accept: text/html"];
    let mut first = None;
    for _ in 0..100 {
        // The certificate is ordered on first need: curl fails until then.
        let got = b.try_get(&b.url("web.example.test", "/page"), &html).await;
        if let Some(got) = got {
            first = Some(got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = first.expect("web.example.test served with a certificate from pebble");
    assert_eq!(first.status, 302, "{}", first.body);
    let login = first.header("location").unwrap().to_owned();
    assert!(
        login.starts_with(&format!("https://auth.example.test:{https}/login?")),
        "{login}"
    );
    let mut form = None;
    for _ in 0..100 {
        if let Some(got) = b.try_get(&login, &html).await {
            form = Some(got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let form = form.expect("auth.example.test served with a certificate from pebble");
    assert_eq!(form.status, 200, "{}", form.body);
    let field = |name: &str| web::browser::field(&form.body, name);
    let posted = b
        .get(
            &b.url("auth.example.test", "/login"),
            &[
                "--data-urlencode",
                &format!("csrf={}", field("csrf")),
                "--data-urlencode",
                &format!("rd={}", field("rd")),
                "--data-urlencode",
                &format!("st={}", field("st")),
                "--data-urlencode",
                "email=ops@example.test",
                "--data-urlencode",
                &format!("password={password}"),
            ],
        )
        .await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let landed = b.get(posted.header("location").unwrap(), &html).await;
    assert_eq!(landed.status, 303, "{}", landed.body);
    let page = b
        .get(
            &b.url("web.example.test", landed.header("location").unwrap()),
            &html,
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("\"remote-user\":[\"ops@example.test\"]"),
        "{}",
        page.body
    );
    drop(agent);
}
