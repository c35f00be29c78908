//! People's devices in the store, on a fresh SQLite file and a fresh
//! PostgreSQL server (Debian's, started by the test): the same scenario on
//! both, and two adds racing for one address.

use std::net::Ipv4Addr;
use warren_store::{Device, Store, StoreError};
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

async fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("warren.db"))
        .await
        .unwrap();
    (dir, store)
}

/// A WireGuard-shaped key (base64 of 32 bytes) that differs by `n`.
fn key(n: u8) -> String {
    let letter = char::from(b'A' + n % 26);
    format!("{}=", String::from(letter).repeat(43))
}

fn device(name: &str, n: u8, last: u8) -> Device {
    Device {
        name: name.into(),
        user: "Alice@Corp.com".into(),
        tags: vec!["tag:phone".into()],
        public_key: key(n),
        address: Ipv4Addr::new(100, 96, 0, last),
        created_by: "key1".into(),
        created_ms: 1_700_000_000_000,
    }
}

fn conflict(e: StoreError, needle: &str) {
    assert!(
        matches!(e, StoreError::Conflict(ref m) if m.contains(needle)),
        "a conflict naming {needle}, not: {e}"
    );
}

/// Add, read, refuse each clash (nothing written), list by name, revoke;
/// every change audited without the key and bumping the version.
async fn scenario(store: &Store) {
    assert!(store.devices().await.unwrap().is_empty());
    let v = store.config_version().await.unwrap();
    store
        .create_device("key1", &device("phone", 1, 2))
        .await
        .unwrap();
    let phone = store.device("phone").await.unwrap().expect("stored");
    assert_eq!(phone.user, "alice@corp.com", "the user is lower-cased");
    assert_eq!(phone.tags, ["tag:phone"]);
    assert_eq!(phone.public_key, key(1));
    assert_eq!(phone.address, Ipv4Addr::new(100, 96, 0, 2));
    assert_eq!(phone.created_ms, 1_700_000_000_000);
    assert_eq!(store.device("nope").await.unwrap(), None);

    conflict(
        store
            .create_device("key1", &device("phone", 2, 3))
            .await
            .unwrap_err(),
        "`phone` already exists",
    );
    conflict(
        store
            .create_device("key1", &device("tablet", 1, 3))
            .await
            .unwrap_err(),
        "public key",
    );
    conflict(
        store
            .create_device("key1", &device("tablet", 2, 2))
            .await
            .unwrap_err(),
        "address 100.96.0.2",
    );
    assert_eq!(store.devices().await.unwrap().len(), 1, "nothing written");
    assert_eq!(store.config_version().await.unwrap(), v + 1);

    store
        .create_device("key1", &device("laptop", 2, 3))
        .await
        .unwrap();
    let names: Vec<String> = store
        .devices()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["laptop", "phone"], "by name");

    assert!(store.remove_device("key2", "phone").await.unwrap());
    assert!(!store.remove_device("key2", "phone").await.unwrap());
    assert_eq!(store.device("phone").await.unwrap(), None);
    assert_eq!(
        store.config_version().await.unwrap(),
        v + 3,
        "two adds and one revocation; a refused change and a second revocation bump nothing"
    );
    // Its address and key are free again.
    store
        .create_device("key1", &device("phone2", 1, 2))
        .await
        .unwrap();

    let audit = store.audit_log(None, 1000).await.unwrap();
    let rows: Vec<_> = audit
        .iter()
        .filter(|a| a.object.starts_with("device/"))
        .collect();
    let actions: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|a| (a.actor.as_str(), a.action.as_str(), a.object.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("key1", "device.create", "device/phone"),
            ("key1", "device.create", "device/laptop"),
            ("key2", "device.revoke", "device/phone"),
            ("key1", "device.create", "device/phone2"),
        ]
    );
    assert_eq!(rows[2].before.as_ref().unwrap()["address"], "100.96.0.2");
    for row in &rows {
        let text = format!("{:?} {:?}", row.before, row.after);
        assert!(
            !text.contains(&key(1)) && !text.contains(&key(2)),
            "no key in the audit log: {text}"
        );
    }
}

/// Two adds racing for one address: one is stored, the other is a
/// conflict (never a database error), on either database.
async fn race(store: &Store) {
    let a = device("race-a", 10, 200);
    let b = device("race-b", 11, 200);
    let (ra, rb) = tokio::join!(
        store.create_device("key1", &a),
        store.create_device("key1", &b)
    );
    let err = match (ra, rb) {
        (Ok(()), Err(e)) | (Err(e), Ok(())) => e,
        other => panic!("exactly one of the two must be stored: {other:?}"),
    };
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let at_200: Vec<Device> = store
        .devices()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.address == Ipv4Addr::new(100, 96, 0, 200))
        .collect();
    assert_eq!(at_200.len(), 1);
}

#[tokio::test]
async fn sqlite_devices() {
    let (_dir, store) = sqlite().await;
    scenario(&store).await;
    race(&store).await;
}

#[tokio::test]
async fn postgres_devices() {
    let Some(pg) = postgres() else {
        return;
    };
    let store = Store::open_url(&pg.url).await.unwrap();
    scenario(&store).await;
    race(&store).await;
}
