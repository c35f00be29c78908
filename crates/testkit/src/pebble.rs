//! Debian's `pebble` ACME test server and its `pebble-challtestsrv` mock DNS,
//! started per test on free loopback ports.
//!
//! Pebble validates challenges by resolving the requested name through the
//! mock DNS (every name answers `127.0.0.1`) and connecting to `http_port`
//! (HTTP-01) or `tls_port` (TLS-ALPN-01): the edge under test must listen
//! there. Pebble picks a fresh root and intermediate at every launch; they
//! are fetched from its management API into [`Pebble::roots_pem`] so a client
//! can verify the certificates it issues.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether Debian's `pebble` is installed (CI installs it; a developer
/// machine may not have it).
pub fn pebble_installed() -> bool {
    Path::new("/usr/bin/pebble").exists() && Path::new("/usr/bin/pebble-challtestsrv").exists()
}

/// Free loopback TCP ports, all bound at once so they differ, then released
/// for a child process to bind. (A child that cannot take `:0` and report
/// its port back needs this.)
pub fn free_tcp_ports(n: usize) -> Vec<u16> {
    // Below Linux's ephemeral range (32768-60999): a port from `:0` is in
    // it, where every other test's `:0` listener and every outgoing
    // connection's source port come from, so between this check and the
    // edge binding it another socket could take it (seen: "Address already
    // in use" in a full run). Picked at random, held while choosing.
    let mut held: Vec<TcpListener> = Vec::new();
    while held.len() < n {
        let port = rand::random_range(20_000..32_000);
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    held.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running pebble and its mock DNS; both are killed on drop.
pub struct Pebble {
    /// The ACME directory URL.
    pub directory: String,
    /// Pebble's own HTTPS certificate (PEM), for `[tls.acme] ca`.
    pub server_ca: PathBuf,
    /// The root(s) pebble signs with this launch (PEM), for clients.
    pub roots_pem: PathBuf,
    children: Vec<Child>,
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on
    /// `tls_port`, with files in `dir`. Waits until its API answers.
    pub fn start(dir: &Path, http_port: u16, tls_port: u16) -> Pebble {
        let ports = free_tcp_ports(3);
        let (acme_port, mgmt_port, dns_mgmt_port) = (ports[0], ports[1], ports[2]);
        let dns_port = free_udp_port();
        let (cert, key) = crate::self_signed(&["127.0.0.1", "localhost"]);
        let server_ca = dir.join("pebble-server.pem");
        std::fs::write(&server_ca, cert).expect("write");
        std::fs::write(dir.join("pebble-server.key"), key).expect("write");
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{acme_port}"),
                "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
                "certificate": dir.join("pebble-server.pem"),
                "privateKey": dir.join("pebble-server.key"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("write");
        let log =
            |name: &str| Stdio::from(std::fs::File::create(dir.join(name)).expect("log file"));
        let dns = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_mgmt_port}")])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv runs");
        let mut children = vec![dns];
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            // No random validation delay, and no random nonce rejection
            // (instant-acme retries badNonce, but a test wants one path).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("pebble runs");
        children.push(pebble);
        let mut me = Pebble {
            directory: format!("https://127.0.0.1:{acme_port}/dir"),
            server_ca,
            roots_pem: dir.join("pebble-roots.pem"),
            children,
        };
        for port in [acme_port, mgmt_port, dns_mgmt_port] {
            me.wait_port(port, dir);
        }
        let root = me.management_get(mgmt_port, "/roots/0", dir);
        std::fs::write(&me.roots_pem, root).expect("write roots");
        me
    }

    fn wait_port(&mut self, port: u16, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default();
                let err = std::fs::read_to_string(dir.join("pebble.err")).unwrap_or_default();
                panic!("pebble did not listen on {port} within 20 s:\n{log}\n{err}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn management_get(&self, port: u16, path: &str, dir: &Path) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
            .arg(&self.server_ca)
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .current_dir(dir)
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "pebble management {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("PEM is text")
    }

    /// Pebble's own log, for failure messages.
    pub fn log(&self, dir: &Path) -> String {
        std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
