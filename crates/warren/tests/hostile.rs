//! Hostile and incompatible peers against real processes: the refusal is
//! logged on both sides, only the offending link closes, nothing leaks.

mod common;

use common::{bin, echo_ok, edge_with_echo, EchoEdge};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warren_proto::handshake::{decode_reply, encode_hello, encode_reply, Reply};
use warren_proto::{Hello, Refusal, RefusalCode, Welcome};
use warren_testkit::{EdgeProcess, EdgeSpec, Process};
use warren_transport::tls::{self, EdgeTrust};

fn hello(secret: &str) -> Hello {
    Hello {
        site_id: "home".into(),
        secret: secret.into(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        platform: "test".into(),
        instance: "fake".into(),
    }
}

type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// TLS to the edge, as an agent would.
async fn tls_to(edge: &EdgeProcess) -> ClientTls {
    let pin = tls::parse_pin(&edge.pin).unwrap();
    let cfg = tls::client_config(&EdgeTrust::Pin(pin)).unwrap();
    let tcp = TcpStream::connect(edge.tunnel).await.unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

async fn read_reply(s: &mut ClientTls) -> Reply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        if let Some((reply, _)) = decode_reply(&buf).unwrap() {
            return reply;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "edge closed without a reply");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads until the edge closes the link; panics if it stays open.
async fn expect_closed(s: &mut ClientTls) {
    let mut sink = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the edge kept a hostile link open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_of_an_unknown_protocol_version_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeProcess::start(bin(), dir.path(), &EdgeSpec::new());
    let mut s = tls_to(&edge).await;
    s.write_all(&encode_hello(&hello("S3CRET-for-tests"), 99))
        .await
        .unwrap();
    match read_reply(&mut s).await {
        Reply::Refused(r) => {
            assert_eq!(r.code, RefusalCode::UnsupportedVersion);
            assert!(r.message.contains("99"), "{}", r.message);
            assert!(r.message.contains("upgrade"), "{}", r.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let logged = edge.process.wait_event("agent_refused");
    assert!(
        logged["error"].as_str().unwrap().contains("version 99"),
        "{logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_older_than_the_edge_supports_is_told_what_to_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeProcess::start(bin(), dir.path(), &EdgeSpec::new());
    for version in ["0.0.9", "not-a-version"] {
        let mut s = tls_to(&edge).await;
        let old = Hello {
            agent_version: version.into(),
            ..hello("S3CRET-for-tests")
        };
        s.write_all(&encode_hello(&old, warren_proto::PROTOCOL_VERSION))
            .await
            .unwrap();
        match read_reply(&mut s).await {
            Reply::Refused(r) => {
                assert_eq!(r.code, RefusalCode::AgentTooOld);
                assert!(
                    r.message.contains(version) && r.message.contains("upgrade warren"),
                    "{}",
                    r.message
                );
            }
            other => panic!("{version}: expected a refusal, got {other:?}"),
        }
    }
    let logged = edge.process.wait_event("agent_refused");
    assert_eq!(logged["reason"], "agent_too_old", "{logged}");
    assert_eq!(edge.agent_count("home"), 0);
}

/// A fake edge that answers every agent with `reply`, once per connection.
async fn fake_edge(reply: Vec<u8>) -> (u16, String) {
    let (config, pin) = warren_testkit::peers::self_signed();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, reply) = (acceptor.clone(), reply.clone());
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = [0u8; 12];
                if s.read_exact(&mut head).await.is_err() {
                    return;
                }
                let len = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as usize;
                let mut body = vec![0u8; len];
                let _ = s.read_exact(&mut body).await;
                let _ = s.write_all(&reply).await;
                let _ = s.flush().await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
        }
    });
    (port, pin)
}

fn agent_against(port: u16, pin: &str, dir: &std::path::Path) -> Process {
    let args: Vec<String> = [
        "site",
        "--endpoint",
        &format!("https://127.0.0.1:{port}"),
        "--id",
        "home",
        "--secret",
        "x",
        "--pin",
        pin,
        "--transport",
        "tcp",
        "--allow",
        "127.0.0.1:9/tcp",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Process::spawn("agent", bin(), &args, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_of_an_unknown_protocol_version_is_refused_by_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    // A newer edge that welcomes with version 99: the agent must not go on.
    let welcome = Welcome {
        edge_version: "99.0".into(),
        link_id: "x".into(),
    };
    let (port, pin) = fake_edge(encode_reply(&Reply::Welcome(welcome), 99)).await;
    let agent = agent_against(port, &pin, dir.path());
    let logged = agent.wait_event("edge_refused");
    let msg = logged["message"].as_str().unwrap();
    assert!(msg.contains("protocol version 99"), "{msg}");
    assert!(agent.events("edge_connected").is_empty());
    // A newer edge that refuses this agent's version: the agent logs the edge's words.
    let refusal = Refusal {
        code: RefusalCode::UnsupportedVersion,
        message: "this edge speaks protocol 2..=3; upgrade the agent to 0.5 or later".into(),
    };
    let (port, pin) = fake_edge(encode_reply(&Reply::Refused(refusal), 3)).await;
    let agent = agent_against(port, &pin, dir.path());
    let msg = agent.wait_event("edge_refused")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("upgrade the agent to 0.5"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_truncated_frames_close_only_that_link() {
    let EchoEdge {
        edge,
        echo,
        dir: _dir,
    } = edge_with_echo().await;
    let _good = edge.start_agent("good", "tcp", &[&format!("{echo}/tcp")]);
    let addr = edge.resource_addr("echo");
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("unknown frame type", vec![0xEE, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
        (
            "oversized length",
            vec![0, 0, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF],
        ),
        (
            "ping on a stream",
            vec![6, 0, 0, 0, 0, 9, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8],
        ),
        (
            "data for a stream never opened",
            vec![0, 0, 0, 0, 0, 41, 0, 0, 0, 1, 0xAB],
        ),
        (
            "window overflow",
            vec![3, 0, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF],
        ),
        (
            "bad open payload from an agent",
            vec![1, 0, 0, 0, 0, 2, 0, 0, 0, 3, 9, 9, 9],
        ),
        (
            "random bytes",
            (0..4096).map(|i| (i * 7 % 251) as u8).collect(),
        ),
        (
            "truncated frame then close",
            vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 100, 1, 2, 3],
        ),
    ];
    for (i, (what, bytes)) in garbage.iter().enumerate() {
        let mut s = tls_to(&edge).await;
        s.write_all(&encode_hello(
            &hello("S3CRET-for-tests"),
            warren_proto::PROTOCOL_VERSION,
        ))
        .await
        .unwrap();
        assert!(
            matches!(read_reply(&mut s).await, Reply::Welcome(_)),
            "{what}: not welcomed"
        );
        s.write_all(bytes).await.unwrap();
        if what.starts_with("truncated") {
            s.shutdown().await.unwrap();
        }
        s.flush().await.unwrap();
        expect_closed(&mut s).await;
        let gone =
            edge.process
                .wait_log(&format!("disconnect #{i}"), Duration::from_secs(5), |v| {
                    v["event"] == "agent_disconnected" && v["agent"] == "fake" && {
                        let n = edge
                            .process
                            .events("agent_disconnected")
                            .iter()
                            .filter(|e| e["agent"] == "fake")
                            .count();
                        n > i
                    }
                });
        assert!(gone["reason"].is_string(), "{what}: {gone}");
        // The good agent's link is untouched.
        echo_ok(addr, what.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("after {what}: {e}"));
    }
    let reasons: Vec<String> = edge
        .process
        .events("agent_disconnected")
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        reasons
            .iter()
            .filter(|r| r.contains("protocol error"))
            .count()
            >= 6,
        "{reasons:#?}"
    );
    // No leak: only the good agent is registered, with no stream left open.
    assert_eq!(edge.agent_count("home"), 1);
    edge.wait_streams_closed();
    assert!(edge
        .process
        .logs()
        .iter()
        .all(|l| !l.to_string().contains("panicked")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_edge_sending_garbage_makes_the_agent_reconnect_not_crash() {
    let dir = tempfile::tempdir().unwrap();
    let welcome = Welcome {
        edge_version: "evil".into(),
        link_id: "x".into(),
    };
    let mut reply = encode_reply(&Reply::Welcome(welcome), warren_proto::PROTOCOL_VERSION);
    reply.extend_from_slice(&[0xEE; 64]);
    let (port, pin) = fake_edge(reply).await;
    let mut agent = agent_against(port, &pin, dir.path());
    let lost = agent.wait_event("edge_link_lost");
    assert!(
        lost["reason"].as_str().unwrap().contains("protocol error"),
        "{lost}"
    );
    // It keeps trying (a second connection) and is still running.
    agent.wait_event_nth("edge_connected", 1, Duration::from_secs(10));
    assert_eq!(
        agent.wait_exit(Duration::from_millis(100)),
        None,
        "the agent exited"
    );
}

/// Everything the edge sends back to `hello` over TCP+TLS, up to its close,
/// and how it closed (`eof` for a TLS close_notify, else the error kind).
async fn raw_answer(edge: &EdgeProcess, hello: &Hello) -> (Vec<u8>, String) {
    let mut s = tls_to(edge).await;
    s.write_all(&encode_hello(hello, warren_proto::PROTOCOL_VERSION))
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 512];
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) => return "eof".to_owned(),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) => return format!("{:?}", e.kind()),
            }
        }
    })
    .await
    .expect("the edge kept a refused link open");
    (got, end)
}

/// The refusal `hello` gets over QUIC, through the agent's own dialer.
async fn quic_refusal(edge: &EdgeProcess, hello: &Hello) -> Refusal {
    let pin = tls::parse_pin(&edge.pin).unwrap();
    let cfg = warren_transport::DialConfig {
        endpoint: warren_transport::Endpoint {
            host: "127.0.0.1".into(),
            port: edge.tunnel.port(),
        },
        tls: tls::client_config(&EdgeTrust::Pin(pin)).unwrap(),
        transport: warren_transport::TransportChoice::Quic,
        hello: hello.clone(),
        protocol_version: warren_proto::PROTOCOL_VERSION,
        session: warren_proto::SessionConfig::default(),
        connect_timeout: Duration::from_secs(10),
    };
    match warren_transport::dial(&cfg).await {
        Err(warren_transport::DialError::Refused(r)) => r,
        Err(e) => panic!("QUIC: expected a refusal, got {e}"),
        Ok(_) => panic!("QUIC: {hello:?} was admitted"),
    }
}

/// How each series moved from `before` to `after` (`name{labels} +1`), for
/// those that moved or are new.
fn metric_changes(
    before: &std::collections::BTreeMap<String, String>,
    after: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let value = |v: Option<&String>| v.and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k} {:+}", value(Some(v)) - value(before.get(k))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_site_id_gets_exactly_the_answer_of_a_wrong_secret() {
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeProcess::start(bin(), dir.path(), &EdgeSpec::new());
    // A site made through the API (its secret's hash lives in the store),
    // besides the config file's `home`.
    let (status, made) = edge.admin_request(
        "POST",
        "/api/v1/sites",
        Some(r#"{"id": "dome"}"#),
        edge.token.as_deref(),
    );
    assert_eq!(status, 201, "{made}");
    let api_secret = made["secret"].as_str().unwrap().to_owned();
    // Site ids of one length, so the answers can be compared byte for
    // byte once the id each one names is put back to `home`.
    let cases = [
        ("a wrong secret for a file site", hello("not-the-secret")),
        (
            "a wrong secret for an API site",
            Hello {
                site_id: "dome".into(),
                ..hello("not-the-secret")
            },
        ),
        (
            "an unknown site id",
            Hello {
                site_id: "nome".into(),
                ..hello("not-the-secret")
            },
        ),
        (
            "an unknown site id with a real site's secret",
            Hello {
                site_id: "nome".into(),
                ..hello("S3CRET-for-tests")
            },
        ),
        (
            "an unknown site id with an API site's secret",
            Hello {
                site_id: "nome".into(),
                ..hello(&api_secret)
            },
        ),
    ];
    let as_home = |bytes: &[u8], id: &str| -> Vec<u8> {
        let (from, to) = (format!("`{id}`"), "`home`");
        String::from_utf8_lossy(bytes)
            .replace(&from, to)
            .into_bytes()
    };

    let mut answers = Vec::new();
    for (i, (what, h)) in cases.iter().enumerate() {
        let before = edge.metrics();
        let (bytes, end) = raw_answer(&edge, h).await;
        let logged = edge
            .process
            .wait_event_nth("agent_refused", 2 * i, Duration::from_secs(10));
        let changes = metric_changes(&before, &edge.metrics());
        // What a refusal is: a reply naming bad credentials, then a close.
        match decode_reply(&bytes) {
            Ok(Some((Reply::Refused(r), used))) => {
                assert_eq!(r.code, RefusalCode::BadCredentials, "{what}: {r:?}");
                assert_eq!(used, bytes.len(), "{what}: bytes after the refusal");
            }
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
        let quic = quic_refusal(&edge, h).await;
        edge.process
            .wait_event_nth("agent_refused", 2 * i + 1, Duration::from_secs(10));
        eprintln!("{what}: {end}, {:?}, metrics {changes:?}", quic.message);
        answers.push((
            *what,
            as_home(&bytes, &h.site_id),
            end,
            quic.code,
            String::from_utf8(as_home(quic.message.as_bytes(), &h.site_id)).unwrap(),
            changes,
            (
                logged["reason"].clone(),
                logged["message"].clone(),
                logged["level"].clone(),
            ),
        ));
    }
    let (first, rest) = answers.split_first().unwrap();
    for other in rest {
        assert!(
            other.1 == first.1,
            "{} and {} get different bytes:\n{:?}\n{:?}",
            other.0,
            first.0,
            String::from_utf8_lossy(&other.1),
            String::from_utf8_lossy(&first.1)
        );
        assert_eq!(
            other.2, first.2,
            "{} and {} close differently",
            other.0, first.0
        );
        assert_eq!(
            (other.3, &other.4),
            (first.3, &first.4),
            "{} and {} get different QUIC refusals",
            other.0,
            first.0
        );
        // Nothing served without a key (/metrics) tells them apart either;
        // the edge's own log names the site, and the reason is the same.
        assert_eq!(
            other.5, first.5,
            "{} and {} move different metrics",
            other.0, first.0
        );
        assert_eq!(
            other.6, first.6,
            "{} and {} are logged differently",
            other.0, first.0
        );
    }
    assert!(
        first.5.iter().any(|m| m.contains("bad_credentials")),
        "{:?}",
        first.5
    );
    assert_eq!(edge.agent_count("home") + edge.agent_count("dome"), 0);
}

/// Log and metric cannot disagree: for every way a tunnel connection is
/// refused (no hello, an unreadable hello, a too-old agent, bad
/// credentials), each refusal logged with reason R is counted once under
/// `warren_edge_tunnel_handshake_failures_total{reason="R"}`, and nothing
/// is counted that was not logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_logged_and_counted_under_the_same_reason() {
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeProcess::start(bin(), dir.path(), &EdgeSpec::new());
    // No hello: TCP opened and closed.
    drop(TcpStream::connect(edge.tunnel).await.unwrap());
    // An unreadable hello.
    let mut s = tls_to(&edge).await;
    s.write_all(b"WARREN\x00\x01garbage-garbage-garbage")
        .await
        .unwrap();
    let _ = s.shutdown().await;
    // Too old, and a wrong secret.
    for h in [
        Hello {
            agent_version: "0.0.9".into(),
            ..hello("S3CRET-for-tests")
        },
        hello("wrong"),
    ] {
        let mut s = tls_to(&edge).await;
        s.write_all(&encode_hello(&h, warren_proto::PROTOCOL_VERSION))
            .await
            .unwrap();
        assert!(matches!(read_reply(&mut s).await, Reply::Refused(_)));
    }
    let want = [
        "before_hello",
        "bad_hello",
        "agent_too_old",
        "bad_credentials",
    ];
    let deadline = std::time::Instant::now() + warren_testkit::EVENT_TIMEOUT;
    loop {
        let mut logged: std::collections::BTreeMap<String, u64> = Default::default();
        for e in edge
            .process
            .events("agent_refused")
            .into_iter()
            .chain(edge.process.events("handshake_failed"))
        {
            *logged
                .entry(e["reason"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        let counted: std::collections::BTreeMap<String, u64> = edge
            .metrics()
            .into_iter()
            .filter_map(|(k, v)| {
                let reason = k
                    .strip_prefix("warren_edge_tunnel_handshake_failures_total{reason=\"")?
                    .strip_suffix("\"}")?;
                Some((reason.to_owned(), v.parse::<f64>().ok()? as u64))
            })
            .collect();
        if want.iter().all(|r| logged.contains_key(*r)) && logged == counted {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "logged {logged:?}, counted {counted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A peer cannot forge a line of the text log: a hello whose site id and
/// instance carry a newline, a fake log line and a terminal escape is
/// refused, and the edge's text log shows it escaped within one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_cannot_forge_a_line_of_the_text_log() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("edge.toml"), EdgeSpec::new().to_toml()).unwrap();
    let mut child = std::process::Command::new(bin())
        .args(["edge", "--config", "edge.toml", "--log-format", "text"])
        .env("WARREN_LOG", "info")
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(line);
        }
    });
    let wait_for = |what: &str| -> String {
        let deadline = std::time::Instant::now() + warren_testkit::EVENT_TIMEOUT;
        loop {
            if let Some(l) = lines.lock().unwrap().iter().find(|l| l.contains(what)) {
                return l.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no `{what}` in {:?}",
                lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let started = wait_for("edge started");
    let field = |k: &str| {
        started
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= in {started}"))
            .trim_matches('"')
            .to_owned()
    };
    let tunnel: std::net::SocketAddr = field("tunnel").parse().unwrap();
    let cfg = tls::client_config(&EdgeTrust::Pin(tls::parse_pin(&field("pin")).unwrap())).unwrap();
    let tcp = TcpStream::connect(tunnel).await.unwrap();
    let mut s = tokio_rustls::TlsConnector::from(cfg)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let forged = "home\n2026-01-01T00:00:00Z  INFO forged: admin logged in\x1b[2J";
    let h = Hello {
        site_id: forged.into(),
        instance: forged.into(),
        ..hello("wrong")
    };
    s.write_all(&encode_hello(&h, warren_proto::PROTOCOL_VERSION))
        .await
        .unwrap();
    assert!(matches!(read_reply(&mut s).await, Reply::Refused(_)));
    let refused = wait_for("agent refused");
    assert!(refused.contains("home\\n2026-01-01"), "{refused}");
    assert!(!refused.contains('\x1b'), "{refused}");
    let _ = child.kill();
    let _ = child.wait();
    let all = lines.lock().unwrap().clone();
    assert!(
        all.iter()
            .all(|l| !l.contains("forged") || l.contains("agent refused")),
        "a forged line: {all:#?}"
    );
}

/// Fair admission: one anonymous host holding 300 idle connections to the
/// tunnel port (they never start TLS) cannot keep a real agent from another
/// address out. Its handshakes beyond its share are closed at once and
/// counted; the agent is admitted before the edge has timed out a single
/// idle one (before, every pre-auth slot was held until the timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_one_host_do_not_keep_a_real_agent_out() {
    let dir = tempfile::tempdir().unwrap();
    let echo = warren_testkit::echo_tcp().await;
    let spec = EdgeSpec::new().resource(warren_testkit::ResourceSpec::tcp("echo", "home", echo));
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let mut idle = Vec::new();
    for _ in 0..300 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        idle.push(socket.connect(edge.tunnel).await.unwrap());
    }
    let agent = edge.start_agent("agent", "tcp", &[&format!("{echo}/tcp")]);
    let logs = edge.process.logs();
    let position = |event: &str| logs.iter().position(|l| l["event"] == event);
    let admitted = position("agent_connected").expect("the agent was admitted");
    if let Some(first_timeout) = position("handshake_failed") {
        assert!(
            admitted < first_timeout,
            "the agent waited for an idle connection to time out"
        );
    }
    // The source's excess was closed at once and counted.
    let series = "warren_edge_tunnel_handshake_failures_total{reason=\"too_many_from_source\"}";
    let counted: f64 = edge
        .metrics()
        .get(series)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(counted >= 250.0, "{series} = {counted}");
    echo_ok(edge.resource_addr("echo"), b"still serving")
        .await
        .unwrap();
    drop(agent);
    drop(idle);
}
