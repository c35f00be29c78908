//! The edge's state store through real processes: the config file
//! reconciled into SQLite (and PostgreSQL) with an audit trail, agents and
//! events recorded, state kept across restarts, and a kill -9 during a
//! burst of writes losing nothing that was committed.

mod common;

use common::bin;
use std::time::Duration;
use warren_testkit::{echo_tcp, postgres_installed, EdgeProcess, EdgeSpec, Postgres, ResourceSpec};

const SIGHUP: i32 = 1;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// The audit rows written by reconciling the config file.
/// Sends `signal` to the edge and waits until it has ended: with code 0
/// after SIGTERM, killed by the signal otherwise (a kill -9 test whose edge
/// was not killed would test nothing).
fn stop(edge: &mut EdgeProcess, signal: i32) {
    use std::os::unix::process::ExitStatusExt;
    edge.process.signal(signal);
    let status = edge
        .process
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the edge is still running after signal {signal}"));
    if signal == SIGTERM {
        assert_eq!(status.code(), Some(0), "{status:?}");
    } else {
        assert_eq!(status.signal(), Some(signal), "{status:?}");
    }
}

fn audit_actions(edge: &EdgeProcess) -> Vec<(String, String, String)> {
    edge.admin_get("/api/v1/audit?limit=1000")
        .as_array()
        .expect("audit array")
        .iter()
        .filter(|a| a["actor"] == "config-file")
        .map(|a| {
            (
                a["actor"].as_str().unwrap_or("").to_owned(),
                a["action"].as_str().unwrap_or("").to_owned(),
                a["object"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn row(actor: &str, action: &str, object: &str) -> (String, String, String) {
    (actor.into(), action.into(), object.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_is_reconciled_into_the_store_with_an_audit_trail() {
    let echo = echo_tcp().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = EdgeSpec::new()
        .resource(ResourceSpec::tcp("echo", "home", echo))
        .resource(ResourceSpec::udp("blog", "home", echo));
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    assert_eq!(
        audit_actions(&edge),
        [
            row("config-file", "site.create", "site/home"),
            row("config-file", "resource.create", "resource/echo"),
            row("config-file", "resource.create", "resource/blog"),
        ]
    );

    // Agents and their connects are recorded.
    let agent = edge.start_agent("agent", "tcp", &[&format!("{echo}/tcp")]);
    let instance = agent.wait_event("agent_starting")["agent"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = edge.admin_get("/api/v1/events");
        if events.as_array().is_some_and(|e| !e.is_empty()) {
            break events;
        }
        assert!(std::time::Instant::now() < deadline, "no event recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(events[0]["kind"], "agent_connected");
    assert_eq!(events[0]["subject"], "site/home");
    assert_eq!(events[0]["detail"]["agent"], instance.as_str());
    let agents = edge.admin_get("/api/v1/agents");
    assert_eq!(agents[0]["instance"], instance.as_str());
    assert_eq!(agents[0]["version"], env!("CARGO_PKG_VERSION"));

    // A reload: blog removed, echo's target changed. The audit row keeps
    // the before and after of the change.
    let mut spec = EdgeSpec::new().resource(ResourceSpec::tcp("echo", "home", "127.0.0.1:9"));
    spec.resources[0].listen = "127.0.0.1:0".into();
    std::fs::write(dir.path().join("edge.toml"), spec.to_toml()).unwrap();
    edge.process.signal(SIGHUP);
    edge.process.wait_event("config_reloaded");
    let actions = audit_actions(&edge);
    assert_eq!(
        actions[3..],
        [
            row("config-file", "resource.delete", "resource/blog"),
            row("config-file", "resource.update", "resource/echo"),
        ]
    );
    let audit = edge.admin_get("/api/v1/audit?limit=1000");
    let update = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "resource.update")
        .expect("an update row");
    assert_eq!(update["before"]["targets"][0]["address"], echo.to_string());
    assert_eq!(update["after"]["targets"][0]["address"], "127.0.0.1:9");
    drop(agent);

    // A restart on the same data_dir changes nothing and keeps the logs.
    let mut edge = edge;
    stop(&mut edge, SIGTERM);
    let edge = EdgeProcess::start_existing(bin(), dir.path());
    assert_eq!(audit_actions(&edge).len(), 5, "reconcile is idempotent");
    assert!(!edge
        .admin_get("/api/v1/events")
        .as_array()
        .unwrap()
        .is_empty());

    // Paging: after the third row, the rest.
    let all = edge.admin_get("/api/v1/audit");
    let third = all[2]["id"].as_str().unwrap();
    let rest = edge.admin_get(&format!("/api/v1/audit?after={third}&limit=1"));
    assert_eq!(rest.as_array().unwrap().len(), 1);
    assert_eq!(rest[0]["id"], all[3]["id"]);
}

/// Opens the killed edge's database, which must pass SQLite's integrity
/// check, and returns the names of the resources in it.
async fn stored_after_kill(dir: &std::path::Path) -> Vec<String> {
    let store = warren_store::Store::open_sqlite(&dir.join("data/warren.db"))
        .await
        .expect("the database opens after kill -9");
    assert_eq!(store.sqlite_integrity_check().await.unwrap(), "ok");
    let names = store
        .list_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    store.close().await;
    names
}

/// A kill -9 while reloads are committing: every reload the edge reported
/// done is in the database, which opens cleanly and passes SQLite's
/// integrity check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_of_writes_loses_no_committed_change() {
    let echo = echo_tcp().await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = EdgeSpec::new();
    let mut edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let mut confirmed = 0;
    for i in 0..40 {
        spec = spec.resource(ResourceSpec::tcp(&format!("r{i:02}"), "home", echo));
        std::fs::write(dir.path().join("edge.toml"), spec.to_toml()).unwrap();
        edge.process.signal(SIGHUP);
        if i < 20 {
            // The first half: wait for each, so they are surely committed.
            edge.process
                .wait_event_nth("config_reloaded", i, Duration::from_secs(20));
            confirmed = i + 1;
        } else {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    stop(&mut edge, SIGKILL);
    let reported = edge.process.events("config_reloaded").len();
    assert!(reported >= confirmed);
    eprintln!("{reported} of 40 reloads reported done before kill -9");

    let names = stored_after_kill(dir.path()).await;
    assert!(
        names.len() >= reported,
        "{} reloads reported done but only {} resources stored",
        reported,
        names.len()
    );
    for i in 0..reported {
        assert!(
            names.contains(&format!("r{i:02}")),
            "r{i:02} lost: {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_share_one_postgres() {
    if !postgres_installed() {
        warren_testkit::skip("PostgreSQL is not installed (apt-get install postgresql)");
        return;
    }
    let pg = Postgres::start();
    let echo = echo_tcp().await;
    let (dir1, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut spec = EdgeSpec::new().resource(ResourceSpec::tcp("echo", "home", echo));
    spec.edge_extra = format!("database = \"{}\"\n", pg.url);
    let first = EdgeProcess::start(bin(), dir1.path(), &spec);
    let mut second = EdgeProcess::start(bin(), dir2.path(), &spec);
    // Keys live in the shared database: the first edge's token works here.
    assert!(second.token.is_none(), "only the first start creates a key");
    second.token = first.token.clone();
    // The second edge found the first one's rows and changed nothing.
    assert_eq!(audit_actions(&first), audit_actions(&second));
    assert_eq!(audit_actions(&second).len(), 2);
    let agent = first.start_agent("agent", "tcp", &[&format!("{echo}/tcp")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while second
        .admin_get("/api/v1/agents")
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "agent not visible from the other edge"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!std::path::Path::new(&dir1.path().join("data/warren.db")).exists());

    // A resource made through one edge's API serves on the other within
    // a second or so (it polls the shared config_version every second),
    // and leaves it when deleted there.
    let second_agent = second.start_agent("agent2", "tcp", &[&format!("{echo}/tcp")]);
    let body = format!(
        r#"{{"name":"shared","type":"tcp","listen":"127.0.0.1:0","targets":[{{"site":"home","address":"{echo}"}}]}}"#
    );
    let token = first.token.as_deref();
    let (status, created) = first.admin_request("POST", "/api/v1/resources", Some(&body), token);
    assert_eq!(status, 201, "{created}");
    // How soon is printed, not asserted (the poll's deadline is generous).
    let started = std::time::Instant::now();
    let addr = second.resource_addr("shared");
    eprintln!("the other edge listened after {:?}", started.elapsed());
    assert!(common::echo_ok(addr, b"via the other edge").await.is_ok());
    let (status, _) = first.admin_request("DELETE", "/api/v1/resources/shared", None, token);
    assert_eq!(status, 204);
    let started = std::time::Instant::now();
    while !common::port_closed(addr) {
        assert!(
            started.elapsed() < warren_testkit::EVENT_TIMEOUT,
            "still listening after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("the other edge closed it after {:?}", started.elapsed());
    drop(agent);
    drop(second_agent);
}

/// The same through the REST API: resources created one after another
/// while the edge is killed. Every one the API confirmed (201) is in the
/// database after the kill, which passes the integrity check, and is
/// served again after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_of_api_writes_loses_no_confirmed_resource() {
    let echo = echo_tcp().await;
    let dir = tempfile::tempdir().unwrap();
    let mut edge = EdgeProcess::start(bin(), dir.path(), &EdgeSpec::new());
    let (admin, token) = (edge.admin, edge.token.clone().unwrap());
    let writer = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut confirmed = Vec::new();
        for i in 0..200 {
            let body = format!(
                r#"{{"name":"api{i:03}","type":"tcp","listen":"127.0.0.1:0","targets":[{{"site":"home","address":"{echo}"}}]}}"#
            );
            let Ok(mut s) = std::net::TcpStream::connect(admin) else {
                break;
            };
            let req = format!(
                "POST /api/v1/resources HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if s.write_all(req.as_bytes()).is_err() {
                break;
            }
            let mut resp = String::new();
            let _ = s.read_to_string(&mut resp);
            if resp.starts_with("HTTP/1.1 201") {
                confirmed.push(format!("api{i:03}"));
            } else {
                break;
            }
        }
        confirmed
    });
    // Kill once a good number are through, while the writer keeps going.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while edge.process.events("listening").len() < 25 {
        assert!(std::time::Instant::now() < deadline, "writes too slow");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop(&mut edge, SIGKILL);
    let confirmed = writer.join().unwrap();
    eprintln!("{} API writes confirmed before kill -9", confirmed.len());
    assert!(
        confirmed.len() >= 20 && confirmed.len() < 200,
        "{}",
        confirmed.len()
    );

    let stored = stored_after_kill(dir.path()).await;
    for name in &confirmed {
        assert!(stored.contains(name), "{name} confirmed but lost");
    }

    let edge = EdgeProcess::start_existing(bin(), dir.path());
    let served = edge.admin_get("/api/v1/resources");
    for name in &confirmed {
        assert!(
            served
                .as_array()
                .unwrap()
                .iter()
                .any(|r| &r["name"] == name),
            "{name} not served after the restart"
        );
    }
}

/// Admission reads the catalog, never the database: with the shared
/// PostgreSQL stopped, a restarted agent of an API-made site (whose secret
/// lives only in the store) and one of a file site are admitted again.
/// Before the catalog, the API site's agent was refused as "unknown site id
/// or wrong secret" the moment the database was unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_admitted_while_the_database_is_down() {
    if !postgres_installed() {
        warren_testkit::skip("PostgreSQL is not installed (apt-get install postgresql)");
        return;
    }
    let pg = Postgres::start();
    let echo = echo_tcp().await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = EdgeSpec::new().resource(ResourceSpec::tcp("echo", "home", echo));
    spec.edge_extra = format!("database = \"{}\"\n", pg.url);
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let (status, created) = edge.admin_request(
        "POST",
        "/api/v1/sites",
        Some(r#"{"id":"lab"}"#),
        edge.token.as_deref(),
    );
    assert_eq!(status, 201, "{created}");
    let lab_secret = created["secret"].as_str().unwrap().to_owned();
    let allow = format!("{echo}/tcp");
    let lab_args = edge.site_args("lab", &lab_secret, "tcp", &[&allow]);
    let lab = warren_testkit::Process::spawn("lab", bin(), &lab_args, dir.path());
    lab.wait_event("edge_connected");
    drop(lab);

    drop(pg); // PostgreSQL stops (fast shutdown); the edge keeps running.

    let connected = |site: &str| {
        edge.process
            .events("agent_connected")
            .iter()
            .filter(|e| e["site"] == site)
            .count()
    };
    let (lab_before, home_before) = (connected("lab"), connected("home"));
    let lab = warren_testkit::Process::spawn("lab-again", bin(), &lab_args, dir.path());
    lab.wait_event("edge_connected");
    let home = edge.start_agent("home", "tcp", &[&allow]);
    let deadline = std::time::Instant::now() + warren_testkit::EVENT_TIMEOUT;
    while connected("lab") != lab_before + 1 || connected("home") != home_before + 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "lab {} -> {}, home {} -> {}",
            lab_before,
            connected("lab"),
            home_before,
            connected("home")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        edge.process
            .events("agent_refused")
            .iter()
            .all(|e| e["site"] != "lab" && e["site"] != "home"),
        "{:?}",
        edge.process.events("agent_refused")
    );
    // And traffic flows through the home agent.
    let back = common::roundtrip(edge.resource_addr("echo"), b"still here".to_vec())
        .await
        .unwrap();
    assert_eq!(back, b"still here");
    drop(home);
}
