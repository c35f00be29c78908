//! The second wall in a real kernel: the rendered nftables rules applied in
//! a "site" network namespace, then a process running as the agent's uid
//! (standing in for a compromised agent: the in-process allowlist is not
//! involved) reaches the allowed service and times out on the forbidden one
//! and on the namespace's gateway, while other uids are unaffected;
//! applying twice changes nothing, other tables are untouched, and
//! `--remove` restores the exact previous ruleset.
//!
//! `apply --watch` follows a name that moves, through the namespace's
//! /etc/hosts and through a real DNS server (dnsmasq) whose record's TTL
//! paces the look.
//!
//! Needs root, `ip`, `nft`, `setpriv`, /usr/bin/python3 and (for the TTL
//! test) dnsmasq; skips otherwise (`warren_testkit::skip`: counted, and a
//! failure with `CI` or `WARREN_REQUIRE_NETNS` set).

mod common;

use common::{bin, ok, run};
use std::process::{Command, Stdio};

const AGENT_UID: &str = "990";
const PY: &str = "/usr/bin/python3";

fn available() -> bool {
    available_with(&[])
}

fn available_with(extra: &[&str]) -> bool {
    let root = run(&["id", "-u"]).stdout == b"0\n";
    let mut needed = vec!["ip", "nft", "setpriv", PY];
    needed.extend_from_slice(extra);
    let tools = needed.iter().all(|t| {
        Command::new(t)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    if root && tools {
        return true;
    }
    assert!(
        std::env::var_os("WARREN_REQUIRE_NETNS").is_none(),
        "WARREN_REQUIRE_NETNS is set but root or one of {needed:?} is missing"
    );
    warren_testkit::skip(format!("needs root and {needed:?}"));
    false
}

/// A site namespace joined to a gateway namespace; removed on drop.
struct Site {
    ns: String,
    gw_ns: String,
    gw_ip: String,
    servers: Vec<std::process::Child>,
}

impl Drop for Site {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = run(&["ip", "netns", "del", &self.ns]);
        let _ = run(&["ip", "netns", "del", &self.gw_ns]);
    }
}

const LISTEN: &str = "import socket,sys\n\
s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
s.bind((sys.argv[1],int(sys.argv[2])));s.listen(50)\n\
while True:\n  c,_=s.accept();c.close()\n";

impl Site {
    fn new() -> Site {
        // Two tests of this file may run at once, in one process.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = (std::process::id() % 10_000) * 10 + n;
        let octet = ((std::process::id() * 2 + n) % 200) as u8;
        let (ns, gw_ns) = (format!("wr-w-{id}"), format!("wr-g-{id}"));
        let (vs, vg) = (format!("vw{id}"), format!("vg{id}"));
        let gw_ip = format!("10.252.{octet}.1");
        let site_ip = format!("10.252.{octet}.2");
        let site = Site {
            ns: ns.clone(),
            gw_ns: gw_ns.clone(),
            gw_ip: gw_ip.clone(),
            servers: Vec::new(),
        };
        for cmd in [
            vec!["ip", "netns", "add", &ns],
            vec!["ip", "netns", "add", &gw_ns],
            vec![
                "ip", "link", "add", &vs, "type", "veth", "peer", "name", &vg,
            ],
            vec!["ip", "link", "set", &vs, "netns", &ns],
            vec!["ip", "link", "set", &vg, "netns", &gw_ns],
            vec![
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{site_ip}/30"),
                "dev",
                &vs,
            ],
            vec![
                "ip",
                "-n",
                &gw_ns,
                "addr",
                "add",
                &format!("{gw_ip}/30"),
                "dev",
                &vg,
            ],
            vec!["ip", "-n", &ns, "link", "set", &vs, "up"],
            vec!["ip", "-n", &gw_ns, "link", "set", &vg, "up"],
            vec!["ip", "-n", &ns, "link", "set", "lo", "up"],
            vec!["ip", "-n", &gw_ns, "link", "set", "lo", "up"],
        ] {
            ok(&cmd);
        }
        site
    }

    fn listen(&mut self, ns: &str, ip: &str, port: u16) {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, PY, "-c", LISTEN, ip, &port.to_string()])
            .spawn()
            .unwrap();
        self.servers.push(child);
    }

    /// Listens on loopback addresses of the site namespace and waits until
    /// root reaches each of them.
    fn serve_loopback(&mut self, ips: &[&str], port: u16) {
        let ns = self.ns.clone();
        for ip in ips {
            self.listen(&ns, ip, port);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        for ip in ips {
            while self.connect_as("0", ip, port) != "connected" {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the listener on {ip}:{port} did not start"
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }

    /// Connects from the site namespace as `uid`: "connected", "timeout"
    /// or "refused".
    fn connect_as(&self, uid: &str, ip: &str, port: u16) -> String {
        let script = format!(
            "import socket,sys\ntry:\n  socket.create_connection(('{ip}',{port}),timeout=1.5);print('connected')\n\
             except socket.timeout:\n  print('timeout')\nexcept ConnectionRefusedError:\n  print('refused')\n\
             except OSError as e:\n  print('error', e)\n"
        );
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &self.ns,
            "setpriv",
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            PY,
            "-c",
            &script,
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn nft(&self, args: &[&str]) -> String {
        let mut cmd = vec!["ip", "netns", "exec", &self.ns, "nft"];
        cmd.extend_from_slice(args);
        ok(&cmd)
    }

    /// `warren` run as `uid` in the site namespace (from a copy any uid may
    /// execute: the checkout may sit under a private home).
    fn warren_as(&self, uid: &str, args: &[&str]) -> std::process::Child {
        use std::os::unix::fs::PermissionsExt;
        static COPY: std::sync::OnceLock<(tempfile::TempDir, String)> = std::sync::OnceLock::new();
        let (_, exe) = COPY.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let exe = dir.path().join("warren");
            std::fs::copy(common::BIN, &exe).unwrap();
            (dir, exe.to_string_lossy().into_owned())
        });
        let (reuid, regid) = (format!("--reuid={uid}"), format!("--regid={uid}"));
        let mut cmd = vec![
            "netns",
            "exec",
            &self.ns,
            "setpriv",
            &reuid,
            &regid,
            "--clear-groups",
            exe,
        ];
        cmd.extend_from_slice(args);
        Command::new("ip")
            .args(cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn warren(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = vec!["ip", "netns", "exec", &self.ns, common::BIN];
        cmd.extend_from_slice(args);
        run(&cmd)
    }
}

#[test]
fn a_compromised_agent_uid_reaches_only_the_allowlist() {
    if !available() {
        return;
    }
    let _ = bin();
    let mut site = Site::new();
    let (allowed, forbidden) = (18080u16, 18081u16);
    let ns = site.ns.clone();
    let gw_ns = site.gw_ns.clone();
    let gw_ip = site.gw_ip.clone();
    site.listen(&ns, "127.0.0.1", allowed);
    site.listen(&ns, "127.0.0.1", forbidden);
    site.listen(&gw_ns, &gw_ip, 80);
    // Let the listeners come up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while site.connect_as("0", &gw_ip, 80) != "connected"
        || site.connect_as("0", "127.0.0.1", forbidden) != "connected"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "listeners did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // Someone else's table (as Docker's would be) is there first.
    site.nft(&["add", "table", "ip", "someone_else"]);
    site.nft(&[
        "add",
        "chain",
        "ip",
        "someone_else",
        "c",
        "{ type filter hook output priority 10; policy accept; }",
    ]);
    site.nft(&["add", "rule", "ip", "someone_else", "c", "counter"]);
    let before = site.nft(&["-s", "list", "ruleset"]);

    let allow = format!("127.0.0.1:{allowed}/tcp");
    let edge = format!("{gw_ip}:7443");
    let render = [
        "egress",
        "render",
        "--format",
        "nftables",
        "--allow",
        &allow,
        "--edge",
        &edge,
        "--resolver",
        &gw_ip,
        "--uid",
        AGENT_UID,
    ];
    let dry = site.warren(&[&render[..], &["--dry-run"]].concat());
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert_eq!(
        site.nft(&["-s", "list", "ruleset"]),
        before,
        "--dry-run loads nothing"
    );
    for _ in 0..2 {
        let out = site.warren(&[&render[..], &["--apply"]].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let applied = site.nft(&["-s", "list", "table", "inet", "warren_egress"]);
    let out = site.warren(&[&render[..], &["--apply"]].concat());
    assert!(out.status.success());
    assert_eq!(
        site.nft(&["-s", "list", "table", "inet", "warren_egress"]),
        applied,
        "applying again changes nothing"
    );
    assert!(site
        .nft(&["-s", "list", "ruleset"])
        .contains("table ip someone_else"));

    // The agent's uid: the allowed service only.
    assert_eq!(
        site.connect_as(AGENT_UID, "127.0.0.1", allowed),
        "connected"
    );
    assert_eq!(
        site.connect_as(AGENT_UID, "127.0.0.1", forbidden),
        "timeout"
    );
    assert_eq!(site.connect_as(AGENT_UID, &gw_ip, 80), "timeout");
    // Another uid is not governed.
    assert_eq!(site.connect_as("991", "127.0.0.1", forbidden), "connected");
    assert_eq!(site.connect_as("0", &gw_ip, 80), "connected");
    // The drops were counted.
    let counter = site.nft(&["list", "counter", "inet", "warren_egress", "refused"]);
    assert!(!counter.contains("packets 0 "), "{counter}");

    // --remove restores exactly what was there.
    let out = site.warren(&["egress", "render", "--format", "nftables", "--remove"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(site.nft(&["-s", "list", "ruleset"]), before);
    assert_eq!(
        site.connect_as(AGENT_UID, "127.0.0.1", forbidden),
        "connected"
    );
    // Removing again is not an error.
    assert!(site
        .warren(&["egress", "render", "--format", "nftables", "--remove"])
        .status
        .success());
}

/// Runs `warren site ...` as `uid` and returns whether it started (then it
/// dials the edge and is stopped) and its log.
fn site_check(site: &Site, uid: &str, allow: &str, extra: &[&str]) -> (bool, String) {
    use std::io::BufRead;
    let endpoint = format!("https://{}:7443", site.gw_ip);
    let mut args = vec![
        "site",
        "--endpoint",
        &endpoint,
        "--id",
        "home",
        "--secret",
        "S3CRET",
        "--allow",
        allow,
    ];
    args.extend_from_slice(extra);
    let mut child = site.warren_as(uid, &args);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut log = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let passed = loop {
        match rx.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if line.contains("agent_starting") {
                    break true;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break false,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no verdict in 20 s:\n{log}"
                );
            }
        }
    };
    let _ = child.kill();
    let status = child.wait().unwrap();
    if !passed {
        assert_eq!(
            status.code(),
            Some(2),
            "a refusal is a configuration error:\n{log}"
        );
    }
    (passed, log)
}

#[test]
fn the_agent_refuses_to_start_without_its_second_wall() {
    if !available() {
        return;
    }
    let _ = bin();
    let site = Site::new();
    let allow = "127.0.0.1:18080/tcp";
    let require = ["--require-egress-wall"];

    // No wall: the probe gets through.
    let (passed, log) = site_check(&site, AGENT_UID, allow, &require);
    assert!(!passed, "{log}");
    assert!(log.contains("no second wall governs this process"), "{log}");
    // --egress-check alone warns and starts.
    let (started, log) = site_check(&site, AGENT_UID, allow, &["--egress-check"]);
    assert!(started && log.contains("egress_wall_hole"), "{log}");

    let edge = format!("{}:7443", site.gw_ip);
    let render = |extra: &str, uid: &str| {
        let out = site.warren(&[
            "egress", "render", "--format", "nftables", "--allow", allow, "--allow", extra,
            // The resolvers of resolv.conf, as the agent's check reads them.
            "--edge", &edge, "--uid", uid, "--apply",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // The wall for the agent's uid: the unprivileged agent cannot read the
    // rules, and its probe is dropped.
    render(allow, AGENT_UID);
    let (passed, log) = site_check(&site, AGENT_UID, allow, &require);
    assert!(passed && log.contains("egress_wall_ok"), "{log}");
    assert!(log.contains("cannot be read"), "{log}");
    assert!(log.contains("was dropped by the kernel"), "{log}");
    // Another uid is not governed by it.
    let (passed, log) = site_check(&site, "991", allow, &require);
    assert!(!passed, "{log}");

    // An agent that may read the rules (root here) compares them: a wall
    // for someone else, then one wider than its list, are named.
    let (passed, log) = site_check(&site, "0", allow, &require);
    assert!(!passed, "{log}");
    assert!(log.contains("governs uid 990, not this process"), "{log}");
    render("10.9.0.0/16:1-65535/tcp", "0");
    let (passed, log) = site_check(&site, "0", allow, &require);
    assert!(!passed, "{log}");
    assert!(log.contains("10.9.0.0/16 tcp 1-65535"), "{log}");
    assert!(!log.contains("not this process"), "{log}");
    // The exact wall passes.
    render(allow, "0");
    let (passed, log) = site_check(&site, "0", allow, &require);
    assert!(passed && log.contains("egress_wall_ok"), "{log}");
    assert!(log.contains("matches the allowlist"), "{log}");
}

/// A namespace's own /etc/netns/NS (`ip netns exec` shows its files over
/// /etc/hosts and /etc/resolv.conf); removed on drop.
struct NetnsEtc(std::path::PathBuf);

impl NetnsEtc {
    fn write(ns: &str, hosts: &str, resolv_conf: &str) -> NetnsEtc {
        let etc = NetnsEtc(std::path::PathBuf::from(format!("/etc/netns/{ns}")));
        std::fs::create_dir_all(&etc.0).unwrap();
        std::fs::write(etc.hosts(), hosts).unwrap();
        std::fs::write(etc.0.join("resolv.conf"), resolv_conf).unwrap();
        etc
    }

    fn hosts(&self) -> std::path::PathBuf {
        self.0.join("hosts")
    }
}

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn apply_watch_follows_a_name_that_moves() {
    if !available() {
        return;
    }
    let _ = bin();
    let mut site = Site::new();
    let ns = site.ns.clone();
    let port = 18090u16;
    site.serve_loopback(&["127.0.0.1", "127.0.0.2"], port);
    // The namespace's /etc/hosts is the name's DNS. No DNS server answers
    // there: a name not in hosts fails fast.
    let resolv = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n";
    let etc = NetnsEtc::write(&ns, "127.0.0.1 svc.test\n", resolv);
    let hosts = etc.hosts();

    let allow = format!("svc.test:{port}/tcp");
    let watch = Watcher::start(&site, &allow, "1s");
    let refused = |site: &Site| -> u64 {
        let text = site.nft(&["list", "counter", "inet", "warren_egress", "refused"]);
        let after = text.split("packets ").nth(1).unwrap_or_default();
        after
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .parse()
            .unwrap_or(0)
    };
    watch.wait_for(&site, &format!("127.0.0.1 . tcp . {port}"));
    assert_eq!(site.connect_as(AGENT_UID, "127.0.0.1", port), "connected");
    assert_eq!(site.connect_as(AGENT_UID, "127.0.0.2", port), "timeout");
    let drops = refused(&site);
    assert!(drops > 0);

    // The name moves: the sets follow; the counter (and the chains) stay.
    std::fs::write(&hosts, "127.0.0.2 svc.test\n").unwrap();
    watch.wait_for(&site, &format!("127.0.0.2 . tcp . {port}"));
    assert!(
        !allow_set(&site).contains(&format!("127.0.0.1 . tcp . {port}")),
        "{}",
        allow_set(&site)
    );
    assert_eq!(site.connect_as(AGENT_UID, "127.0.0.2", port), "connected");
    assert_eq!(site.connect_as(AGENT_UID, "127.0.0.1", port), "timeout");
    assert!(refused(&site) > drops, "the counter survived the swap");
    assert!(watch.log().contains("egress_name_moved"));

    // The name stops resolving: the wall keeps its last addresses.
    std::fs::write(&hosts, "").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        allow_set(&site).contains(&format!("127.0.0.2 . tcp . {port}")),
        "{}",
        allow_set(&site)
    );

    // Someone widens the wall by hand while no name moves: the watcher puts
    // its own wall back at the next look.
    let stray = format!("127.0.0.1 . tcp . {port}");
    // Until now nobody touched the table: no look saw a drift.
    assert!(
        !watch.log().contains("egress_wall_drift"),
        "{}",
        watch.log()
    );
    site.nft(&[
        "add",
        "element",
        "inet",
        "warren_egress",
        "allow4",
        &format!("{{ {stray} }}"),
    ]);
    assert!(allow_set(&site).contains(&stray));
    watch.wait_until(&site, "the stray element removed", |set| {
        !set.contains(&stray)
    });
    assert_eq!(site.connect_as(AGENT_UID, "127.0.0.1", port), "timeout");
    assert!(watch.log().contains("egress_wall_drift"), "{}", watch.log());

    // The table is removed under the watcher, still with no name moving: it
    // applies the whole wall again.
    site.nft(&["delete", "table", "inet", "warren_egress"]);
    watch.wait_for(&site, &format!("127.0.0.2 . tcp . {port}"));
    assert_eq!(site.connect_as(AGENT_UID, "127.0.0.1", port), "timeout");

    // The name comes back, elsewhere: the restored wall follows it too.
    std::fs::write(&hosts, "127.0.0.1 svc.test\n").unwrap();
    watch.wait_for(&site, &format!("127.0.0.1 . tcp . {port}"));
    assert_eq!(site.connect_as(AGENT_UID, "127.0.0.2", port), "timeout");

    // SIGTERM stops it cleanly and leaves the rules loaded.
    watch.stop();
    assert!(allow_set(&site).contains(&format!("127.0.0.1 . tcp . {port}")));
}

/// `warren egress apply --watch` running in a site namespace, its log kept.
struct Watcher {
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Watcher {
    fn start(site: &Site, allow: &str, interval: &str) -> Watcher {
        let edge = format!("{}:7443", site.gw_ip);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &site.ns, common::BIN, "egress", "apply"])
            .args(["--watch", "--interval", interval, "--allow", allow])
            .args(["--edge", &edge, "--uid", AGENT_UID])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Watcher { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) for `element` in the wall's IPv4 set.
    fn wait_for(&self, site: &Site, element: &str) {
        self.wait_until(site, &format!("{element} in the set"), |set| {
            set.contains(element)
        });
    }

    /// Waits (up to 20 s) until the wall's IPv4 set satisfies `done`.
    fn wait_until(&self, site: &Site, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !done(&allow_set(site)) {
            assert!(
                std::time::Instant::now() < deadline,
                "never saw {what}:\n{}\nlog:\n{}",
                allow_set(site),
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// SIGTERM: the watcher exits 0 and leaves the rules loaded.
    fn stop(mut self) {
        ok(&["kill", "-TERM", &self.child.id().to_string()]);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}\n{}", self.log());
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The wall's IPv4 allow set, as `nft list set` prints it.
fn allow_set(site: &Site) -> String {
    let out = run(&[
        "ip",
        "netns",
        "exec",
        &site.ns,
        "nft",
        "list",
        "set",
        "inet",
        "warren_egress",
        "allow4",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A real DNS server (dnsmasq) in the site namespace answering for the
/// names of a hosts file, with a 2 s TTL; killed on drop.
struct Dns {
    child: std::process::Child,
    hosts: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Dns {
    const TTL_SECS: u64 = 2;

    fn start(ns: &str, records: &str) -> Dns {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("records");
        std::fs::write(&hosts, records).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "dnsmasq", "--conf-file=/dev/null"])
            .args(["--keep-in-foreground", "--no-resolv", "--no-hosts"])
            .arg(format!("--addn-hosts={}", hosts.display()))
            .arg(format!("--local-ttl={}", Dns::TTL_SECS))
            .args(["--listen-address=127.0.0.1", "--bind-interfaces"])
            .args(["--port=53", "--user=root", "--pid-file="])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (Debian's dnsmasq-base)");
        Dns {
            child,
            hosts,
            _dir: dir,
        }
    }

    /// Rewrites the records; SIGHUP makes dnsmasq read them again.
    fn set(&self, records: &str) {
        std::fs::write(&self.hosts, records).unwrap();
        ok(&["kill", "-HUP", &self.child.id().to_string()]);
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn apply_watch_refreshes_when_the_record_ttl_ends() {
    if !available_with(&["dnsmasq"]) {
        return;
    }
    let _ = bin();
    let mut site = Site::new();
    let ns = site.ns.clone();
    let port = 18091u16;
    site.serve_loopback(&["127.0.0.3", "127.0.0.4"], port);
    // The name lives only in DNS: the namespace's hosts file does not have it.
    let resolv = "nameserver 127.0.0.1\noptions timeout:1 attempts:2\n";
    let _etc = NetnsEtc::write(&ns, "127.0.0.1 localhost\n", resolv);
    let dns = Dns::start(&ns, "127.0.0.3 ttl.test\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !String::from_utf8_lossy(
        &run(&["ip", "netns", "exec", &ns, "getent", "hosts", "ttl.test"]).stdout,
    )
    .contains("127.0.0.3")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "dnsmasq did not answer"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // An hour between looks: only the record's 2 s TTL can explain a refresh.
    let watch = Watcher::start(&site, &format!("ttl.test:{port}/tcp"), "1h");
    watch.wait_for(&site, &format!("127.0.0.3 . tcp . {port}"));
    // wait_for gives up after 20 s, far inside the hour.
    dns.set("127.0.0.4 ttl.test\n");
    watch.wait_for(&site, &format!("127.0.0.4 . tcp . {port}"));
    assert!(!allow_set(&site).contains(&format!("127.0.0.3 . tcp . {port}")));
    assert_eq!(site.connect_as(AGENT_UID, "127.0.0.4", port), "connected");
    assert_eq!(site.connect_as(AGENT_UID, "127.0.0.3", port), "timeout");
    let log = watch.log();
    assert!(log.contains("egress_name_moved"), "{log}");
    assert!(log.contains("record's TTL"), "{log}");
    // Looks every ~2 s found the table as the watcher left it.
    assert!(!log.contains("egress_wall_drift"), "{log}");
    assert!(!log.contains("egress_table_missing"), "{log}");
    watch.stop();
}
