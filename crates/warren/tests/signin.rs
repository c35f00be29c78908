//! People signing in, through the real edge, agent, origin and curl: the
//! sign-in host's form, the one-use hand-off to the resource's host, the
//! session cookie decided inside the edge, the policy refusing a user it
//! does not grant, identity to the origin (spoofed copies stripped), and a
//! disabled user's session dead within 5 s. The attacks come first where
//! they belong: open redirects, a replayed hand-off, a forged or foreign
//! cookie, login without the CSRF token, brute force.

mod common;
mod web;

use web::browser::{alice_edge, field, urlencode, user_add, AliceEdge, Browser, Got, AUTH};

use common::bin;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use warren_testkit::{http_backend, EdgeProcess, ResourceSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_reaches_what_the_policy_grants_and_is_cut_off_when_disabled() {
    let live = http_backend("live").await;
    let dir = tempfile::tempdir().unwrap();
    let spec = web::web_spec(
        vec![
            ResourceSpec::http("app", "api.test", "home", live.addr).with(
                "rules = [{ action = \"bypass\", path = \"/health\", method = [\"GET\"] }, \
                 { action = \"deny\", path = \"/admin\" }]\nauth = [\"login\", \"basic\"]",
            ),
            ResourceSpec::http("other", "other.app.test", "home", live.addr),
        ],
        dir.path(),
    );
    let toml = format!("{}\n[auth]\nhost = \"{AUTH}\"\n", spec.to_toml());
    std::fs::write(dir.path().join("edge.toml"), toml).unwrap();
    let edge = EdgeProcess::start_existing(bin(), dir.path());
    let _agent = edge.start_agent("agent", "tcp", &[&format!("{}/tcp", live.addr)]);
    let port = edge.https.unwrap().port();
    let ca = dir.path().join("cert.pem");
    let policy = "[[grants]]\nsrc = [\"alice@corp.com\"]\ndst = [\"app\"]\n\n\
                  [[tests]]\nsrc = \"alice@corp.com\"\naccept = [\"app:443\"]\ndeny = [\"other:443\"]\n";
    let (status, body) = edge.admin_request(
        "PUT",
        "/api/v1/policy",
        Some(&json!({ "text": policy }).to_string()),
        edge.token.as_deref(),
    );
    assert_eq!(status, 200, "{body}");
    user_add(&edge, dir.path(), "alice@corp.com", "correct horse battery");
    user_add(&edge, dir.path(), "bob@corp.com", "bob's long password");

    let alice = Browser::new(dir.path(), "alice", ca.clone(), port);

    // A script gets a 401, never a redirect to a login page.
    let script = alice.get(&alice.url("api.test", "/"), &[]).await;
    assert_eq!(script.status, 401, "{}", script.body);
    assert!(script.header("www-authenticate").is_some());

    // Open redirects: the sign-in host sends nobody anywhere but a resource
    // of this edge, over https, on its port.
    for rd in [
        "https://evil.example/".to_owned(),
        format!("https://api.test.evil.example:{port}/"),
        format!("http://api.test:{port}/"),
        format!("https://user@api.test:{port}/"),
        "https://api.test:1/".to_owned(),
        "//evil.example/".to_owned(),
        "javascript:alert(1)".to_owned(),
    ] {
        let url = format!("{}?rd={}", alice.url(AUTH, "/login"), urlencode(&rd));
        let got = alice.get(&url, &[]).await;
        assert_eq!(got.status, 400, "rd={rd}: {}", got.body);
        assert!(got.header("location").is_none(), "rd={rd}");
    }

    // Alice signs in: three redirects and she is there, the origin seeing
    // who she is and nothing of the edge's cookies or her forged headers.
    let started = Instant::now();
    let (landed, redirects) = alice
        .sign_in("/page?x=1", "alice@corp.com", "correct horse battery")
        .await;
    eprintln!("sign-in: {redirects} redirects, {:?}", started.elapsed());
    assert_eq!(landed.status, 200, "{}", landed.body);
    let seen = alice
        .get(
            &alice.url("api.test", "/page"),
            &[
                "-H",
                "Remote-User: root@corp.com",
                "-H",
                "Remote-Groups: admins",
                "-H",
                "Warren-Jwt-Assertion: forged",
                "-H",
                "Remote_User: root@corp.com",
            ],
        )
        .await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    let origin: Value = serde_json::from_str(&seen.body).unwrap();
    let h = &origin["headers"];
    assert_eq!(h["remote-user"], json!(["alice@corp.com"]), "{origin}");
    assert_eq!(h["remote-email"], json!(["alice@corp.com"]), "{origin}");
    assert_eq!(h["remote-groups"], json!([""]), "{origin}");
    assert!(
        !h.to_string().contains("warren_"),
        "the origin saw an edge cookie: {origin}"
    );
    assert!(
        h.get("remote_user").is_none(),
        "an underscore spelling got through: {origin}"
    );
    // The signed assertion verifies with the key the sign-in host publishes.
    let jwt = h["warren-jwt-assertion"][0].as_str().unwrap();
    assert_eq!(
        h["warren-jwt-assertion"].as_array().unwrap().len(),
        1,
        "the forged copy was kept"
    );
    let jwks = alice
        .get(&alice.url(AUTH, "/.well-known/warren/jwks.json"), &[])
        .await;
    assert_eq!(jwks.status, 200);
    let claims = verify_jwt(jwt, &serde_json::from_str(&jwks.body).unwrap());
    assert_eq!(claims["aud"], "app");
    assert_eq!(claims["email"], "alice@corp.com");
    assert_eq!(claims["iss"], format!("https://{AUTH}:{port}"));

    // Her cookie for api.test is no key to other.app.test.
    let jar = std::fs::read_to_string(&alice.jar).unwrap();
    let session = jar
        .lines()
        .find(|l| l.contains("__Host-warren_session"))
        .and_then(|l| l.split('\t').nth(6))
        .unwrap()
        .to_owned();
    let stranger = Browser::new(dir.path(), "stranger", ca.clone(), port);
    let foreign = stranger
        .get(
            &stranger.url("other.app.test", "/"),
            &["-H", &format!("Cookie: __Host-warren_session={session}")],
        )
        .await;
    assert_eq!(foreign.status, 401, "another host's cookie was accepted");
    // A forged one (signature changed) is nobody either.
    let forged = format!("{}x", &session[..session.len() - 1]);
    let got = stranger
        .get(
            &stranger.url("api.test", "/"),
            &["-H", &format!("Cookie: __Host-warren_session={forged}")],
        )
        .await;
    assert_eq!(got.status, 401, "a forged cookie was accepted");

    // A hand-off is good once.
    let html = ["-H", "Accept: text/html"];
    let first = stranger.get(&stranger.url("api.test", "/"), &html).await;
    let login = first.header("location").unwrap().to_owned();
    let form = alice.get(&login, &html).await;
    assert_eq!(
        form.status, 303,
        "already signed in there: straight to the hand-off"
    );
    let handoff = form.header("location").unwrap().to_owned();
    assert_eq!(stranger.get(&handoff, &[]).await.status, 303);
    assert_eq!(
        stranger.get(&handoff, &[]).await.status,
        403,
        "a replayed hand-off"
    );

    // A hand-off link works only in the browser that started the sign-in:
    // Bob cannot sign someone else's browser in as himself (login CSRF).
    let mallory = Browser::new(dir.path(), "mallory", ca.clone(), port);
    let start = mallory.get(&mallory.url("api.test", "/"), &html).await;
    let form = mallory.get(start.header("location").unwrap(), &html).await;
    let posted = mallory
        .get(
            &mallory.url(AUTH, "/login"),
            &[
                "--data-urlencode",
                &format!("csrf={}", field(&form.body, "csrf")),
                "--data-urlencode",
                &format!("rd={}", field(&form.body, "rd")),
                "--data-urlencode",
                &format!("st={}", field(&form.body, "st")),
                "--data-urlencode",
                "email=bob@corp.com",
                "--data-urlencode",
                "password=bob's long password",
            ],
        )
        .await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let victim = Browser::new(dir.path(), "victim", ca.clone(), port);
    let forwarded = victim.get(posted.header("location").unwrap(), &[]).await;
    assert_eq!(
        forwarded.status, 403,
        "a hand-off redeemed by another browser"
    );
    // A login page reached without starting from the resource sends the
    // browser to the resource first (which starts it), never in a loop.
    let direct = victim
        .get(
            &victim.url(
                AUTH,
                &format!("/login?rd={}", urlencode(&victim.url("api.test", "/"))),
            ),
            &[],
        )
        .await;
    assert_eq!(direct.status, 302);
    assert_eq!(
        direct.header("location").unwrap(),
        victim.url("api.test", "/")
    );

    // Bob signs in fine, and the policy does not let him in.
    let bob = Browser::new(dir.path(), "bob", ca.clone(), port);
    let (bob_got, _) = bob
        .sign_in("/", "bob@corp.com", "bob's long password")
        .await;
    assert_eq!(bob_got.status, 403, "{}", bob_got.body);
    let denied = edge
        .process
        .wait_log("bob denied", warren_testkit::EVENT_TIMEOUT, |v| {
            v["event"] == "access_denied" && v["principal"] == "bob@corp.com"
        });
    assert_eq!(denied["resource"], "app");

    // A wrong password, and the login form without its CSRF cookie.
    let eve = Browser::new(dir.path(), "eve", ca.clone(), port);
    let (wrong, _) = eve.sign_in("/", "alice@corp.com", "wrong password").await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(wrong.body.contains("Wrong email or password"));
    let rd = urlencode(&alice.url("api.test", "/"));
    let csrfless = Browser::new(dir.path(), "csrfless", ca.clone(), port)
        .get(
            &alice.url(AUTH, "/login"),
            &["--data", &format!("csrf=0123456789abcdef0123456789abcdef&rd={rd}&email=alice%40corp.com&password=correct+horse+battery")],
        )
        .await;
    assert_eq!(csrfless.status, 403, "a login without the CSRF cookie");

    // Rules come before sign-in: /health is open to anyone (and still gets
    // no identity a client made up); /admin is refused even to Alice.
    let anyone = Browser::new(dir.path(), "anyone", ca.clone(), port);
    let health = anyone
        .get(
            &stranger.url("api.test", "/health"),
            &["-H", "Remote-User: root@corp.com"],
        )
        .await;
    assert_eq!(health.status, 200, "{}", health.body);
    let seen: Value = serde_json::from_str(&health.body).unwrap();
    assert!(seen["headers"].get("remote-user").is_none(), "{seen}");
    // Basic credentials sent to a bypassed path of a resource that takes
    // Basic are still the edge's: the origin does not get them.
    let health = anyone
        .get(
            &anyone.url("api.test", "/health"),
            &["-u", "alice@corp.com:correct horse battery"],
        )
        .await;
    assert_eq!(health.status, 200);
    let seen: Value = serde_json::from_str(&health.body).unwrap();
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    let post = anyone
        .get(&anyone.url("api.test", "/health"), &["-X", "POST"])
        .await;
    assert_eq!(post.status, 401, "the bypass is for GET only");
    let admin = alice.get(&alice.url("api.test", "/admin/x"), &[]).await;
    assert_eq!(admin.status, 403, "{}", admin.body);
    let rule_denied = edge
        .process
        .wait_log("rule denial", warren_testkit::EVENT_TIMEOUT, |v| {
            v["event"] == "access_denied" && v["reason"] == "rules[1]"
        });
    assert_eq!(rule_denied["resource"], "app");

    // HTTP Basic, for scripts, on a resource that takes it: the origin
    // gets who it is, never the credentials.
    let script = Browser::new(dir.path(), "script", ca.clone(), port);
    let basic = script
        .get(
            &script.url("api.test", "/page"),
            &["-u", "alice@corp.com:correct horse battery"],
        )
        .await;
    assert_eq!(basic.status, 200, "{}", basic.body);
    let origin: Value = serde_json::from_str(&basic.body).unwrap();
    assert_eq!(
        origin["headers"]["remote-user"],
        json!(["alice@corp.com"]),
        "{origin}"
    );
    assert!(origin["headers"].get("authorization").is_none(), "{origin}");
    let wrong = script
        .get(
            &script.url("api.test", "/page"),
            &["-u", "alice@corp.com:nope"],
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert!(
        wrong
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic"),
        "{:?}",
        wrong.headers
    );
    let bob_basic = script
        .get(
            &script.url("api.test", "/page"),
            &["-u", "bob@corp.com:bob's long password"],
        )
        .await;
    assert_eq!(
        bob_basic.status, 403,
        "Basic is a way in; the policy still decides"
    );

    // Disabled: Alice's session is dead within 5 s.
    let out = std::process::Command::new(bin())
        .args([
            "user",
            "disable",
            "alice@corp.com",
            "--api",
            &format!("http://{}", edge.admin),
        ])
        .env("WARREN_TOKEN", edge.token.as_deref().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let disabled_at = Instant::now();
    loop {
        let got = alice.get(&alice.url("api.test", "/page"), &[]).await;
        if got.status == 401 {
            break;
        }
        assert_eq!(got.status, 200);
        assert!(
            disabled_at.elapsed() < Duration::from_secs(5),
            "still in after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("disabled -> refused: {:?}", disabled_at.elapsed());
}

/// An edge with one http resource, `app` on api.test, behind sign-in
/// (`[auth]` with `auth_extra`), its agent, a policy granting Alice, and
/// Alice with her password.
/// Brute force: an account locks after its free failures, whatever the
/// source; a source is limited whatever the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_limited_per_account() {
    let AliceEdge {
        dir,
        edge,
        port,
        _live,
        _agent,
    } = alice_edge("").await;
    let b = Browser::new(dir.path(), "guesser", dir.path().join("cert.pem"), port);
    let mut statuses = Vec::new();
    for i in 0..6 {
        let (got, _) = b
            .sign_in("/", "alice@corp.com", &format!("guess {i}"))
            .await;
        statuses.push(got.status);
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 401, 429],
        "five free failures, then locked"
    );
    // Locked: even the right password is refused for now.
    let (got, _) = b
        .sign_in("/", "alice@corp.com", "correct horse battery")
        .await;
    assert_eq!(got.status, 429);
    assert!(edge.process.events("sign_in_limited").len() >= 2);
}

/// Checks an ES256 JWT against a JWKS document; its claims.
fn verify_jwt(jwt: &str, jwks: &Value) -> Value {
    use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap()
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let header: Value = serde_json::from_slice(&b64(parts[0])).unwrap();
    assert_eq!(header["alg"], "ES256");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the JWT's kid is published");
    let mut point = vec![4u8];
    point.extend(b64(key["x"].as_str().unwrap()));
    point.extend(b64(key["y"].as_str().unwrap()));
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &b64(parts[2]),
        )
        .expect("the assertion verifies");
    serde_json::from_slice(&b64(parts[1])).unwrap()
}

/// Posts a second-factor code.
async fn post_code(b: &Browser, code: &str, csrf: &str) -> Got {
    b.get(
        &b.url(AUTH, "/login/2fa"),
        &[
            "--data-urlencode",
            &format!("csrf={csrf}"),
            "--data-urlencode",
            &format!("code={code}"),
        ],
    )
    .await
}

/// With `require_2fa`, a user enrols at first sign-in (QR code, recovery
/// codes shown once); afterwards the password alone is not enough, a code
/// is good once, a recovery code is good once, and `reset-2fa` makes them
/// enrol again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_factor_is_enrolled_then_required_and_each_code_works_once() {
    let AliceEdge {
        dir,
        edge,
        port,
        _live,
        _agent,
    } = alice_edge("require_2fa = true\n").await;
    let ca = dir.path().join("cert.pem");
    let b = Browser::new(dir.path(), "alice", ca.clone(), port);

    // The password is right: the enrolment page, with a QR code and the key.
    let (page, _) = b
        .sign_in("/", "alice@corp.com", "correct horse battery")
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<svg"), "a QR code: {}", page.body);
    let start = page.body.find("<code>").unwrap() + 6;
    let secret = page.body[start..start + page.body[start..].find("</code>").unwrap()].to_owned();
    let csrf = field(&page.body, "csrf");
    let wrong = post_code(&b, "000000", &csrf).await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    // Kept: computed again later, it could be the next step's code (a
    // 30 s boundary in between), which is not a replay.
    let enrol_code = web::browser::totp_now(&secret, 0);
    let enrolled = post_code(&b, &enrol_code, &csrf).await;
    assert_eq!(enrolled.status, 200, "{}", enrolled.body);
    let codes: Vec<String> = enrolled
        .body
        .split("<li><code>")
        .skip(1)
        .map(|s| s[..s.find("</code>").unwrap()].to_owned())
        .collect();
    assert_eq!(codes.len(), 10, "{}", enrolled.body);
    let users = edge.admin_get("/api/v1/users");
    assert_eq!(users[0]["has_totp"], true, "{users}");
    assert!(
        !users.to_string().contains(&secret),
        "the secret never leaves the store"
    );

    // A second browser: password, then the code page (no enrolment now).
    let second = Browser::new(dir.path(), "alice2", ca.clone(), port);
    let (page, _) = second
        .sign_in("/", "alice@corp.com", "correct horse battery")
        .await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<svg"), "no second enrolment");
    let csrf2 = field(&page.body, "csrf");
    // The code just used to enrol is refused (good once); the next one passes.
    let replayed = post_code(&second, &enrol_code, &csrf2).await;
    assert_eq!(replayed.status, 401, "a replayed code");
    let next = post_code(&second, &web::browser::totp_now(&secret, 30), &csrf2).await;
    assert_eq!(next.status, 303, "{}", next.body);

    // A recovery code works once.
    let third = Browser::new(dir.path(), "alice3", ca.clone(), port);
    let (page, _) = third
        .sign_in("/", "alice@corp.com", "correct horse battery")
        .await;
    let csrf3 = field(&page.body, "csrf");
    let recovered = post_code(&third, &codes[0].to_uppercase(), &csrf3).await;
    assert_eq!(recovered.status, 303, "{}", recovered.body);
    let fourth = Browser::new(dir.path(), "alice4", ca.clone(), port);
    let (page, _) = fourth
        .sign_in("/", "alice@corp.com", "correct horse battery")
        .await;
    let again = post_code(&fourth, &codes[0], &field(&page.body, "csrf")).await;
    assert_eq!(again.status, 401, "a recovery code used twice");

    // Without the pending cookie, a code alone signs nobody in.
    let bare = Browser::new(dir.path(), "bare", ca.clone(), port);
    let start = bare
        .get(&bare.url("api.test", "/"), &["-H", "Accept: text/html"])
        .await;
    let form = bare.get(start.header("location").unwrap(), &[]).await;
    let lone = post_code(
        &bare,
        &web::browser::totp_now(&secret, 60),
        &field(&form.body, "csrf"),
    )
    .await;
    assert_eq!(lone.status, 403, "{}", lone.body);

    // reset-2fa: enrol again.
    let out = std::process::Command::new(bin())
        .args([
            "user",
            "reset-2fa",
            "alice@corp.com",
            "--api",
            &format!("http://{}", edge.admin),
        ])
        .env("WARREN_TOKEN", edge.token.as_deref().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fifth = Browser::new(dir.path(), "alice5", ca, port);
    let (page, _) = fifth
        .sign_in("/", "alice@corp.com", "correct horse battery")
        .await;
    assert!(
        page.body.contains("<svg"),
        "enrolment again after reset-2fa"
    );
}

/// `idle_timeout`: a session in use stays; one unused that long is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_ends_and_a_used_one_does_not() {
    let AliceEdge {
        dir,
        edge: _edge,
        port,
        _live,
        _agent,
    } = alice_edge("idle_timeout = \"4s\"\n").await;
    let b = Browser::new(dir.path(), "alice", dir.path().join("cert.pem"), port);
    let (landed, _) = b
        .sign_in("/", "alice@corp.com", "correct horse battery")
        .await;
    assert_eq!(landed.status, 200, "{}", landed.body);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        b.get(&b.url("api.test", "/"), &[]).await.status,
        200,
        "in use: kept"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        b.get(&b.url("api.test", "/"), &[]).await.status,
        401,
        "idle 5 s of 4: over"
    );
}
