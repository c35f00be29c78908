//! No DNS rebinding between check and connect (README, Security defaults):
//! a name that is not on the agent's allowlist is resolved by the agent,
//! each address is checked, and the agent connects only to an address it
//! has just checked.
//!
//! The agent resolves with the system resolver (getaddrinfo, through
//! `tokio::net::lookup_host`), so it runs in a network namespace of its own
//! whose /etc/netns resolv.conf names a scripted DNS server
//! ([`warren_testkit::dns`]) that answers each A query for the name with
//! the next address of a list, TTL 0: an allowed address, then one that is
//! not, and so on. A rebinding attacker's server does exactly that. Were
//! the agent to resolve again to connect, the answer after the allowed one
//! would send it to the forbidden listener.
//!
//! The namespace is joined to the test's own by a veth pair (the edge, the
//! DNS server and both listeners live on the host side, in this process);
//! its DNS queries to port 53 are redirected (nftables DNAT, in the
//! namespace) to the DNS server's port, so nothing binds a fixed port.
//!
//! Needs root, `ip` and `nft`; skips otherwise (`warren_testkit::skip`:
//! shown, counted, and a failure with `CI` or `WARREN_REQUIRE_NETNS` set).

mod common;

use common::{bin, ok, read_banner, run};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use warren_testkit::dns::DnsServer;
use warren_testkit::{EdgeProcess, EdgeSpec, Process, ResourceSpec};

fn available() -> bool {
    let root = run(&["id", "-u"]).stdout == b"0\n";
    let tools = ["ip", "nft"].iter().all(|t| {
        Command::new(t)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if root && tools {
        return true;
    }
    assert!(
        std::env::var_os("WARREN_REQUIRE_NETNS").is_none(),
        "WARREN_REQUIRE_NETNS is set but root, ip or nft is missing"
    );
    warren_testkit::skip("needs root, ip and nft");
    false
}

/// A site namespace joined to this one by a veth pair on 10.250.N.0/29:
/// `.1` (host side: the edge and the DNS server), `.2` (the site), and two
/// more host-side addresses for listeners. Removed on drop, with its
/// /etc/netns directory.
struct SiteNet {
    ns: String,
    prefix: String,
}

impl SiteNet {
    fn new() -> SiteNet {
        let id = std::process::id() % 100_000;
        let ns = format!("wr-r-{id}");
        let (host_if, site_if) = (format!("vr{id}"), format!("vq{id}"));
        // A /29 nobody on this machine uses yet.
        let octet = (0..250u32)
            .map(|i| (std::process::id() + i) % 250)
            .find(|o| {
                run(&[
                    "ip",
                    "-o",
                    "addr",
                    "show",
                    "to",
                    &format!("10.250.{o}.0/29"),
                ])
                .stdout
                .is_empty()
            })
            .expect("a free 10.250.N.0/29");
        let prefix = format!("10.250.{octet}");
        let net = SiteNet {
            ns: ns.clone(),
            prefix: prefix.clone(),
        };
        let (h1, h3, h4) = (
            format!("{prefix}.1/29"),
            format!("{prefix}.3/29"),
            format!("{prefix}.4/29"),
        );
        let site = format!("{prefix}.2/29");
        for cmd in [
            vec!["ip", "netns", "add", &ns],
            vec![
                "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &site_if,
            ],
            vec!["ip", "link", "set", &site_if, "netns", &ns],
            vec!["ip", "addr", "add", &h1, "dev", &host_if],
            vec!["ip", "addr", "add", &h3, "dev", &host_if],
            vec!["ip", "addr", "add", &h4, "dev", &host_if],
            vec!["ip", "-n", &ns, "addr", "add", &site, "dev", &site_if],
            vec!["ip", "link", "set", &host_if, "up"],
            vec!["ip", "-n", &ns, "link", "set", &site_if, "up"],
            vec!["ip", "-n", &ns, "link", "set", "lo", "up"],
        ] {
            ok(&cmd);
        }
        net
    }

    fn ip(&self, host: u8) -> Ipv4Addr {
        format!("{}.{host}", self.prefix).parse().unwrap()
    }

    /// The namespace's resolver is `.1`; its queries go to `dns` there.
    fn use_dns(&self, dns: SocketAddr) {
        let etc = format!("/etc/netns/{}", self.ns);
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(format!("{etc}/hosts"), "127.0.0.1 localhost\n").unwrap();
        std::fs::write(
            format!("{etc}/resolv.conf"),
            format!("nameserver {}\noptions timeout:1 attempts:2\n", self.ip(1)),
        )
        .unwrap();
        let rules = format!(
            "table ip warren_dns {{ chain out {{ type nat hook output priority -100; \
             ip daddr {ip} udp dport 53 dnat to {dns}; }}; }}",
            ip = self.ip(1)
        );
        ok(&["ip", "netns", "exec", &self.ns, "nft", &rules]);
    }
}

impl Drop for SiteNet {
    fn drop(&mut self) {
        // The veth pair goes with the namespace.
        let _ = run(&["ip", "netns", "del", &self.ns]);
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.ns));
    }
}

/// A listener on `addr` that answers each connection with `name` and
/// counts them.
async fn counted_banner(addr: SocketAddr, name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::AsyncWriteExt;
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("binding {addr}: {e}"));
    let bound = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(name.as_bytes()).await;
        }
    });
    (bound, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_rebound_between_check_and_connect_reaches_only_the_checked_address() {
    if !available() {
        return;
    }
    let _ = bin();
    let net = SiteNet::new();
    let (allowed_ip, forbidden_ip) = (net.ip(3), net.ip(4));
    // The same port on both: only the address tells them apart.
    let (good, good_hits) = counted_banner((allowed_ip, 0).into(), "good").await;
    let (bad, bad_hits) = counted_banner((forbidden_ip, good.port()).into(), "bad").await;
    let dns = DnsServer::start(
        (net.ip(1), 0).into(),
        "rebind.test",
        &[allowed_ip, forbidden_ip],
    );
    net.use_dns(dns.addr());

    let dir = tempfile::tempdir().unwrap();
    let mut spec = EdgeSpec::new().resource(ResourceSpec::tcp(
        "web",
        "home",
        format!("rebind.test:{}", good.port()),
    ));
    spec.tunnel_listen = format!("{}:0", net.ip(1));
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let mut args: Vec<String> = ["netns", "exec", &net.ns, common::BIN, "site"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(
        [
            "--endpoint",
            &format!("https://{}:{}", net.ip(1), edge.tunnel.port()),
            "--id",
            "home",
            "--secret",
            "S3CRET-for-tests",
            "--pin",
            &edge.pin,
            "--transport",
            "tcp",
            // The name is not listed: only its checked address is.
            "--allow",
            &format!("{good}/tcp"),
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let agent = Process::spawn("agent", std::path::Path::new("ip"), &args, dir.path());
    agent.wait_event("edge_connected");
    edge.process.wait_event("agent_connected");
    let resource = edge.resource_addr("web");

    // One stream at a time, so that the n-th lookup is the n-th stream's.
    let streams = 6;
    let mut seen = Vec::new();
    for _ in 0..streams {
        seen.push(read_banner(resource).await.unwrap_or_default());
    }
    let answered = dns.answered();
    eprintln!("DNS answers {answered:?}; the visitor saw {seen:?}");
    // Never the address it did not check, whatever DNS said in between.
    assert_eq!(
        bad_hits.load(Ordering::SeqCst),
        0,
        "the agent connected to {bad}, which it never allowed; the visitor saw {seen:?}"
    );
    // The agent asked once per stream: what it checked is what it used.
    assert_eq!(
        answered.len(),
        streams,
        "one lookup per stream, not a second one to connect: {answered:?}"
    );
    assert!(
        answered.contains(&allowed_ip) && answered.contains(&forbidden_ip),
        "the script handed out both addresses: {answered:?}"
    );
    for (i, (answer, got)) in answered.iter().zip(&seen).enumerate() {
        let expected = if *answer == allowed_ip { "good" } else { "" };
        assert_eq!(
            got, expected,
            "stream {i}: checked {answer}, the visitor got {got:?}"
        );
    }
    let allowed_answers = answered.iter().filter(|a| **a == allowed_ip).count();
    assert_eq!(good_hits.load(Ordering::SeqCst), allowed_answers);
    // Each answer naming the forbidden address was refused, saying so (the
    // visitor may see its connection close before the agent's log line is
    // written: wait for the last one, then count).
    let forbidden_answers = streams - allowed_answers;
    assert!(forbidden_answers > 0);
    agent.wait_event_nth(
        "stream_refused",
        forbidden_answers - 1,
        warren_testkit::EVENT_TIMEOUT,
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    let refused = agent.events("stream_refused");
    assert_eq!(refused.len(), streams - allowed_answers, "{refused:#?}");
    for r in &refused {
        let msg = r["message"].as_str().unwrap_or_default();
        assert!(msg.contains(&format!("resolves to {forbidden_ip}")), "{r}");
        assert_eq!(r["reason"], "not_allowed", "{r}");
    }
}
