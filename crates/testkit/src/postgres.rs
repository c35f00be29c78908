//! A throwaway PostgreSQL server (Debian's `postgresql` package) per test:
//! `initdb` into a temporary directory, `postgres` on a free loopback port,
//! trust authentication for user `warren`. Killed and deleted on drop.
//!
//! PostgreSQL refuses to run as root, so as root it runs as the `postgres`
//! user the package creates (set on the child process, no `su`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").exists() && p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// Whether a PostgreSQL server can be started here.
pub fn postgres_installed() -> bool {
    bin_dir().is_some()
}

/// A running server; stopped on drop.
pub struct Postgres {
    /// `postgres://warren@127.0.0.1:PORT/postgres`.
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

fn is_root() -> bool {
    id("-u", None) == Some(0)
}

fn id(flag: &str, user: Option<&str>) -> Option<u32> {
    let out = Command::new("id").arg(flag).args(user).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// `program`, run as the `postgres` user when we are root (a direct child,
/// so killing it stops the server).
fn as_postgres(program: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(program);
    if is_root() {
        let uid = id("-u", Some("postgres")).expect("the postgres user exists");
        let gid = id("-g", Some("postgres")).expect("the postgres group exists");
        c.uid(uid).gid(gid);
    }
    c
}

impl Postgres {
    /// Initialises and starts a fresh server, waiting until it accepts
    /// connections.
    pub fn start() -> Postgres {
        let bin = bin_dir().expect("PostgreSQL is installed (apt-get install postgresql)");
        let dir = tempfile::Builder::new()
            .prefix("warren-pg-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown the PostgreSQL directory");
        }
        let data = dir.path().join("data");
        let out = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "warren", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = crate::free_tcp_ports(1)[0];
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log");
        let child = as_postgres(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-k")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("postgres runs");
        let me = Postgres {
            url: format!("postgres://warren@127.0.0.1:{port}/postgres"),
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "warren"])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return me;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(me._dir.path().join("postgres.log"))
                    .unwrap_or_default();
                panic!("PostgreSQL did not start within 30 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown: it stops its workers too.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
