//! A compromised edge against the agent's SSH auth daemon
//! (`--ssh-auth-daemon`), speaking the tunnel protocol (testkit's
//! `FakeEdge`): `ssh-user` streams to a target off the allowlist, requests
//! that do not decode or never finish, named accounts the host does not
//! list. Each is refused with a reason and nothing is made; at most four
//! are worked on at once (more are refused at once, not queued); and
//! honest streams keep flowing throughout.

mod common;

use common::bin;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_proto::ssh_user::{SshUserReply, SshUserRequest};
use warren_proto::{OpenRequest, TargetProtocol};
use warren_testkit::peers::FakeEdge;
use warren_testkit::{echo_tcp, Process};
use warren_transport::{Link, OpenError, TunnelStream};

fn ssh_user(target: &str) -> OpenRequest {
    OpenRequest {
        protocol: TargetProtocol::SshUser,
        target: target.into(),
        resource: "vm-01".into(),
        client: "203.0.113.9:4242".into(),
    }
}

/// The reply to `bytes` written on a fresh `ssh-user` stream.
async fn ask(link: &Link, target: &str, bytes: &[u8]) -> Result<SshUserReply, OpenError> {
    let mut s = link.open(ssh_user(target)).await?;
    s.write_all(bytes).await.unwrap();
    Ok(read_reply(&mut s).await)
}

async fn read_reply(s: &mut TunnelStream) -> SshUserReply {
    let len = s.read_u16().await.expect("a reply") as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await.unwrap();
    SshUserReply::decode(&buf).expect("a reply that decodes")
}

async fn echo_once(link: &Link, echo: &str) {
    let mut s = link
        .open(OpenRequest {
            protocol: TargetProtocol::Tcp,
            target: echo.into(),
            resource: "echo".into(),
            client: String::new(),
        })
        .await
        .expect("an honest stream");
    s.write_all(b"still here").await.unwrap();
    let mut back = [0u8; 10];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"still here");
}

fn refused(reply: &SshUserReply) -> &str {
    match reply {
        SshUserReply::Refused(why) => why,
        other => panic!("granted: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_edge_gets_from_the_ssh_daemon_only_refusals_and_bounded_work() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("authd");
    let echo = echo_tcp().await.to_string();
    let mut edge = FakeEdge::start().await;
    let mut args = edge.site_args("tcp", &[&format!("{echo}/tcp")]);
    args.extend(
        [
            "--ssh-auth-daemon",
            "--ssh-state-dir",
            &state.display().to_string(),
        ]
        .map(String::from),
    );
    let agent = Process::spawn("agent", bin(), &args, dir.path());
    let (link, _) = edge.link().await;
    agent.wait_event("edge_connected");
    echo_once(&link, &echo).await;

    // A target off the allowlist: refused before anything is read.
    match link.open(ssh_user("10.9.9.9:22")).await {
        Err(OpenError::Refused { reason, .. }) => {
            assert_eq!(reason, warren_proto::RefuseReason::NotAllowed)
        }
        other => panic!("{:?}", other.map(|_| "a stream")),
    }
    // A length over the bound, and bytes that do not decode.
    let reply = ask(&link, &echo, &[0xff, 0xff, 1, 2, 3]).await.unwrap();
    assert_eq!(refused(&reply), "the request could not be read");
    let reply = ask(&link, &echo, &[0, 3, 1, 2, 3]).await.unwrap();
    assert_eq!(refused(&reply), "the request could not be read");
    // Named accounts the host does not list, root among them: nothing.
    let root = SshUserRequest {
        resource: "vm-01".into(),
        email: "mallory@evil.example".into(),
        own: false,
        sudo: Some("admin".into()),
        accounts: vec!["root".into(), "daemon".into()],
    };
    let reply = ask(&link, &echo, &root.encode().unwrap()).await.unwrap();
    assert_eq!(refused(&reply), "no account this host allows");
    echo_once(&link, &echo).await;

    // Four requests that never finish hold the four places; a fifth is
    // refused at once rather than queued, and honest streams still flow.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut s = link.open(ssh_user(&echo)).await.unwrap();
        s.write_all(&[0]).await.unwrap();
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    match link.open(ssh_user(&echo)).await {
        Err(OpenError::Refused { message, .. }) => {
            assert!(message.contains("busy"), "{message}")
        }
        other => panic!("a fifth request was taken: {:?}", other.map(|_| "a stream")),
    }
    echo_once(&link, &echo).await;
    // The slow ones are given up within the read bound (10 s), with a
    // refusal; then the daemon answers again.
    let started = Instant::now();
    for s in &mut slow {
        let reply = tokio::time::timeout(Duration::from_secs(15), read_reply(s))
            .await
            .expect("the agent gave up on a slow request");
        assert_eq!(refused(&reply), "the request could not be read");
    }
    eprintln!("slow requests given up after {:?}", started.elapsed());
    let reply = ask(&link, &echo, &root.encode().unwrap()).await.unwrap();
    assert_eq!(refused(&reply), "no account this host allows");
    // Nothing was made: no account recorded, no principals.
    let recorded = std::fs::read_to_string(state.join("state.json")).unwrap_or_default();
    assert!(!recorded.contains("mallory"), "{recorded}");
    assert_eq!(
        std::fs::read_dir(state.join("principals")).unwrap().count(),
        0
    );
    echo_once(&link, &echo).await;
}
