//! Email notifications through a real SMTP server (Debian's aiosmtpd) that
//! requires STARTTLS: an agent connecting and leaving sends mail, and the
//! site going offline is mailed once its debounce has run out.

mod common;

use common::bin;
use std::time::Duration;
use warren_testkit::{echo_tcp, smtp_server_installed, EdgeProcess, EdgeSpec, SmtpServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_offline_is_mailed_over_starttls_after_the_debounce() {
    if !smtp_server_installed() {
        warren_testkit::skip("python3-aiosmtpd is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path());
    let echo = echo_tcp().await;
    let mut toml = EdgeSpec::new().to_toml();
    toml += &format!(
        "[notify]\ndebounce = \"1s\"\n\n[notify.email]\nsmtp = \"smtp://{}\"\nfrom = \"warren@edge.test\"\nto = [\"ops@example.test\", \"oncall@example.test\"]\nca = \"{}\"\n",
        smtp.addr,
        smtp.ca.display()
    );
    std::fs::write(dir.path().join("edge.toml"), toml).unwrap();
    let edge = EdgeProcess::start_existing(bin(), dir.path());
    let mut agent = edge.start_agent("agent", "tcp", &[&format!("{echo}/tcp")]);

    let online = smtp.wait_for("site_online site/home", Duration::from_secs(15));
    assert!(online.contains("From: warren@edge.test"), "{online}");
    assert!(online.contains("ops@example.test") && online.contains("oncall@example.test"));
    smtp.wait_for("agent_connected site/home", Duration::from_secs(15));

    agent.signal(9);
    agent
        .wait_exit(Duration::from_secs(5))
        .expect("the agent dies on SIGKILL");
    smtp.wait_for("agent_disconnected site/home", Duration::from_secs(20));
    let offline = smtp.wait_for("site_offline site/home", Duration::from_secs(20));
    assert!(offline.contains("\"after_s\": 1.0"), "{offline}");
    // Exactly one offline mail.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let offline_mails = smtp
        .messages()
        .iter()
        .filter(|m| m.contains("site_offline site/home"))
        .count();
    assert_eq!(offline_mails, 1);
}

#[test]
fn bad_email_settings_are_refused_at_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut toml = EdgeSpec::new().to_toml();
    toml += "[notify.email]\nsmtp = \"http://relay\"\nfrom = \"not an address\"\nto = []\nca = \"missing.pem\"\n";
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, toml).unwrap();
    let out = std::process::Command::new(bin())
        .args(["edge", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "notify.email.smtp",
        "notify.email.from",
        "notify.email.to",
        "notify.email.ca",
    ] {
        assert!(err.contains(key), "{key} not named: {err}");
    }
}
