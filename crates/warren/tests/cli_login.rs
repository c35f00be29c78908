//! `warren login`, the real binary against the real edge: a device code
//! confirmed in a (curl) browser signed in on the sign-in host, tokens kept
//! in a 0600 file, `--status` refreshing them, and the session's end
//! (logout everywhere) ending the command line's too. The attacks first: a
//! guessed device code, a code confirmed without the CSRF token, a refused
//! code.

mod common;
mod web;

use common::bin;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use web::browser::{alice_edge, login_command, start_login, AliceEdge, Browser, AUTH};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warren_login_is_a_code_confirmed_in_the_browser() {
    let AliceEdge {
        dir,
        edge,
        port,
        _live,
        _agent,
    } = alice_edge("").await;
    let ca = dir.path().join("cert.pem");
    let file = dir.path().join("cli/login.json");
    let alice = Browser::new(dir.path(), "alice", ca.clone(), port);
    let (page, _) = alice
        .sign_in("/", "alice@corp.com", "correct horse battery")
        .await;
    assert_eq!(page.status, 200, "{}", page.body);

    // A browser not signed in is sent to sign in first, then back here.
    let stranger = Browser::new(dir.path(), "stranger", ca.clone(), port);
    let got = stranger
        .get(&stranger.url(AUTH, "/device?code=BCDF-GHJK"), &[])
        .await;
    assert_eq!(got.status, 302);
    assert!(
        got.header("location").unwrap().starts_with("/login?rd="),
        "{:?}",
        got.header("location")
    );

    // Refused in the browser: the command says so and saves nothing.
    let (child, code) = start_login(port, &ca, &file).await;
    assert_eq!(alice.confirm_device(&code, "deny").await, 200);
    let out = child.wait_with_output().await.unwrap();
    assert!(!out.status.success(), "a refused sign-in succeeded");
    assert!(!file.exists());

    // A confirmation without the CSRF token does nothing; a guessed device
    // code gets nothing.
    let (child, code) = start_login(port, &ca, &file).await;
    let forged = alice
        .get(
            &alice.url(AUTH, "/device"),
            &[
                "--data",
                &format!("csrf=0123456789abcdef0123456789abcdef&code={code}&action=approve"),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);
    let guess = stranger
        .get(
            &stranger.url(AUTH, "/cli/token"),
            &["--data", "grant_type=device_code&device_code=00ff"],
        )
        .await;
    assert_eq!(guess.status, 400);
    assert!(guess.body.contains("expired_token"), "{}", guess.body);

    // Confirmed: the command signs in and keeps the session, 0600.
    assert_eq!(alice.confirm_device(&code, "approve").await, 200);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("signed in as alice@corp.com"));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let first_access = saved["access_token"].as_str().unwrap().to_owned();

    // The commands that follow: --status, and a refreshed access token.
    let status = |refresh: bool| {
        let mut cmd = login_command(port, &ca, &file);
        cmd.arg("--status");
        if refresh {
            cmd.arg("--refresh");
        }
        cmd.output()
    };
    let out = status(false).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("signed in as alice@corp.com"));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let out = status(true).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_ne!(saved["access_token"], first_access.as_str(), "refreshed");

    // Logout everywhere ends the command line's session too.
    let out = std::process::Command::new(bin())
        .args(["user", "logout", "alice@corp.com", "--api"])
        .arg(format!("http://{}", edge.admin))
        .env("WARREN_TOKEN", edge.token.as_deref().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = status(true).await.unwrap();
    assert!(!out.status.success(), "a refresh after logout everywhere");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("session has ended"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
