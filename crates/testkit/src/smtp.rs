//! A real SMTP server for notification tests: Debian's `python3-aiosmtpd`
//! with STARTTLS (a fresh self-signed certificate for `127.0.0.1`, which
//! the server requires before it accepts mail), storing every message in
//! a maildir the test reads.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The interpreter Debian's `python3-aiosmtpd` belongs to (not whatever
/// `python3` is first on the PATH).
const PYTHON: &str = "/usr/bin/python3";

/// Whether aiosmtpd can run here.
pub fn smtp_server_installed() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running aiosmtpd; killed on drop.
pub struct SmtpServer {
    child: Child,
    /// `127.0.0.1:port`.
    pub addr: std::net::SocketAddr,
    /// The CA (the server's own certificate) to trust.
    pub ca: PathBuf,
    maildir: PathBuf,
}

impl SmtpServer {
    /// Starts the server with its files in `dir`; returns once it accepts
    /// connections.
    pub fn start(dir: &Path) -> SmtpServer {
        let (cert, key) = crate::self_signed(&["127.0.0.1"]);
        let ca = dir.join("smtp-cert.pem");
        let key_path = dir.join("smtp-key.pem");
        std::fs::write(&ca, cert).expect("write cert");
        std::fs::write(&key_path, key).expect("write key");
        let maildir = dir.join("maildir");
        let port = crate::free_tcp_ports(1)[0];
        let child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--tlscert")
            .arg(&ca)
            .arg("--tlskey")
            .arg(&key_path)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start aiosmtpd");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        SmtpServer {
            child,
            addr,
            ca,
            maildir,
        }
    }

    /// Every message received so far, as text.
    pub fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) {
                for e in entries.flatten() {
                    if let Ok(text) = std::fs::read_to_string(e.path()) {
                        out.push(text);
                    }
                }
            }
        }
        out
    }

    /// Waits up to `timeout` for a message containing `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.messages().into_iter().find(|m| m.contains(needle)) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no mail containing {needle:?}; got {:#?}",
                self.messages()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
