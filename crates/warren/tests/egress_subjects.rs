//! The second wall for its two other subjects, loaded into a real kernel
//! (`egress_wall.rs` does the uid one):
//!
//! * `--source` (a container): a "host" namespace routes between a
//!   "container" namespace, another container and a "lan" namespace; with
//!   the wall for the container's address applied on the host, the
//!   container reaches only its allowed service (forward hook) and not the
//!   host's own (input hook), while the other container and the host itself
//!   are untouched; `--remove` gives the container its reach back.
//! * `--cgroup`: a real cgroup v2 (created under the machine's cgroup2
//!   mount, mounted again at /sys/fs/cgroup inside the namespace, where nft
//!   looks cgroup paths up); a process in the agent's cgroup, or below it,
//!   reaches only the allowed service; one in a sibling cgroup or in none is
//!   untouched.
//!
//! A process run through `ip netns exec` stands in for a compromised agent:
//! the agent's own allowlist is not involved.
//!
//! Needs root, `ip`, `nft`, /usr/bin/python3 and (for the cgroup test) a
//! cgroup2 hierarchy; skips otherwise (`warren_testkit::skip`: shown,
//! counted, and a failure with `CI` or `WARREN_REQUIRE_NETNS` set).

mod common;

use common::{bin, ok, run};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PY: &str = "/usr/bin/python3";

fn skip(why: &str) -> bool {
    assert!(
        std::env::var_os("WARREN_REQUIRE_NETNS").is_none(),
        "WARREN_REQUIRE_NETNS is set but {why}"
    );
    warren_testkit::skip(why);
    false
}

fn available() -> bool {
    let root = run(&["id", "-u"]).stdout == b"0\n";
    let tools = ["ip", "nft", PY].iter().all(|t| {
        Command::new(t)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    root && tools || skip("this needs root, ip, nft and /usr/bin/python3")
}

/// Per-test numbers: namespace names, veth names and a /24 of 10.249.
fn ids() -> (u32, u8) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = (std::process::id() % 10_000) * 10 + n;
    (id, ((std::process::id() * 2 + n) % 250) as u8)
}

/// Network namespaces (and whatever runs in them), removed on drop.
struct Namespaces {
    names: Vec<String>,
    children: Vec<std::process::Child>,
}

impl Namespaces {
    fn new(names: &[&str]) -> Namespaces {
        let ns = Namespaces {
            names: names.iter().map(|s| s.to_string()).collect(),
            children: Vec::new(),
        };
        for n in names {
            ok(&["ip", "netns", "add", n]);
            ok(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        ns
    }

    /// A veth pair from `a` (address `a_ip`/30) to `b` (`b_ip`/30).
    fn link(&self, (a, a_if, a_ip): (&str, &str, &str), (b, b_if, b_ip): (&str, &str, &str)) {
        ok(&[
            "ip", "link", "add", a_if, "type", "veth", "peer", "name", b_if,
        ]);
        for (ns, dev, ip) in [(a, a_if, a_ip), (b, b_if, b_ip)] {
            ok(&["ip", "link", "set", dev, "netns", ns]);
            ok(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/30"),
                "dev",
                dev,
            ]);
            ok(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
    }

    /// Runs `script` with python in `ns`, after `prelude` (shell) there.
    fn python(ns: &str, prelude: &str, script: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "sh", "-c"])
            .arg(format!("{prelude}exec {PY} -c \"$0\" \"$@\""))
            .arg(script)
            .args(args);
        cmd
    }

    /// A TCP listener on `ip:port` in `ns`, up when this returns.
    fn listen(&mut self, ns: &str, ip: &str, port: u16) {
        const LISTEN: &str = "import socket,sys\n\
            s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
            s.bind((sys.argv[1],int(sys.argv[2])));s.listen(50)\n\
            while True:\n  c,_=s.accept();c.close()\n";
        let child = Namespaces::python(ns, "", LISTEN, &[ip, &port.to_string()])
            .spawn()
            .unwrap();
        self.children.push(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while connect(ns, "", ip, port) != "connected" {
            assert!(
                Instant::now() < deadline,
                "no listener on {ip}:{port} in {ns}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.names {
            let _ = run(&["ip", "netns", "del", n]);
        }
    }
}

/// Connects from `ns` (after the shell `prelude`): "connected", "timeout",
/// "refused" or the error.
fn connect(ns: &str, prelude: &str, ip: &str, port: u16) -> String {
    const CONNECT: &str = "import socket,sys\n\
        try:\n  socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=1.5);print('connected')\n\
        except socket.timeout:\n  print('timeout')\nexcept ConnectionRefusedError:\n  print('refused')\n\
        except OSError as e:\n  print('error', e)\n";
    let out = Namespaces::python(ns, prelude, CONNECT, &[ip, &port.to_string()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if said.is_empty() {
        format!("failed: {}", String::from_utf8_lossy(&out.stderr).trim())
    } else {
        said
    }
}

/// `warren ARGS` in `ns` (after the shell `prelude`), which must succeed.
fn warren_in(ns: &str, prelude: &str, args: &[&str]) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "sh", "-c"])
        .arg(format!("{prelude}exec \"$0\" \"$@\""))
        .arg(common::BIN)
        .args(args);
    warren_testkit::run_ok(&mut cmd, &format!("warren {args:?} in {ns}"));
}

fn refused_packets(ns: &str) -> u64 {
    let text = ok(&[
        "ip",
        "netns",
        "exec",
        ns,
        "nft",
        "list",
        "counter",
        "inet",
        "warren_egress",
        "refused",
    ]);
    let after = text.split("packets ").nth(1).unwrap_or_default();
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in {text}"))
}

#[test]
fn a_container_wall_governs_only_the_containers_packets() {
    if !available() {
        return;
    }
    let _ = bin();
    let (id, octet) = ids();
    let (host, ctr, other, lan) = (
        format!("wr-xh-{id}"),
        format!("wr-xc-{id}"),
        format!("wr-xo-{id}"),
        format!("wr-xl-{id}"),
    );
    let mut ns = Namespaces::new(&[&host, &ctr, &other, &lan]);
    let ip = |last: u8| format!("10.249.{octet}.{last}");
    // The host's side of each link is .1, .5, .9.
    let (ctr_ip, other_ip, lan_ip) = (ip(2), ip(6), ip(10));
    ns.link(
        (&host, &format!("xh{id}"), &ip(1)),
        (&ctr, &format!("xc{id}"), &ctr_ip),
    );
    ns.link(
        (&host, &format!("xi{id}"), &ip(5)),
        (&other, &format!("xo{id}"), &other_ip),
    );
    ns.link(
        (&host, &format!("xj{id}"), &ip(9)),
        (&lan, &format!("xl{id}"), &lan_ip),
    );
    for (n, gw) in [(&ctr, ip(1)), (&other, ip(5)), (&lan, ip(9))] {
        ok(&["ip", "-n", n, "route", "add", "default", "via", &gw]);
    }
    ok(&[
        "ip",
        "netns",
        "exec",
        &host,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    let (allowed, forbidden, host_port) = (18080u16, 18081u16, 18082u16);
    ns.listen(&lan, &lan_ip, allowed);
    ns.listen(&lan, &lan_ip, forbidden);
    // A service of the host itself, on the address the container sees.
    ns.listen(&host, &ip(1), host_port);
    // Without a wall the container reaches everything.
    assert_eq!(connect(&ctr, "", &lan_ip, forbidden), "connected");
    assert_eq!(connect(&ctr, "", &ip(1), host_port), "connected");

    let allow = format!("{lan_ip}:{allowed}/tcp");
    let edge = format!("{}:7443", ip(9));
    let source = ctr_ip.clone();
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
        &lan_ip,
        "--source",
        &source,
    ];
    warren_in(&host, "", &[&render[..], &["--apply"]].concat());

    // The container: its allowed service only, through the host.
    assert_eq!(connect(&ctr, "", &lan_ip, allowed), "connected");
    assert_eq!(connect(&ctr, "", &lan_ip, forbidden), "timeout");
    assert_eq!(connect(&ctr, "", &ip(1), host_port), "timeout");
    let drops = refused_packets(&host);
    assert!(drops > 0);
    // Another container, and the host itself, are not governed.
    assert_eq!(connect(&other, "", &lan_ip, forbidden), "connected");
    assert_eq!(connect(&other, "", &ip(1), host_port), "connected");
    assert_eq!(connect(&host, "", &lan_ip, forbidden), "connected");
    assert_eq!(
        refused_packets(&host),
        drops,
        "only the container's packets were dropped"
    );

    // --remove gives the container its reach back.
    warren_in(
        &host,
        "",
        &["egress", "render", "--format", "nftables", "--remove"],
    );
    assert_eq!(connect(&ctr, "", &lan_ip, forbidden), "connected");
    assert_eq!(connect(&ctr, "", &ip(1), host_port), "connected");
}

/// Where the machine's cgroup2 hierarchy is mounted, if it is.
fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| std::path::PathBuf::from(f[1]))
}

/// cgroups made for a test under the cgroup2 root, removed on drop
/// (deepest first; they are empty once their processes have exited).
struct Cgroups(Vec<std::path::PathBuf>);

impl Cgroups {
    fn make(root: &std::path::Path, paths: &[&str]) -> Cgroups {
        let mut made = Cgroups(Vec::new());
        for p in paths {
            let dir = root.join(p);
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            made.0.push(dir);
        }
        made
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[test]
fn a_cgroup_wall_governs_only_the_processes_of_that_cgroup() {
    if !available() {
        return;
    }
    let Some(root) = cgroup2_mount() else {
        skip("no cgroup2 hierarchy is mounted");
        return;
    };
    let _ = bin();
    let (id, _) = ids();
    let top = format!("warren-test-{id}");
    let (agent, below, sibling) = (
        format!("{top}/agent.service"),
        format!("{top}/agent.service/worker"),
        format!("{top}/other.service"),
    );
    let _cgroups = Cgroups::make(&root, &[&top, &agent, &below, &sibling]);
    let site = format!("wr-xg-{id}");
    let mut ns = Namespaces::new(&[&site]);
    let (allowed, forbidden) = (18080u16, 18081u16);
    ns.listen(&site, "127.0.0.1", allowed);
    ns.listen(&site, "127.0.0.1", forbidden);

    // `ip netns exec` gives /sys a fresh sysfs: the cgroup2 hierarchy is
    // mounted again where nft looks paths up, and a process joins a cgroup
    // before it runs.
    let mount = "mount -t cgroup2 none /sys/fs/cgroup && ";
    let inside =
        |cgroup: &str| format!("{mount}echo $$ > /sys/fs/cgroup/{cgroup}/cgroup.procs && ");
    // The cgroup really is joined.
    let joined = Namespaces::python(
        &site,
        &inside(&agent),
        "print(open('/proc/self/cgroup').read())",
        &[],
    )
    .output()
    .unwrap();
    let joined = String::from_utf8_lossy(&joined.stdout);
    assert!(joined.contains(&format!("0::/{agent}")), "{joined}");

    let allow = "127.0.0.1:18080/tcp";
    // As README writes it, with a leading slash.
    let cgroup = format!("/{agent}");
    warren_in(
        &site,
        mount,
        &[
            "egress",
            "render",
            "--format",
            "nftables",
            "--allow",
            allow,
            "--edge",
            "10.0.0.1:7443",
            "--resolver",
            "10.0.0.53",
            "--cgroup",
            &cgroup,
            "--apply",
        ],
    );
    // The agent's cgroup, and any below it: the allowed service only.
    for cg in [&agent, &below] {
        assert_eq!(
            connect(&site, &inside(cg), "127.0.0.1", allowed),
            "connected",
            "{cg}"
        );
        assert_eq!(
            connect(&site, &inside(cg), "127.0.0.1", forbidden),
            "timeout",
            "{cg}"
        );
    }
    let drops = refused_packets(&site);
    assert!(drops > 0);
    // A sibling cgroup, and a process in no cgroup of ours, are untouched.
    assert_eq!(
        connect(&site, &inside(&sibling), "127.0.0.1", forbidden),
        "connected"
    );
    assert_eq!(connect(&site, "", "127.0.0.1", forbidden), "connected");
    assert_eq!(refused_packets(&site), drops);

    warren_in(
        &site,
        "",
        &["egress", "render", "--format", "nftables", "--remove"],
    );
    assert_eq!(
        connect(&site, &inside(&agent), "127.0.0.1", forbidden),
        "connected"
    );
}
