//! A resource's own doors, through the real edge, agent, origin and curl:
//! a PIN and a password typed on the resource's page, and share links
//! (a token that becomes a cookie on first use, or a header for
//! machines). The attacks first: PIN guessing locked out per door, a pass
//! for one resource shown to another, a pass outliving its PIN, a revoked
//! or expired link, the link token kept from the origin.

mod common;
mod web;

use serde_json::{json, Value};
use std::time::Duration;
use warren_testkit::{http_backend, EdgeProcess, ResourceSpec};
use web::browser::{field, Browser, Got};

const HTML: [&str; 2] = ["-H", "Accept: text/html"];

/// Opens `host`'s door with `secret` (a PIN or password) from its page.
async fn open(b: &Browser, host: &str, kind: &str, secret: &str) -> Got {
    let locked = b.get(&b.url(host, "/page"), &HTML).await;
    assert_eq!(locked.status, 302, "{}", locked.body);
    let door = locked.header("location").unwrap().to_owned();
    assert!(door.starts_with("/.warren/door?rd="), "{door}");
    let page = b.get(&b.url(host, &door), &HTML).await;
    assert_eq!(page.status, 200, "{}", page.body);
    b.get(
        &b.url(host, "/.warren/door"),
        &[
            "--data-urlencode",
            &format!("csrf={}", field(&page.body, "csrf")),
            "--data-urlencode",
            &format!("rd={}", field(&page.body, "rd")),
            "--data-urlencode",
            &format!("kind={kind}"),
            "--data-urlencode",
            &format!("secret={secret}"),
        ],
    )
    .await
}

/// `warren ARGS... --api ADMIN` with the edge's token: its output.
fn cli(edge: &EdgeProcess, args: &[&str]) -> String {
    let out = std::process::Command::new(common::bin())
        .args(args)
        .args(["--api", &format!("http://{}", edge.admin)])
        .env("WARREN_TOKEN", edge.token.as_deref().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "warren {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn api(edge: &EdgeProcess, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    edge.admin_request(
        method,
        path,
        body.map(|b| b.to_string()).as_deref(),
        edge.token.as_deref(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_passwords_and_share_links_open_only_their_resource() {
    let live = http_backend("live").await;
    let dir = tempfile::tempdir().unwrap();
    let spec = web::web_spec(
        vec![
            ResourceSpec::http("app", "api.test", "home", live.addr)
                .with("auth = [\"pin\", \"link\"]"),
            ResourceSpec::http("docs", "app.test", "home", live.addr).with("auth = [\"password\"]"),
        ],
        dir.path(),
    );
    std::fs::write(dir.path().join("edge.toml"), spec.to_toml()).unwrap();
    let edge = EdgeProcess::start_existing(common::bin(), dir.path());
    let _agent = edge.start_agent("agent", "tcp", &[&format!("{}/tcp", live.addr)]);
    let port = edge.https.unwrap().port();
    let ca = dir.path().join("cert.pem");
    // A policy is loaded (default deny): only the doors let anyone in.
    let policy = "[[grants]]\nsrc = [\"someone@corp.com\"]\ndst = [\"docs\"]\n";
    let (status, body) = api(
        &edge,
        "PUT",
        "/api/v1/policy",
        Some(json!({ "text": policy })),
    );
    assert_eq!(status, 200, "{body}");

    let (status, body) = api(
        &edge,
        "PUT",
        "/api/v1/resources/app/pin",
        Some(json!({ "pin": "12a4" })),
    );
    assert_eq!(status, 422, "{body}");
    let (status, body) = api(
        &edge,
        "PUT",
        "/api/v1/resources/app/pin",
        Some(json!({ "pin": "482193" })),
    );
    assert_eq!(status, 204, "{body}");
    let (status, _) = api(
        &edge,
        "PUT",
        "/api/v1/resources/docs/password",
        Some(json!({ "password": "a door's long password" })),
    );
    assert_eq!(status, 204);

    // A script is told what it lacks; a browser goes to the door's page.
    let anon = Browser::new(dir.path(), "anon", ca.clone(), port);
    assert_eq!(anon.get(&anon.url("api.test", "/"), &[]).await.status, 401);

    // The right PIN opens it; the origin sees no identity and no cookie.
    let visitor = Browser::new(dir.path(), "visitor", ca.clone(), port);
    let wrong = open(&visitor, "api.test", "pin", "000000").await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(wrong.body.contains("Wrong PIN"));
    let opened = open(&visitor, "api.test", "pin", "482193").await;
    assert_eq!(opened.status, 303, "{}", opened.body);
    assert_eq!(opened.header("location"), Some("/page"));
    let inside = visitor
        .get(
            &visitor.url("api.test", "/page"),
            &["-H", "Remote-User: root@corp.com"],
        )
        .await;
    assert_eq!(inside.status, 200, "{}", inside.body);
    let origin: Value = serde_json::from_str(&inside.body).unwrap();
    assert!(origin["headers"].get("remote-user").is_none(), "{origin}");
    assert!(
        !origin["headers"].to_string().contains("warren_"),
        "{origin}"
    );

    // The pass is that resource's only: shown to another host it is nothing.
    let jar = std::fs::read_to_string(&visitor.jar).unwrap();
    let pass = jar
        .lines()
        .find(|l| l.contains("__Host-warren_pass"))
        .and_then(|l| l.split('\t').nth(6))
        .unwrap()
        .to_owned();
    let elsewhere = anon
        .get(
            &anon.url("app.test", "/"),
            &["-H", &format!("Cookie: __Host-warren_pass={pass}")],
        )
        .await;
    assert_eq!(elsewhere.status, 401, "a pass opened another resource");

    // PIN guessing: five wrong PINs lock the door (for every source), and
    // the right PIN does not get through the lock either; the pass already
    // given keeps working.
    let guesser = Browser::new(dir.path(), "guesser", ca.clone(), port);
    let mut statuses = Vec::new();
    for guess in ["111111", "222222", "333333", "444444", "555555", "666666"] {
        statuses.push(open(&guesser, "api.test", "pin", guess).await.status);
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert_eq!(statuses[5], 429, "{statuses:?}");
    assert_eq!(
        open(&guesser, "api.test", "pin", "482193").await.status,
        429
    );
    assert_eq!(
        visitor
            .get(&visitor.url("api.test", "/page"), &[])
            .await
            .status,
        200
    );

    // A new PIN (set from the command line, read from a file) ends the
    // passes the old one gave.
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, "7391\n").unwrap();
    let said = cli(
        &edge,
        &[
            "resource",
            "pin",
            "app",
            "--file",
            pin_file.to_str().unwrap(),
        ],
    );
    assert!(said.contains("pin is set"), "{said}");
    let after = visitor.get(&visitor.url("api.test", "/page"), &HTML).await;
    assert_eq!(after.status, 302, "a pass outlived its PIN");

    // The password door of the other resource.
    let reader = Browser::new(dir.path(), "reader", ca.clone(), port);
    let opened = open(&reader, "app.test", "password", "a door's long password").await;
    assert_eq!(opened.status, 303, "{}", opened.body);
    assert_eq!(
        reader
            .get(&reader.url("app.test", "/page"), &[])
            .await
            .status,
        200
    );
    // A PIN form posted to a resource that takes none is refused.
    let stranger = Browser::new(dir.path(), "stranger", ca.clone(), port);
    let refused = open(&stranger, "app.test", "pin", "7391").await;
    assert_eq!(refused.status, 401, "{}", refused.body);

    // Share links: the token becomes a cookie and leaves the URL.
    let (status, link) = api(
        &edge,
        "POST",
        "/api/v1/resources/app/links",
        Some(json!({ "expires_in": "1h", "note": "for the auditors" })),
    );
    assert_eq!(status, 201, "{link}");
    let url = link["url"].as_str().unwrap().to_owned();
    let token = link["token"].as_str().unwrap().to_owned();
    let friend = Browser::new(dir.path(), "friend", ca.clone(), port);
    let first = friend.get(&url, &HTML).await;
    assert_eq!(first.status, 303, "{}", first.body);
    assert_eq!(first.header("location"), Some("/"));
    let page = friend.get(&friend.url("api.test", "/"), &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    // A machine sends it as a header; the origin never sees it.
    let machine = Browser::new(dir.path(), "machine", ca.clone(), port);
    let got = machine
        .get(
            &machine.url("api.test", "/x"),
            &["-H", &format!("Warren-Link: {token}")],
        )
        .await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert!(!got.body.contains(&token), "the origin saw the token");
    // A made-up token, and a link of this resource on another: refused.
    let bogus = format!("{}?warren_link=wsl_madeup", machine.url("api.test", "/"));
    assert_eq!(machine.get(&bogus, &HTML).await.status, 403);
    let other = format!("{}?warren_link={token}", machine.url("app.test", "/"));
    assert_eq!(machine.get(&other, &[]).await.status, 401);

    // Revoked: the cookie it gave and the header stop opening at once.
    let id = link["id"].as_str().unwrap();
    let said = cli(&edge, &["resource", "unshare", id]);
    assert!(said.contains("revoked"), "{said}");
    let said = cli(&edge, &["resource", "links", "app"]);
    assert!(
        said.lines()
            .any(|l| l.starts_with(id) && l.contains("revoked")),
        "{said}"
    );
    assert_eq!(
        friend.get(&friend.url("api.test", "/"), &[]).await.status,
        401
    );
    let got = machine
        .get(
            &machine.url("api.test", "/x"),
            &["-H", &format!("Warren-Link: {token}")],
        )
        .await;
    assert_eq!(got.status, 401);
    assert_eq!(friend.get(&url, &HTML).await.status, 403);

    // An expiring link (made from the command line) dies on time.
    let said = cli(&edge, &["resource", "share", "app", "--expires", "3s"]);
    let short = said
        .lines()
        .find_map(|l| l.trim().strip_prefix("https://"))
        .map(|u| format!("https://{u}"))
        .unwrap_or_else(|| panic!("no URL in {said}"));
    let late = Browser::new(dir.path(), "late", ca.clone(), port);
    let fresh = Browser::new(dir.path(), "fresh", ca.clone(), port);
    assert_eq!(fresh.get(&short, &HTML).await.status, 303, "live at first");
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(late.get(&short, &HTML).await.status, 403);
    let (_, listed) = api(&edge, "GET", "/api/v1/resources/app/links", None);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(
        !listed.to_string().contains("wsl_"),
        "a token was listed: {listed}"
    );

    // Every decision is in the audit trail (written within a second): the
    // PIN's passes and the link's, the anonymous refusals.
    let mut decisions = Value::Null;
    for _ in 0..50 {
        let (_, d) = api(
            &edge,
            "GET",
            "/api/v1/decisions?since_ms=0&limit=1000",
            None,
        );
        if d.to_string().contains("\"link:") {
            decisions = d;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = decisions.as_array().expect("decisions with a link in them");
    let has = |principal: &str, decision: &str, reason: &str, method: &str| {
        rows.iter().any(|r| {
            r["resource"] == "app"
                && r["principal"] == principal
                && r["decision"] == decision
                && r["reason"] == reason
                && r["method"] == method
                && r["client"] == "127.0.0.1"
        })
    };
    assert!(has("pin", "allow", "door", "pin"), "{decisions}");
    assert!(has("anonymous", "deny", "no_grant", "none"), "{decisions}");
    let link_id = link["id"].as_str().unwrap();
    assert!(
        has(&format!("link:{link_id}"), "allow", "door", "link"),
        "{decisions}"
    );
    // And exported as JSON lines, filtered.
    let (status, text) = {
        let mut s = std::net::TcpStream::connect(edge.admin).unwrap();
        use std::io::{Read, Write};
        write!(
            s,
            "GET /api/v1/decisions?since_ms=0&decision=deny&format=jsonl HTTP/1.0\r\nAuthorization: Bearer {}\r\n\r\n",
            edge.token.as_deref().unwrap()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_owned(), body.to_owned())
    };
    assert!(status.contains("200"), "{status}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| l["decision"] == "deny"), "{text}");
}
