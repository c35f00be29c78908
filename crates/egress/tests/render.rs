//! The second-wall renderers on a rich allowlist: snapshots (insta) of
//! every format and subject, and the nftables text checked by the real
//! `nft` parser (`nft -c`, which commits nothing) where it can run.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use warren_egress::render::{
    nftables, nftables_set_swap, systemd_unit, RenderError, Subject, Wall,
};
use warren_egress::Allowlist;

const RICH: &[&str] = &[
    "127.0.0.1:8080/tcp",
    "10.0.1.7/24:22/tcp", // host bits set: rendered as 10.0.1.0/24
    "10.0.2.0/24:5000-5100/tcp",
    "192.168.1.53:53/udp",
    "nas.lan:445/tcp",
    "[fd00::/8]:443/tcp",
    "127.0.0.1:8080/tcp", // a duplicate
];

fn resolved() -> BTreeMap<String, Vec<IpAddr>> {
    BTreeMap::from([(
        "nas.lan".to_owned(),
        vec!["10.0.1.20".parse().unwrap(), "fd00::20".parse().unwrap()],
    )])
}

fn render(subject: Subject) -> String {
    let allow = Allowlist::parse(RICH.iter().copied()).unwrap();
    let resolved = resolved();
    let resolvers: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap()];
    let edge: Vec<SocketAddr> = vec!["203.0.113.10:7443".parse().unwrap()];
    nftables(&Wall {
        allow: &allow,
        resolved: &resolved,
        resolvers: &resolvers,
        edge: &edge,
        subject,
    })
    .unwrap()
}

#[test]
fn nftables_for_a_host_install_by_uid() {
    insta::assert_snapshot!(render(Subject::Uid(990)));
}

#[test]
fn nftables_for_a_host_install_by_cgroup() {
    insta::assert_snapshot!(render(Subject::Cgroup(
        "system.slice/warren-site.service".into()
    )));
}

#[test]
fn nftables_for_a_container_by_source_address() {
    let net = match &Allowlist::parse(["172.17.0.5:1/tcp"]).unwrap().rules()[0].host {
        warren_egress::HostPattern::Net(n) => *n,
        _ => unreachable!(),
    };
    insta::assert_snapshot!(render(Subject::Source(net)));
}

#[test]
fn systemd_unit_from_the_same_list() {
    let allow = Allowlist::parse(RICH.iter().copied()).unwrap();
    let resolved = resolved();
    let resolvers: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap()];
    let edge: Vec<SocketAddr> = vec!["203.0.113.10:7443".parse().unwrap()];
    let unit = systemd_unit(
        &Wall {
            allow: &allow,
            resolved: &resolved,
            resolvers: &resolvers,
            edge: &edge,
            subject: Subject::Uid(0),
        },
        "/usr/local/bin/warren",
    )
    .unwrap();
    insta::assert_snapshot!(unit);
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(render(Subject::Uid(990)), render(Subject::Uid(990)));
}

#[test]
fn what_cannot_be_rendered_is_refused_with_the_reason() {
    let resolvers: Vec<IpAddr> = Vec::new();
    let edge: Vec<SocketAddr> = vec!["203.0.113.10:7443".parse().unwrap()];
    let none = BTreeMap::new();
    let names = Allowlist::parse(["nas.lan:445/tcp"]).unwrap();
    let wall = |allow| Wall {
        allow,
        resolved: &none,
        resolvers: &resolvers,
        edge: &edge,
        subject: Subject::Uid(1),
    };
    assert_eq!(
        nftables(&wall(&names)),
        Err(RenderError::Unresolved("nas.lan".into()))
    );
    let any = Allowlist::allow_any();
    assert_eq!(nftables(&wall(&any)), Err(RenderError::AllowAny));
    let no_edge = Wall {
        edge: &[],
        ..wall(&names)
    };
    assert_eq!(nftables(&no_edge), Err(RenderError::NoEdge));
}

/// The real parser accepts what we render (`nft -c` checks and commits
/// nothing). Needs root and nft; CI has both.
/// The set swap `warren egress apply --watch` loads when nas.lan moves.
fn swap_after_a_move() -> String {
    let allow = Allowlist::parse(RICH.iter().copied()).unwrap();
    let moved = BTreeMap::from([("nas.lan".to_owned(), vec!["10.0.1.21".parse().unwrap()])]);
    let resolvers: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap()];
    let edge: Vec<SocketAddr> = vec!["203.0.113.10:7443".parse().unwrap()];
    nftables_set_swap(&Wall {
        allow: &allow,
        resolved: &moved,
        resolvers: &resolvers,
        edge: &edge,
        subject: Subject::Uid(990),
    })
    .unwrap()
}

#[test]
fn a_moved_name_swaps_only_the_sets() {
    insta::assert_snapshot!(swap_after_a_move());
}

#[test]
fn nft_accepts_the_rendered_rules() {
    let nft_ok = std::process::Command::new("nft")
        .args(["-c", "-f", "/dev/null"])
        .status()
        .is_ok_and(|s| s.success());
    if !nft_ok {
        warren_testkit::skip("nft -c cannot run here (needs nft and root)");
        return;
    }
    let net = match &Allowlist::parse(["172.17.0.5:1/tcp"]).unwrap().rules()[0].host {
        warren_egress::HostPattern::Net(n) => *n,
        _ => unreachable!(),
    };
    for (what, text) in [
        ("uid", render(Subject::Uid(990))),
        ("source", render(Subject::Source(net))),
        // One transaction: the table, then the swap applied to it.
        ("swap", render(Subject::Uid(990)) + &swap_after_a_move()),
    ] {
        let dir = tempfile_dir();
        let path = dir.join(format!("{what}.nft"));
        std::fs::write(&path, &text).unwrap();
        warren_testkit::run_ok(
            std::process::Command::new("nft")
                .args(["-c", "-f"])
                .arg(&path),
            &format!("{what}: nft refused the rules\n{text}\n"),
        );
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-egress-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `--cgroup` rules through the real parser. nft looks the cgroup path
/// up under /sys/fs/cgroup (refusing one that does not exist), so the test
/// makes a real cgroup under the machine's cgroup2 hierarchy and runs
/// `nft -c` in a mount namespace of its own where that hierarchy is
/// mounted at /sys/fs/cgroup. Needs root, nft, unshare and cgroup2.
#[test]
fn nft_accepts_the_cgroup_rules_for_a_real_cgroup() {
    let root = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| std::path::PathBuf::from(&f[1]));
    let nft_ok = std::process::Command::new("nft")
        .args(["-c", "-f", "/dev/null"])
        .status()
        .is_ok_and(|s| s.success());
    let (Some(root), true) = (root, nft_ok) else {
        warren_testkit::skip("nft -c needs nft, root and a cgroup2 hierarchy");
        return;
    };
    let top = format!("warren-nft-check-{}", std::process::id());
    let service = format!("{top}/warren-site.service");
    std::fs::create_dir_all(root.join(&service)).unwrap();
    let dir = tempfile_dir();
    // nft -c, in a mount namespace where cgroup2 is at /sys/fs/cgroup.
    let check = |what: &str, text: &str| -> std::process::Output {
        let path = dir.join(format!("{what}.nft"));
        std::fs::write(&path, text).unwrap();
        std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount -t cgroup2 none /sys/fs/cgroup && exec nft -c -f \"$0\"")
            .arg(&path)
            .output()
            .unwrap()
    };
    let text = render(Subject::Cgroup(service.clone()));
    let accepted = check("cgroup", &text);
    // The same rules for a cgroup that does not exist: nft really looked.
    let missing = check(
        "missing",
        &render(Subject::Cgroup(format!("{top}/not-there.service"))),
    );
    let _ = std::fs::remove_dir(root.join(&service));
    let _ = std::fs::remove_dir(root.join(&top));
    assert!(
        accepted.status.success(),
        "nft refused the cgroup rules: {}\n{text}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    assert!(
        !missing.status.success(),
        "nft -c accepted a cgroup that does not exist"
    );
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cgroupv2 path fails"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    // The agent's service and what runs below it (level 2: the service's
    // depth) are what the rule selects.
    assert!(
        text.contains(&format!("socket cgroupv2 level 2 \"{service}\" jump agent")),
        "{text}"
    );
}
