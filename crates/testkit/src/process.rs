//! Real `warren` processes with their logs collected.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `warren` process whose stderr is JSON log lines.
pub struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    name: String,
}

impl Process {
    /// Starts `bin args...` with `--log-format json`, in `cwd`.
    pub fn spawn(name: &str, bin: &Path, args: &[String], cwd: &Path) -> Process {
        let mut child = Command::new(bin)
            .args(args)
            .arg("--log-format")
            .arg("json")
            .env(
                "WARREN_LOG",
                "debug,quinn=warn,quinn_proto=warn,rustls=warn,hyper=warn,axum=warn",
            )
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let tag = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value =
                    serde_json::from_str(&line).unwrap_or_else(|_| Value::String(line.clone()));
                if std::env::var_os("WARREN_TEST_ECHO").is_some() {
                    eprintln!("[{tag}] {line}");
                }
                sink.lock().unwrap().push(value);
            }
        });
        Process {
            child,
            lines,
            name: name.to_owned(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's anonymous resident memory (`RssAnon`, KiB): its heap
    /// and stacks, without the binary's code pages. What a flood would grow.
    pub fn rss_anon_kib(&self) -> u64 {
        crate::peers::rss_anon_kib(self.child.id())
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// Log lines whose `event` field is `event`.
    pub fn events(&self, event: &str) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|v| v["event"] == event)
            .collect()
    }

    /// Waits for the `nth` (0-based) line with `event`, else panics with the log.
    pub fn wait_event_nth(&self, event: &str, nth: usize, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.events(event).into_iter().nth(nth) {
                return v;
            }
            if Instant::now() > deadline {
                self.dump();
                panic!(
                    "{}: no event `{event}` #{nth} within {timeout:?}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the first line with `event`.
    pub fn wait_event(&self, event: &str) -> Value {
        self.wait_event_nth(event, 0, crate::EVENT_TIMEOUT)
    }

    /// Waits for a log line matching `pred`.
    pub fn wait_log(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.logs().into_iter().find(&pred) {
                return v;
            }
            if Instant::now() > deadline {
                self.dump();
                panic!("{}: no log line {what} within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Prints the collected log (on failure).
    pub fn dump(&self) {
        eprintln!("----- log of {} -----", self.name);
        for l in self.logs() {
            eprintln!("{l}");
        }
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        let rc = kill(self.child.id() as i32, sig);
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.child.id());
    }

    /// Waits for exit, up to `timeout`: `None` if the process is still
    /// running, else how it ended: `status.code()` is `Some(n)` for an exit
    /// with code `n`, and `None` for a death by signal, whose number
    /// `std::os::unix::process::ExitStatusExt::signal` gives (`Some(9)`
    /// after SIGKILL).
    #[must_use = "None means the process is still running"]
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(e) => panic!("{}: waiting for exit: {e}", self.name),
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn kill(pid: i32, sig: i32) -> i32 {
    // The kill(1) utility keeps this crate free of `unsafe`.
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
    if status.map(|s| s.success()).unwrap_or(false) {
        0
    } else {
        -1
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            self.dump();
        }
    }
}

/// A resource in an [`EdgeSpec`].
#[derive(Clone, Debug)]
pub struct ResourceSpec {
    /// Name.
    pub name: String,
    /// `tcp` or `udp`.
    pub kind: String,
    /// Listen address (default `127.0.0.1:0`).
    pub listen: String,
    /// `(site, address)` targets.
    pub targets: Vec<(String, String)>,
    /// Extra TOML lines.
    pub extra: String,
}

impl ResourceSpec {
    /// A TCP resource to `address` at `site`, on a free port.
    pub fn tcp(name: &str, site: &str, address: impl ToString) -> Self {
        ResourceSpec {
            name: name.into(),
            kind: "tcp".into(),
            listen: "127.0.0.1:0".into(),
            targets: vec![(site.into(), address.to_string())],
            extra: String::new(),
        }
    }

    /// An HTTP resource routed by `host` (extra keys such as `path` go in `extra`).
    pub fn http(name: &str, host: &str, site: &str, address: impl ToString) -> Self {
        ResourceSpec {
            kind: "http".into(),
            listen: String::new(),
            extra: format!("host = \"{host}\"\n"),
            ..Self::tcp(name, site, address)
        }
    }

    /// A TLS passthrough resource routed by SNI `host`.
    pub fn tls(name: &str, host: &str, site: &str, address: impl ToString) -> Self {
        ResourceSpec {
            kind: "tls".into(),
            ..Self::http(name, host, site, address)
        }
    }

    /// Appends TOML lines to the resource.
    pub fn with(mut self, extra: &str) -> Self {
        self.extra.push_str(extra);
        self.extra.push('\n');
        self
    }

    /// A UDP resource.
    pub fn udp(name: &str, site: &str, address: impl ToString) -> Self {
        ResourceSpec {
            kind: "udp".into(),
            ..Self::tcp(name, site, address)
        }
    }
}

/// What an edge should serve.
#[derive(Clone, Debug)]
pub struct EdgeSpec {
    /// `(id, secret)` of each site.
    pub sites: Vec<(String, String)>,
    /// Resources.
    pub resources: Vec<ResourceSpec>,
    /// Tunnel listen address (default `127.0.0.1:0`).
    pub tunnel_listen: String,
    /// Extra lines for the `[edge]` table.
    pub edge_extra: String,
    /// The `[tls]` table's lines, if any.
    pub tls: String,
    /// `[policy] file`, if any.
    pub policy_file: Option<String>,
}

impl EdgeSpec {
    /// One site `home` with secret `S3CRET-for-tests`.
    pub fn new() -> Self {
        EdgeSpec {
            sites: vec![("home".into(), "S3CRET-for-tests".into())],
            resources: Vec::new(),
            tunnel_listen: "127.0.0.1:0".into(),
            edge_extra: String::new(),
            tls: String::new(),
            policy_file: None,
        }
    }

    /// Adds a resource.
    pub fn resource(mut self, r: ResourceSpec) -> Self {
        self.resources.push(r);
        self
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        let mut t = format!(
            "[edge]\ndata_dir = \"data\"\ntunnel_listen = \"{}\"\nadmin_listen = \"127.0.0.1:0\"\ndrain_timeout = \"5s\"\n{}\n",
            self.tunnel_listen, self.edge_extra
        );
        if !self.tls.is_empty() {
            t += &format!("[tls]\n{}\n\n", self.tls);
        }
        if let Some(f) = &self.policy_file {
            t += &format!("[policy]\nfile = \"{f}\"\n\n");
        }
        for (id, secret) in &self.sites {
            t += &format!("[[site]]\nid = \"{id}\"\nsecret = \"{secret}\"\n\n");
        }
        for r in &self.resources {
            let targets: Vec<String> = r
                .targets
                .iter()
                .map(|(s, a)| format!("{{ site = \"{s}\", address = \"{a}\" }}"))
                .collect();
            let listen = if r.listen.is_empty() {
                String::new()
            } else {
                format!("listen = \"{}\"\n", r.listen)
            };
            t += &format!(
                "[[resource]]\nname = \"{}\"\ntype = \"{}\"\n{listen}targets = [{}]\n{}\n",
                r.name,
                r.kind,
                targets.join(", "),
                r.extra
            );
        }
        t
    }
}

impl Default for EdgeSpec {
    fn default() -> Self {
        Self::new()
    }
}

/// A running edge with what its log said about itself.
pub struct EdgeProcess {
    /// The process.
    pub process: Process,
    /// Its working directory (config and data live here).
    pub dir: PathBuf,
    /// Tunnel address (TCP and UDP).
    pub tunnel: SocketAddr,
    /// Admin API address.
    pub admin: SocketAddr,
    /// Tunnel certificate pin.
    pub pin: String,
    /// HTTPS listener, when configured.
    pub https: Option<SocketAddr>,
    /// Plain-HTTP listener, when configured.
    pub http: Option<SocketAddr>,
    /// The admin API token (`data/admin-token`, written at the first start).
    pub token: Option<String>,
    bin: PathBuf,
}

impl EdgeProcess {
    /// Writes `spec` to `dir/edge.toml` and starts `warren edge` on it.
    pub fn start(bin: &Path, dir: &Path, spec: &EdgeSpec) -> EdgeProcess {
        std::fs::write(dir.join("edge.toml"), spec.to_toml()).expect("write edge.toml");
        Self::start_existing(bin, dir)
    }

    /// Starts `warren edge` on the `edge.toml` already in `dir`.
    pub fn start_existing(bin: &Path, dir: &Path) -> EdgeProcess {
        let args = vec![
            "edge".to_owned(),
            "--config".to_owned(),
            "edge.toml".to_owned(),
        ];
        let process = Process::spawn("edge", bin, &args, dir);
        let started = process.wait_event("edge_started");
        let addr = |k: &str| {
            started[k]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("address in edge_started")
        };
        let optional = |k: &str| started[k].as_str().and_then(|s| s.parse().ok());
        let token = std::fs::read_to_string(dir.join("data/admin-token"))
            .ok()
            .map(|t| t.trim().to_owned());
        EdgeProcess {
            token,
            https: optional("https"),
            http: optional("http"),
            tunnel: addr("tunnel"),
            admin: addr("admin"),
            pin: started["pin"].as_str().expect("pin").to_owned(),
            process,
            dir: dir.to_owned(),
            bin: bin.to_owned(),
        }
    }

    /// The bound address of resource `name` (from its latest `listening` event).
    pub fn resource_addr(&self, name: &str) -> SocketAddr {
        self.process.wait_log(
            &format!("listening for {name}"),
            crate::EVENT_TIMEOUT,
            |v| v["event"] == "listening" && v["resource"] == name,
        );
        let last = self
            .process
            .events("listening")
            .into_iter()
            .rev()
            .find(|v| v["resource"] == name)
            .expect("listening event");
        last["listen"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("listen address")
    }

    /// `warren site` arguments for site `id` with `secret`, allowing `allow`.
    pub fn site_args(
        &self,
        id: &str,
        secret: &str,
        transport: &str,
        allow: &[&str],
    ) -> Vec<String> {
        let mut args = vec![
            "site".to_owned(),
            "--endpoint".to_owned(),
            format!("https://127.0.0.1:{}", self.tunnel.port()),
            "--id".to_owned(),
            id.to_owned(),
            "--secret".to_owned(),
            secret.to_owned(),
            "--pin".to_owned(),
            self.pin.clone(),
            "--transport".to_owned(),
            transport.to_owned(),
            "--drain-timeout".to_owned(),
            "5s".to_owned(),
        ];
        for a in allow {
            args.push("--allow".to_owned());
            args.push((*a).to_owned());
        }
        args
    }

    /// Starts an agent for the first site with `allow`, and waits until the
    /// edge has registered it.
    pub fn start_agent(&self, name: &str, transport: &str, allow: &[&str]) -> Process {
        let before = self.process.events("agent_connected").len();
        let args = self.site_args("home", "S3CRET-for-tests", transport, allow);
        let agent = Process::spawn(name, &self.bin, &args, &self.dir);
        agent.wait_event("edge_connected");
        self.process
            .wait_event_nth("agent_connected", before, crate::EVENT_TIMEOUT);
        agent
    }

    /// `/metrics` (served without a key) as `series -> value`, comment
    /// lines left out: `warren_edge_agents_connected{site="home"} -> "1"`.
    pub fn metrics(&self) -> std::collections::BTreeMap<String, String> {
        let (status, body) = self.admin_request("GET", "/metrics", None, None);
        assert_eq!(status, 200, "GET /metrics: {body}");
        let text = body
            .as_str()
            .unwrap_or_else(|| panic!("/metrics is not text: {body}"));
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Serves the policy `text` (`PUT /api/v1/policy` with the edge's
    /// token); panics with the API's answer if it is refused.
    pub fn put_policy(&self, text: &str) {
        let body = serde_json::json!({ "text": text }).to_string();
        let (status, answer) =
            self.admin_request("PUT", "/api/v1/policy", Some(&body), self.token.as_deref());
        assert_eq!(status, 200, "PUT /api/v1/policy: {answer}");
    }

    /// GET `path` on the admin API with the edge's token, parsed as JSON.
    pub fn admin_get(&self, path: &str) -> Value {
        let (status, body) = self.admin_request("GET", path, None, self.token.as_deref());
        assert_eq!(status, 200, "admin GET {path}: {body}");
        body
    }

    /// `method path` on the admin API with `token` (if any) and a JSON
    /// `body` (if any): the status and the body parsed as JSON (`Null`
    /// when empty, a JSON string when it is not JSON).
    pub fn admin_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (u16, Value) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.admin).expect("connect admin");
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let body = body.unwrap_or("");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let text = resp.split("\r\n\r\n").nth(1).unwrap_or("");
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
        };
        (status, value)
    }

    /// Waits until every agent of the first site reports no active stream
    /// and returns the final `/api/v1/sites` answer. A stream's slot is
    /// released when the edge's connection task ends, a moment after the
    /// client has read the last byte, so tests poll instead of racing it.
    /// Panics with the last answer if streams are still open after
    /// [`crate::EVENT_TIMEOUT`], and at once if the first site has no
    /// agent or an agent has no `active_streams` count (an answer without
    /// them would otherwise read as "no stream open").
    pub fn wait_streams_closed(&self) -> Value {
        let deadline = Instant::now() + crate::EVENT_TIMEOUT;
        loop {
            let sites = self.admin_get("/api/v1/sites");
            let agents = sites[0]["agents"]
                .as_array()
                .filter(|agents| !agents.is_empty())
                .unwrap_or_else(|| panic!("the first site has no agent: {sites:#}"));
            let open: u64 = agents
                .iter()
                .map(|a| {
                    a["active_streams"]
                        .as_u64()
                        .unwrap_or_else(|| panic!("agent without active_streams: {a:#}"))
                })
                .sum();
            if open == 0 {
                return sites;
            }
            if Instant::now() > deadline {
                panic!(
                    "streams still open after {:?}: {sites:#}",
                    crate::EVENT_TIMEOUT
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Connected agents of `site`, per the admin API.
    pub fn agent_count(&self, site: &str) -> usize {
        let sites = self.admin_get("/api/v1/sites");
        sites
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == site))
            .and_then(|s| s["agents"].as_array().map(Vec::len))
            .unwrap_or(0)
    }
}

/// Runs `cmd` to the end and returns its output; panics, naming `what` and
/// quoting the command's stderr, when it cannot start or exits non-zero.
pub fn run_ok(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
