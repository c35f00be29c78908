//! The store against a fresh SQLite file and a fresh PostgreSQL server
//! (Debian's, started by the test): the same scenarios on both.

use std::time::Duration;
use warren_store::{
    policy_sha256, ManagedBy, NewPolicy, ResourceRecord, Scope, Store, StoreError, TargetRecord,
    UserChange,
};
use warren_testkit::{postgres_installed, Postgres};

/// A fresh PostgreSQL, or `None` where it is not installed, after
/// `warren_testkit::skip` (counted, and a failure with `CI` set).
fn postgres() -> Option<Postgres> {
    if postgres_installed() {
        return Some(Postgres::start());
    }
    warren_testkit::skip("PostgreSQL is not installed (apt-get install postgresql)");
    None
}

const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";

fn http(name: &str, host: &str, path: Option<&str>, site: &str) -> ResourceRecord {
    ResourceRecord {
        name: name.into(),
        kind: "http".into(),
        host: Some(host.into()),
        path: path.map(Into::into),
        listen: None,
        proxy_protocol: None,
        balance: "least_active".into(),
        fail_closed: false,
        health: Some(serde_json::json!({ "path": "/status", "interval": "5s" })),
        targets: vec![TargetRecord {
            site: site.into(),
            address: "127.0.0.1:8080".into(),
        }],
        spec: None,
        managed_by: ManagedBy::Api,
        version: 0,
        created_ms: 0,
        updated_ms: 0,
    }
}

fn listener(name: &str, kind: &str, listen: &str, site: &str) -> ResourceRecord {
    ResourceRecord {
        kind: kind.into(),
        host: None,
        listen: Some(listen.into()),
        health: None,
        ..http(name, "unused", None, site)
    }
}

async fn sites_and_rotation(store: &Store) {
    assert_eq!(store.config_version().await.unwrap(), 0);
    let site = store
        .create_site(
            "test",
            "home",
            "Home",
            ManagedBy::Api,
            HASH,
            &["tag:home".into()],
        )
        .await
        .unwrap();
    assert_eq!(site.id, "home");
    assert_eq!(store.site("home").await.unwrap().tags, ["tag:home"]);
    let dup = store
        .create_site("test", "home", "Again", ManagedBy::Api, HASH, &[])
        .await
        .unwrap_err();
    assert!(
        matches!(dup, StoreError::Conflict(ref m) if m.contains("already exists")),
        "{dup}"
    );
    assert_eq!(store.list_sites().await.unwrap().len(), 1);
    assert_eq!(store.site_secrets("home").await.unwrap().len(), 1);

    // Rotation with a grace period: old and new both accepted.
    store
        .rotate_site_secret("test", "home", "new-hash-1", Duration::from_secs(3600))
        .await
        .unwrap();
    let secrets = store.site_secrets("home").await.unwrap();
    assert_eq!(secrets.len(), 2);
    assert_eq!(secrets[0].secret_hash, "new-hash-1");
    assert!(secrets[0].retired_ms.is_none());
    assert!(secrets[1].grace_until_ms.is_some());

    // Rotation with no grace: the secret it replaces stops at once.
    store
        .rotate_site_secret("test", "home", "new-hash-2", Duration::ZERO)
        .await
        .unwrap();
    let hashes: Vec<String> = store
        .site_secrets("home")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.secret_hash)
        .collect();
    // Every older secret stops too: HASH, rotated out first with an hour of
    // grace, does not outlive a rotation that gave none.
    assert_eq!(
        hashes,
        ["new-hash-2"],
        "no grace: only the newest secret works"
    );

    // A rotation caps the grace of every older secret at its own: an hour
    // given first, then 10 s, leaves both old secrets 10 s.
    store
        .rotate_site_secret("test", "home", "new-hash-3", Duration::from_secs(3600))
        .await
        .unwrap();
    store
        .rotate_site_secret("test", "home", "new-hash-4", Duration::from_secs(10))
        .await
        .unwrap();
    let secrets = store.site_secrets("home").await.unwrap();
    let names: Vec<&str> = secrets.iter().map(|s| s.secret_hash.as_str()).collect();
    assert_eq!(names, ["new-hash-4", "new-hash-3", "new-hash-2"]);
    let ends: Vec<i64> = secrets[1..]
        .iter()
        .map(|s| s.grace_until_ms.unwrap())
        .collect();
    assert_eq!(ends[0], ends[1], "one end for every old secret: {ends:?}");
    assert!(
        ends[0] <= warren_store::now_ms() + 10_000,
        "the hour was cut to 10 s: {ends:?}"
    );
    assert!(matches!(
        store
            .rotate_site_secret("test", "nope", "h", Duration::ZERO)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.config_version().await.unwrap(), 5);
}

async fn resources_and_conflicts(store: &Store) {
    store
        .create_site("test", "home", "Home", ManagedBy::File, HASH, &[])
        .await
        .unwrap();
    let v0 = store.config_version().await.unwrap();
    let blog = store
        .create_resource(
            "key1",
            &http("blog", "blog.test", None, "home"),
            ManagedBy::Api,
        )
        .await
        .unwrap();
    assert_eq!(blog.version, 1);
    // Same host, another path: fine. Same host and path: a clash.
    store
        .create_resource(
            "key1",
            &http("api", "blog.test", Some("/api"), "home"),
            ManagedBy::Api,
        )
        .await
        .unwrap();
    let clash = store
        .create_resource(
            "key1",
            &http("blog2", "blog.test", None, "home"),
            ManagedBy::Api,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(clash, StoreError::Conflict(ref m) if m.contains("blog.test")),
        "{clash}"
    );
    // tcp and udp may share a port; two tcp may not.
    store
        .create_resource(
            "key1",
            &listener("dns-t", "tcp", "0.0.0.0:53", "home"),
            ManagedBy::Api,
        )
        .await
        .unwrap();
    store
        .create_resource(
            "key1",
            &listener("dns-u", "udp", "0.0.0.0:53", "home"),
            ManagedBy::Api,
        )
        .await
        .unwrap();
    let clash = store
        .create_resource(
            "key1",
            &listener("dns-t2", "tcp", "0.0.0.0:53", "home"),
            ManagedBy::Api,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(clash, StoreError::Conflict(ref m) if m.contains("0.0.0.0:53")),
        "{clash}"
    );
    // Port 0 is "any free port": never a clash.
    for name in ["any-1", "any-2"] {
        let r = listener(name, "tcp", "127.0.0.1:0", "home");
        store
            .create_resource("key1", &r, ManagedBy::Api)
            .await
            .unwrap();
    }
    for name in ["any-1", "any-2"] {
        store
            .delete_resource("key1", name, ManagedBy::Api)
            .await
            .unwrap();
    }
    // A target at an unknown site: refused, and nothing half-written.
    let orphan = store
        .create_resource(
            "key1",
            &http("orphan", "orphan.test", None, "mars"),
            ManagedBy::Api,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(orphan, StoreError::NotFound { what: "site", .. }),
        "{orphan}"
    );
    assert!(matches!(
        store.resource("orphan").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.list_resources().await.unwrap().len(), 4);
    assert_eq!(store.config_version().await.unwrap(), v0 + 8);

    // Replace: new targets, version bumped, audit keeps before and after.
    let mut changed = http("blog", "blog.test", None, "home");
    changed.targets = vec![
        TargetRecord {
            site: "home".into(),
            address: "127.0.0.1:9090".into(),
        },
        TargetRecord {
            site: "home".into(),
            address: "127.0.0.1:9091".into(),
        },
    ];
    let r = store
        .replace_resource("key2", &changed, ManagedBy::Api)
        .await
        .unwrap();
    assert_eq!(r.version, 2);
    let got = store.resource("blog").await.unwrap();
    assert_eq!(got.targets, changed.targets);
    assert_eq!(got.health, changed.health);
    let audit = store.audit_log(None, 100).await.unwrap();
    let last = audit.last().unwrap();
    assert_eq!(
        (last.actor.as_str(), last.action.as_str()),
        ("key2", "resource.update")
    );
    assert_eq!(
        last.before.as_ref().unwrap()["targets"][0]["address"],
        "127.0.0.1:8080"
    );
    assert_eq!(
        last.after.as_ref().unwrap()["targets"][1]["address"],
        "127.0.0.1:9091"
    );

    // What the file manages, the API cannot change or delete.
    store
        .create_resource(
            "config-file",
            &http("filed", "filed.test", None, "home"),
            ManagedBy::File,
        )
        .await
        .unwrap();
    let refused = store
        .delete_resource("key1", "filed", ManagedBy::Api)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::ManagedByFile { .. }),
        "{refused}"
    );
    store
        .delete_resource("config-file", "filed", ManagedBy::File)
        .await
        .unwrap();

    // A site with targets cannot be deleted.
    let busy = store.delete_site("key1", "home").await.unwrap_err();
    assert!(
        matches!(busy, StoreError::Conflict(ref m) if m.contains("target")),
        "{busy}"
    );
    for name in ["blog", "api", "dns-t", "dns-u"] {
        store
            .delete_resource("key1", name, ManagedBy::Api)
            .await
            .unwrap();
    }
    store.delete_site("key1", "home").await.unwrap();
    assert!(store.list_sites().await.unwrap().is_empty());
}

async fn keys_agents_events(store: &Store) {
    assert!(!store.has_api_keys().await.unwrap());
    let key = store
        .create_api_key("warren up", "k1", "first admin", HASH, Scope::Admin, None)
        .await
        .unwrap();
    assert_eq!(key.scope, Scope::Admin);
    store
        .create_api_key("k1", "k2", "dashboard", HASH, Scope::Read, Some(1))
        .await
        .unwrap();
    assert!(store.has_api_keys().await.unwrap());
    let k2 = store.api_key("k2").await.unwrap().unwrap();
    assert_eq!((k2.scope, k2.expires_ms), (Scope::Read, Some(1)));
    assert!(k2.last_used_ms.is_none());
    store.touch_api_key("k2").await.unwrap();
    assert!(store
        .api_key("k2")
        .await
        .unwrap()
        .unwrap()
        .last_used_ms
        .is_some());
    assert!(store.api_key("missing").await.unwrap().is_none());
    store.delete_api_key("k1", "k2").await.unwrap();
    assert_eq!(store.list_api_keys().await.unwrap().len(), 1);

    store
        .agent_seen("a1", "home", "0.1.0", "linux/x86_64", "10.0.0.1:5000")
        .await
        .unwrap();
    let first = store.agents().await.unwrap()[0].first_seen_ms;
    tokio::time::sleep(Duration::from_millis(5)).await;
    store
        .agent_seen("a1", "home", "0.2.0", "linux/x86_64", "10.0.0.2:5000")
        .await
        .unwrap();
    let agents = store.agents().await.unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(
        (agents[0].version.as_str(), agents[0].first_seen_ms),
        ("0.2.0", first)
    );
    assert!(agents[0].last_seen_ms > first);

    for i in 0..5 {
        store
            .record_event(
                "agent_connected",
                "site/home",
                &serde_json::json!({ "n": i }),
            )
            .await
            .unwrap();
    }
    let page = store.events(None, 3).await.unwrap();
    assert_eq!(page.len(), 3);
    let rest = store.events(Some(&page[2].id), 10).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[1].detail["n"], 4);
}

async fn all(store: &Store) {
    sites_and_rotation(store).await;
    // Start the next scenario from an empty site list.
    for s in store.list_sites().await.unwrap() {
        store.delete_site("test", &s.id).await.unwrap();
    }
    resources_and_conflicts(store).await;
    keys_agents_events(store).await;
    policy_versions(store).await;
    users(store).await;
    doors_and_decisions(store).await;
}

/// A resource's PIN and share links; the access decisions' trail, read by
/// filter and pruned by age.
async fn doors_and_decisions(store: &Store) {
    use warren_store::{DecisionQuery, DecisionRecord, SecretKind, ShareLink};
    store
        .set_resource_secret("test", "app", SecretKind::Pin, Some("$argon2id$x"))
        .await
        .unwrap();
    store
        .set_resource_secret("test", "app", SecretKind::Pin, Some("$argon2id$y"))
        .await
        .unwrap();
    let secrets = store.resource_secrets().await.unwrap();
    assert_eq!(secrets.len(), 1, "one PIN per resource");
    assert_eq!(secrets[0].hash, "$argon2id$y");
    store
        .set_resource_secret("test", "app", SecretKind::Pin, None)
        .await
        .unwrap();
    assert!(store.resource_secrets().await.unwrap().is_empty());
    let link = ShareLink {
        id: "l1".into(),
        resource: "app".into(),
        token_hash: "ab".repeat(32),
        note: String::new(),
        created_by: "test".into(),
        created_ms: 1,
        expires_ms: None,
        revoked_ms: None,
    };
    store.create_share_link("test", &link).await.unwrap();
    assert!(store.share_links().await.unwrap()[0].live(i64::MAX - 1));
    let revoked = store.revoke_share_link("test", "l1").await.unwrap();
    assert!(!revoked.live(0));
    assert!(store.revoke_share_link("test", "nope").await.is_err());

    let row = |id: &str, at_ms: i64, principal: &str, decision: &str| DecisionRecord {
        id: id.into(),
        at_ms,
        resource: "app".into(),
        principal: principal.into(),
        decision: decision.into(),
        reason: "no_grant".into(),
        method: "none".into(),
        client: "192.0.2.1".into(),
        count: 3,
    };
    store
        .record_decisions(&[
            row("d1", 1_000, "alice@corp.com", "allow"),
            row("d2", 2_000, "anonymous", "deny"),
            row("d3", 3_000, "alice@corp.com", "deny"),
        ])
        .await
        .unwrap();
    let q = |principal: Option<&str>, decision: Option<&str>| DecisionQuery {
        since_ms: 0,
        principal: principal.map(str::to_owned),
        decision: decision.map(str::to_owned),
        limit: 10,
        ..DecisionQuery::default()
    };
    assert_eq!(store.decisions(&q(None, None)).await.unwrap().len(), 3);
    let alice = store
        .decisions(&q(Some("alice@corp.com"), None))
        .await
        .unwrap();
    assert_eq!(
        alice.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["d1", "d3"]
    );
    assert_eq!(
        store.decisions(&q(None, Some("deny"))).await.unwrap().len(),
        2
    );
    assert_eq!(store.prune_decisions(2_500).await.unwrap(), 2);
    assert_eq!(store.decisions(&q(None, None)).await.unwrap()[0].id, "d3");
}

/// Users: one per email (any case), changes audited and bumping the
/// version; the shared key is made once, whoever asks.
async fn users(store: &Store) {
    let v = store.config_version().await.unwrap();
    let alice = store
        .create_user("key1", "a1", "alice@corp.com", "Alice", Some("$argon2id$x"))
        .await
        .unwrap();
    assert!(alice.has_password && !alice.disabled);
    let dup = store
        .create_user("key1", "a2", "alice@corp.com", "Again", None)
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup}");
    assert_eq!(store.user("ALICE@corp.com").await.unwrap().id, "a1");
    assert_eq!(store.user("a1").await.unwrap().email, "alice@corp.com");
    let off = store
        .change_user("key1", "a1", UserChange::Disabled(true))
        .await
        .unwrap();
    assert!(
        off.disabled && off.sessions_after_ms > 0,
        "disabling ends sessions"
    );
    assert_eq!(store.user("a1").await.unwrap(), off);
    let on = store
        .change_user("key1", "alice@corp.com", UserChange::Disabled(false))
        .await
        .unwrap();
    assert!(!on.disabled);
    assert_eq!(store.config_version().await.unwrap(), v + 3);
    let audit = store.audit_log(None, 1000).await.unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .filter(|a| a.object == "user/a1")
        .map(|a| a.action.as_str())
        .collect();
    assert_eq!(actions, ["user.create", "user.disable", "user.enable"]);
    assert!(
        audit.iter().all(|a| !a
            .after
            .as_ref()
            .is_some_and(|v| v.to_string().contains("argon2"))),
        "no password hash in the audit log"
    );
    let k1 = store.edge_key("session", || "first".into()).await.unwrap();
    let k2 = store.edge_key("session", || "second".into()).await.unwrap();
    assert_eq!((k1.as_str(), k2.as_str()), ("first", "first"));
}

/// Versions count up from 1; a stale base is a conflict that writes
/// nothing; every save has its audit row with the diff against the version
/// it replaced; a rollback and a removal are versions too.
async fn save(
    store: &Store,
    text: Option<&str>,
    base: Option<i64>,
    restored_from: Option<i64>,
) -> Result<warren_store::PolicyVersion, StoreError> {
    let new = NewPolicy {
        text,
        source: ManagedBy::Api,
        base,
        restored_from,
    };
    store.save_policy("key1", new).await
}

async fn policy_versions(store: &Store) {
    assert_eq!(store.policy().await.unwrap(), None);
    let config = store.config_version().await.unwrap();
    let v1 = save(
        store,
        Some("[groups]\n\"group:a\" = [\"a@b.co\"]\n"),
        Some(0),
        None,
    )
    .await
    .unwrap();
    assert_eq!(v1.version, 1);
    assert_eq!(v1.sha256, policy_sha256(v1.text.as_deref()));
    let v2 = save(
        store,
        Some("[groups]\n\"group:a\" = [\"c@d.co\"]\n"),
        Some(1),
        None,
    )
    .await
    .unwrap();
    assert_eq!(store.config_version().await.unwrap(), config + 2);
    // A save based on version 1 after version 2 landed: refused, nothing written.
    let stale = save(store, Some("x"), Some(1), None).await.unwrap_err();
    assert!(
        matches!(stale, StoreError::Conflict(ref m) if m.contains("version 2")),
        "{stale}"
    );
    assert_eq!(store.policy().await.unwrap().unwrap(), v2);
    let v3 = save(store, v1.text.as_deref(), None, Some(1))
        .await
        .unwrap();
    assert_eq!((v3.version, v3.restored_from), (3, Some(1)));
    assert_eq!(v3.text, v1.text);
    let v4 = save(store, None, None, None).await.unwrap();
    assert_eq!(v4.text, None);
    let history = store.policy_history(None, 10).await.unwrap();
    assert_eq!(
        history.iter().map(|p| p.version).collect::<Vec<_>>(),
        [4, 3, 2, 1]
    );
    assert!(
        history.iter().all(|p| p.text.is_none()),
        "history has no text"
    );
    let older = store.policy_history(Some(3), 1).await.unwrap();
    assert_eq!(older.iter().map(|p| p.version).collect::<Vec<_>>(), [2]);
    assert_eq!(store.policy_version(2).await.unwrap(), v2);
    assert!(matches!(
        store.policy_version(9).await,
        Err(StoreError::NotFound { .. })
    ));
    let audit = store.audit_log(None, 1000).await.unwrap();
    let rows: Vec<_> = audit.iter().filter(|a| a.object == "policy").collect();
    let actions: Vec<&str> = rows.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "policy.update",
            "policy.update",
            "policy.rollback",
            "policy.delete"
        ]
    );
    let diff = rows[1].after.as_ref().unwrap()["diff"].as_str().unwrap();
    assert!(diff.contains("--- policy v1\n+++ policy v2\n"), "{diff}");
    assert!(
        diff.contains("-\"group:a\" = [\"a@b.co\"]\n+\"group:a\" = [\"c@d.co\"]"),
        "{diff}"
    );
    assert_eq!(rows[1].before.as_ref().unwrap()["version"], 1);
    assert_eq!(rows[2].after.as_ref().unwrap()["restored_from"], 1);
    assert_eq!(rows[0].before, None, "the first version replaced nothing");
}

#[tokio::test]
async fn sqlite_fresh_file_migrates_in_wal_mode_and_keeps_data_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warren.db");
    let store = Store::open_sqlite(&path).await.unwrap();
    assert_eq!(store.sqlite_journal_mode().await.unwrap(), "wal");
    all(&store).await;
    let version = store.config_version().await.unwrap();
    store.close().await;
    let again = Store::open_sqlite(&path).await.unwrap();
    assert_eq!(again.config_version().await.unwrap(), version);
    assert_eq!(again.list_api_keys().await.unwrap().len(), 1);
    assert_eq!(again.sqlite_integrity_check().await.unwrap(), "ok");
}

/// The database and its WAL and shared-memory files are readable by this
/// user only, even in a directory anyone may list (0755) and with the
/// usual umask (022): they hold the audit log, hashes and the store of
/// every site.
#[tokio::test]
async fn sqlite_files_are_private_in_an_open_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("warren.db");
    // An existing file with open permissions is closed down too.
    let old = dir.path().join("old.db");
    std::fs::write(&old, b"").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    for path in [&path, &old] {
        let store = Store::open_sqlite(path).await.unwrap();
        store
            .create_site("test", "home", "Home", ManagedBy::Api, HASH, &[])
            .await
            .unwrap();
        let files: Vec<std::path::PathBuf> = ["", "-wal", "-shm"]
            .iter()
            .map(|suffix| std::path::PathBuf::from(format!("{}{suffix}", path.display())))
            .collect();
        for f in &files {
            let mode = std::fs::metadata(f)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{} is {:o}", f.display(), mode & 0o777);
        }
        store.close().await;
    }
}

#[tokio::test]
async fn postgres_fresh_server_runs_the_same_migrations_and_scenarios() {
    let Some(pg) = postgres() else {
        return;
    };
    let store = Store::open_url(&pg.url).await.unwrap();
    all(&store).await;
    let version = store.config_version().await.unwrap();
    store.close().await;
    // Reopening runs no migration twice.
    let again = Store::open_url(&pg.url).await.unwrap();
    assert_eq!(again.config_version().await.unwrap(), version);
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error() {
    let port = warren_testkit::free_tcp_ports(1)[0];
    let err = Store::open_url(&format!("postgres://warren@127.0.0.1:{port}/x"))
        .await
        .err()
        .expect("nothing listens there");
    assert!(matches!(err, StoreError::Db(_)), "{err}");
}

/// A site secret's hash is re-stored only if it is still the one the caller
/// checked, and every edge hears of it (config_version moves).
#[tokio::test]
async fn a_site_secret_hash_is_rehashed_only_from_what_was_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("warren.db"))
        .await
        .unwrap();
    store
        .create_site("test", "lab", "Lab", ManagedBy::Api, "$argon2id$old", &[])
        .await
        .unwrap();
    let secret = store.site_secrets("lab").await.unwrap().remove(0);
    let version = store.config_version().await.unwrap();
    assert!(!store
        .rehash_site_secret(&secret.id, "$argon2id$other", "$sha256$new")
        .await
        .unwrap());
    assert_eq!(store.config_version().await.unwrap(), version);
    assert!(store
        .rehash_site_secret(&secret.id, "$argon2id$old", "$sha256$new")
        .await
        .unwrap());
    assert_eq!(
        store.site_secrets("lab").await.unwrap()[0].secret_hash,
        "$sha256$new"
    );
    assert_eq!(store.config_version().await.unwrap(), version + 1);
}
