//! Silent link loss between a "site" and an "edge" network namespace.
//!
//! The two namespaces are joined by a veth pair. The cut is an nftables rule
//! in the site namespace that drops every packet to and from the edge: no RST,
//! no FIN, no ICMP, as when a NAT mapping is lost or a cable is pulled
//! upstream. The agent must notice by itself (keepalives) and come back by
//! itself when the rule is removed.
//!
//! Needs root and `ip`/`nft`; skips otherwise (`warren_testkit::skip`:
//! counted, and a failure with `CI` or `WARREN_REQUIRE_NETNS` set).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warren_testkit::{EdgeSpec, Process, ResourceSpec};

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn available() -> bool {
    let root = sh(&["id", "-u"]).map(|s| s.trim() == "0").unwrap_or(false);
    let tools = sh(&["ip", "-V"]).is_ok()
        && sh(&["nft", "--version"]).is_ok()
        && sh(&["python3", "-V"]).is_ok();
    if root && tools {
        return true;
    }
    assert!(
        std::env::var_os("WARREN_REQUIRE_NETNS").is_none(),
        "WARREN_REQUIRE_NETNS is set but root, ip, nft or python3 is missing"
    );
    warren_testkit::skip("needs root, ip, nft and python3");
    false
}

/// Two namespaces joined by a veth; removed on drop.
struct Net {
    edge_ns: String,
    site_ns: String,
    edge_ip: String,
}

impl Net {
    fn new(tag: &str) -> Net {
        let id = format!("{}{tag}", std::process::id() % 100_000);
        let edge_ns = format!("wr-e-{id}");
        let site_ns = format!("wr-s-{id}");
        let octet = (std::process::id() % 200 + if tag == "q" { 1 } else { 0 }) as u8;
        let edge_ip = format!("10.253.{octet}.1");
        let site_ip = format!("10.253.{octet}.2");
        let (ve, vs) = (format!("ve{id}"), format!("vs{id}"));
        let net = Net {
            edge_ns: edge_ns.clone(),
            site_ns: site_ns.clone(),
            edge_ip: edge_ip.clone(),
        };
        for cmd in [
            vec!["ip", "netns", "add", &edge_ns],
            vec!["ip", "netns", "add", &site_ns],
            vec![
                "ip", "link", "add", &ve, "type", "veth", "peer", "name", &vs,
            ],
            vec!["ip", "link", "set", &ve, "netns", &edge_ns],
            vec!["ip", "link", "set", &vs, "netns", &site_ns],
            vec![
                "ip",
                "-n",
                &edge_ns,
                "addr",
                "add",
                &format!("{edge_ip}/30"),
                "dev",
                &ve,
            ],
            vec![
                "ip",
                "-n",
                &site_ns,
                "addr",
                "add",
                &format!("{site_ip}/30"),
                "dev",
                &vs,
            ],
            vec!["ip", "-n", &edge_ns, "link", "set", &ve, "up"],
            vec!["ip", "-n", &site_ns, "link", "set", &vs, "up"],
            vec!["ip", "-n", &edge_ns, "link", "set", "lo", "up"],
            vec!["ip", "-n", &site_ns, "link", "set", "lo", "up"],
        ] {
            sh(&cmd).unwrap();
        }
        net
    }

    fn exec_args(ns: &str, bin: &str, args: &[String]) -> Vec<String> {
        let mut v = vec![
            "netns".to_owned(),
            "exec".to_owned(),
            ns.to_owned(),
            bin.to_owned(),
        ];
        v.extend_from_slice(args);
        v
    }

    fn cut(&self) {
        let rules = format!(
            "table inet warren_cut {{ chain i {{ type filter hook input priority -300; ip saddr {ip} drop; }}; \
             chain o {{ type filter hook output priority -300; ip daddr {ip} drop; }}; }}",
            ip = self.edge_ip
        );
        sh(&["ip", "netns", "exec", &self.site_ns, "nft", &rules]).unwrap();
    }

    fn restore(&self) {
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.site_ns,
            "nft",
            "delete",
            "table",
            "inet",
            "warren_cut",
        ])
        .unwrap();
    }

    /// One echo round trip from inside the edge namespace to `port` there.
    fn echo_from_edge(&self, port: u16) -> bool {
        let script = format!(
            "import socket,sys\ns=socket.create_connection(('127.0.0.1',{port}),timeout=5)\n\
             s.sendall(b'ping-through-the-tunnel');s.shutdown(socket.SHUT_WR)\n\
             d=b''\nwhile True:\n  c=s.recv(100)\n  if not c: break\n  d+=c\nsys.exit(0 if d==b'ping-through-the-tunnel' else 1)\n"
        );
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.edge_ns,
            "python3",
            "-c",
            &script,
        ])
        .is_ok()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.edge_ns]);
        let _ = sh(&["ip", "netns", "del", &self.site_ns]);
    }
}

const ECHO_SERVER: &str = "import socket,threading\n\
s=socket.socket();s.bind(('127.0.0.1',0));s.listen(50);print(s.getsockname()[1],flush=True)\n\
def h(c):\n  while True:\n    d=c.recv(65536)\n    if not d: break\n    c.sendall(d)\n  c.close()\n\
while True:\n  c,_=s.accept();threading.Thread(target=h,args=(c,),daemon=True).start()\n";

fn silent_drop(transport: &str, tag: &str) {
    if !available() {
        return;
    }
    let net = Net::new(tag);
    let dir = tempfile::tempdir().unwrap();
    // The site's service, inside the site namespace.
    let mut echo = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", &net.site_ns, "python3", "-c", ECHO_SERVER])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(echo.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let echo_port: u16 = line.trim().parse().unwrap();

    let mut spec = EdgeSpec::new().resource(ResourceSpec::tcp(
        "echo",
        "home",
        format!("127.0.0.1:{echo_port}"),
    ));
    spec.tunnel_listen = format!("{}:0", net.edge_ip);
    std::fs::write(dir.path().join("edge.toml"), spec.to_toml()).unwrap();
    let ip = std::path::Path::new("/usr/sbin/ip");
    let ip = if ip.exists() {
        ip
    } else {
        std::path::Path::new("/sbin/ip")
    };
    let args = Net::exec_args(
        &net.edge_ns,
        common::BIN,
        &["edge".into(), "--config".into(), "edge.toml".into()],
    );
    let edge = Process::spawn("edge", ip, &args, dir.path());
    let started = edge.wait_event("edge_started");
    let pin = started["pin"].as_str().unwrap().to_owned();
    let tunnel_port: u16 = started["tunnel"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let listening = edge.wait_event("listening");
    let resource_port: u16 = listening["listen"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let site_args: Vec<String> = [
        "site",
        "--endpoint",
        &format!("https://{}:{tunnel_port}", net.edge_ip),
        "--id",
        "home",
        "--secret",
        "S3CRET-for-tests",
        "--pin",
        &pin,
        "--transport",
        transport,
        "--allow",
        &format!("127.0.0.1:{echo_port}/tcp"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let agent = Process::spawn(
        "agent",
        ip,
        &Net::exec_args(&net.site_ns, common::BIN, &site_args),
        dir.path(),
    );
    agent.wait_event("edge_connected");
    edge.wait_event("agent_connected");
    assert!(
        net.echo_from_edge(resource_port),
        "no traffic before the cut"
    );

    // Cut silently.
    net.cut();
    let cut_at = Instant::now();
    let lost = agent.wait_event_nth("edge_link_lost", 0, Duration::from_secs(30));
    let detected = cut_at.elapsed();
    eprintln!(
        "{transport}: agent detected the dead link after {detected:?}: {}",
        lost["reason"]
    );
    assert!(
        detected <= Duration::from_secs(15),
        "{transport}: dead link detected only after {detected:?}"
    );
    edge.wait_log("agent gone on the edge", Duration::from_secs(30), |v| {
        v["event"] == "agent_disconnected"
    });
    assert!(
        !net.echo_from_edge(resource_port),
        "traffic flowed through a cut link"
    );

    // Restore; the agent comes back by itself.
    net.restore();
    let restored_at = Instant::now();
    agent.wait_event_nth("edge_connected", 1, Duration::from_secs(45));
    eprintln!(
        "{transport}: agent reconnected {:?} after the link returned",
        restored_at.elapsed()
    );
    assert!(
        net.echo_from_edge(resource_port),
        "no traffic after recovery"
    );
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn silent_drop_is_detected_and_healed_tcp() {
    silent_drop("tcp", "t");
}

#[test]
fn silent_drop_is_detected_and_healed_quic() {
    silent_drop("quic", "q");
}
