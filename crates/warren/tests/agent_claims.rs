//! README claims about the agent that a real `warren site` must keep:
//! `--allow-any` warns loudly (Security defaults).

mod common;

use common::{bin, echo_ok, edge_with_echo, EchoEdge};
use serde_json::Value;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warren_testkit::Process;

fn allow_any_warning(line: &Value) -> bool {
    line["level"] == "WARN"
        && line["message"]
            .as_str()
            .is_some_and(|m| m.contains("--allow-any") && m.contains("anywhere"))
}

/// The agent's text log (the default format, as a person reads it) up to
/// its `agent starting` line; the agent is then stopped.
fn text_log_until_started(args: &[String], env: &[(&str, &str)], cwd: &std::path::Path) -> String {
    let mut child = Command::new(bin())
        .args(args)
        .envs(env.iter().copied())
        .env_remove("WARREN_LOG")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = String::new();
    while !log.contains("agent starting") {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => log += &(line + "\n"),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                assert!(Instant::now() < deadline, "the agent did not start:\n{log}")
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the agent exited before starting:\n{log}")
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_any_warns_loudly_and_a_list_does_not() {
    let EchoEdge { edge, echo, dir } = edge_with_echo().await;
    let mut args = edge.site_args("home", "S3CRET-for-tests", "tcp", &[]);

    // A list: no such warning.
    let listed = edge.start_agent("listed", "tcp", &[&format!("{echo}/tcp")]);
    listed.wait_event("agent_starting");
    assert!(
        !listed
            .logs()
            .iter()
            .any(|l| l.to_string().contains("--allow-any")),
        "an agent with a list warned about --allow-any"
    );
    drop(listed);
    edge.process.wait_event("agent_disconnected");

    // --allow-any: a warning, before the agent starts, and it is meant.
    args.push("--allow-any".into());
    let agent = Process::spawn("any", bin(), &args, dir.path());
    agent.wait_event("edge_connected");
    let logs = agent.logs();
    let warned = logs.iter().position(allow_any_warning);
    let started = logs.iter().position(|l| l["event"] == "agent_starting");
    assert!(
        matches!((warned, started), (Some(w), Some(s)) if w < s),
        "no WARN about --allow-any before agent_starting: {logs:#?}"
    );
    assert_eq!(logs[started.unwrap()]["allow"], "any (--allow-any)");
    // The agent connects to the echo, which no --allow names.
    edge.process
        .wait_event_nth("agent_connected", 1, Duration::from_secs(20));
    echo_ok(edge.resource_addr("echo"), b"open door")
        .await
        .unwrap();
    drop(agent);

    // In the default text log too, also when set through WARREN_ALLOW_ANY.
    args.pop();
    args.extend(["--log-format".into(), "text".into()]);
    for env in [vec![], vec![("WARREN_ALLOW_ANY", "true")]] {
        let mut args = args.clone();
        if env.is_empty() {
            args.push("--allow-any".into());
        }
        let log = text_log_until_started(&args, &env, dir.path());
        let warning = log
            .lines()
            .find(|l| l.contains("--allow-any: this agent will connect anywhere"))
            .unwrap_or_else(|| panic!("{env:?}: no --allow-any warning:\n{log}"));
        assert!(warning.contains("WARN"), "{warning}");
    }
}
