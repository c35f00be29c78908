"""Shared parts of Warren's benchmark suites (stdlib only).

What every suite uses: free ports, processes that cannot die unnoticed, the
common backends (iperf3 and an nginx returning a 23-byte body), rathole and
Warren started in front of them, and the raw result file each run leaves in
bench/results/ (every sample, with the commit, the machine and the
parameters), from which bench/report.py renders RESULTS.md.

A sample is one measurement of one metric on one path in one round:
  {"round": 2, "path": "warren-tcp", "metric": "iperf_1", "values": {"gbps": 6.4}, "error": null}
A sample whose tool reported an error carries it in "error"; the suite goes
on, and at the end the run fails, naming each one.
"""
import datetime, hashlib, json, os, re, signal, socket, subprocess, time, urllib.error, urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
RESULTS = os.path.join(BENCH, "results")
SECRET = "bench-secret-0123456789"


class SampleError(Exception):
    """A measurement that must not count: the tool failed or reported errors."""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SampleError(f"port {port} never opened")


def rss_kb(pid, field="VmRSS"):
    """A memory figure of /proc/PID/status in kB: VmRSS (everything resident,
    the binary's code pages too), RssAnon (heap and stacks: what the process
    allocated) or RssFile (mapped files, mostly code, shared between
    processes of one binary)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise SampleError(f"no {field} for pid {pid}")


def run_tool(args, timeout, **kw):
    """Runs a measuring tool; a non-zero exit or a timeout is a SampleError."""
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise SampleError(f"{args[0]} timed out after {timeout} s")
    if out.returncode != 0:
        raise SampleError(f"{args[0]} exited {out.returncode}: {(out.stderr or out.stdout).strip()[-400:]}")
    return out.stdout


class Procs:
    """Long-running processes of one path; their output goes to log files so
    that a death can be explained, and `check` says whether any died."""

    def __init__(self, work):
        self.work, self.procs = work, []

    def start(self, name, args, **kw):
        log = open(os.path.join(self.work, f"{name}-{len(self.procs)}.log"), "wb")
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **kw)
        p.bench_name, p.bench_log = name, log.name
        self.procs.append(p)
        return p

    def check(self):
        """Raises SampleError naming the first process that has exited."""
        for p in self.procs:
            if p.poll() is not None:
                with open(p.bench_log, "rb") as f:
                    tail = f.read()[-600:].decode(errors="replace").strip()
                raise SampleError(f"{p.bench_name} (pid {p.pid}) exited with {p.returncode}: {tail}")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p in self.procs:
            p.wait()
        self.procs = []


def backends(procs, work):
    """iperf3 and nginx (23-byte body, worker_processes 1). Returns their ports."""
    iperf_port, nginx_port = free_port(), free_port()
    procs.start("iperf3", ["iperf3", "-s", "-p", str(iperf_port)])
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {work}/nginx.pid; error_log stderr;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 120s; client_header_timeout 120s;
  server {{ listen 127.0.0.1:{nginx_port} backlog=4096; location / {{ return 200 "hello from the backend\\n"; }} }} }}
""")
    procs.start("nginx-backend", ["nginx", "-c", conf, "-p", work])
    wait_port(iperf_port)
    wait_port(nginx_port)
    return iperf_port, nginx_port


def start_rathole(procs, exe, work, services, noise, name="rathole"):
    """rathole server and client carrying `services` ({name: backend port});
    returns ({name: public port}, {process: pid})."""
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    ctrl = free_port()
    public = {svc: free_port() for svc in services}
    transport_s = transport_c = ""
    if noise:
        keys = re.findall(r"Key:\s*\n?\s*(\S+)", run_tool([exe, "--genkey"], 10))
        transport_s = f'[server.transport]\ntype = "noise"\n[server.transport.noise]\nlocal_private_key = "{keys[0]}"\n'
        transport_c = f'[client.transport]\ntype = "noise"\n[client.transport.noise]\nremote_public_key = "{keys[1]}"\n'
    s, c = os.path.join(d, "server.toml"), os.path.join(d, "client.toml")
    with open(s, "w") as f:
        f.write(f'[server]\nbind_addr = "127.0.0.1:{ctrl}"\ndefault_token = "bench"\n{transport_s}')
        for svc, port in public.items():
            f.write(f'[server.services.{svc}]\nbind_addr = "127.0.0.1:{port}"\n')
    with open(c, "w") as f:
        f.write(f'[client]\nremote_addr = "127.0.0.1:{ctrl}"\ndefault_token = "bench"\n{transport_c}')
        for svc, port in services.items():
            f.write(f'[client.services.{svc}]\nlocal_addr = "127.0.0.1:{port}"\n')
    env = dict(os.environ, RUST_LOG="error")
    server = procs.start(f"{name}-server", [exe, "--server", s], env=env)
    wait_port(ctrl)
    client = procs.start(f"{name}-client", [exe, "--client", c], env=env)
    for port in public.values():
        wait_port(port)
    time.sleep(1.0)  # rathole's client connects lazily per service
    return public, {"server": server.pid, "client": client.pid}


def start_warren(procs, exe, work, name, transport, resources_toml="", edge_extra="", allow=(), agent_exe=None,
                 agent_extra=()):
    """A Warren edge (config: `edge_extra` under [edge], `resources_toml`
    after the site) and one agent dialing it over `transport`, allowed to
    reach `allow`. Returns {"dir", "admin", "token", "pids"} once the agent
    is connected."""
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    tunnel, admin = free_port(), free_port()
    with open(os.path.join(d, "edge.toml"), "w") as f:
        f.write(f'[edge]\ndata_dir = "data"\ntunnel_listen = "127.0.0.1:{tunnel}"\nadmin_listen = "127.0.0.1:{admin}"\n'
                f'{edge_extra}[[site]]\nid = "bench"\nsecret = "{SECRET}"\n{resources_toml}')
    pin = run_tool([exe, "edge", "--config", "edge.toml", "--print-pin"], 30, cwd=d).strip()
    env = dict(os.environ, WARREN_LOG="error")
    edge = procs.start(f"{name}-edge", [exe, "edge", "--config", "edge.toml"], cwd=d, env=env)
    wait_port(admin)
    args = [agent_exe or exe, "site", "--endpoint", f"https://127.0.0.1:{tunnel}", "--id", "bench", "--secret", SECRET,
            "--pin", pin, "--transport", transport]
    for a in allow:
        args += ["--allow", a]
    args += list(agent_extra)
    agent = procs.start(f"{name}-agent", args, cwd=d, env=env)
    token = wait_agent(admin, d, procs)
    return {"dir": d, "admin": admin, "token": token, "pids": {"edge": edge.pid, "agent": agent.pid}}


def wait_agent(admin, edge_dir, procs, timeout=20):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        procs.check()
        try:
            with open(os.path.join(edge_dir, "data", "admin-token")) as f:
                token = f.read().strip()
            status, sites = api(admin, token, "GET", "/api/v1/sites")
            if status == 200 and sites and sites[0]["agents"]:
                return token
        except (OSError, ValueError, KeyError) as e:
            last = e
        time.sleep(0.1)
    raise SampleError(f"warren agent never connected to the edge in {edge_dir} ({last})")


def api(admin, token, method, path, body=None):
    """One admin API call; returns (status, parsed JSON body or None)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{admin}{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    return status, (json.loads(raw) if raw else None)


def resource_limit():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def _git(*args):
    return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True, check=True).stdout


def tool_version(args):
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return None


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run_meta(warren):
    """Where and on what a run happened: commit, uncommitted tracked files,
    the binary measured, the machine, the tools."""
    binary_sha = file_sha256(warren)
    changed = [l[3:] for l in _git("status", "--porcelain", "--untracked-files=no").splitlines() if l.strip()]
    subject = _git("log", "-1", "--format=%s").strip()
    return {
        "commit": _git("rev-parse", "HEAD").strip(),
        "subject": subject if len(subject) <= 80 else subject[:77] + "...",
        "dirty": bool(changed),
        "dirty_files": changed,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": os.cpu_count(),
        "kernel": os.uname().release,
        "warren_binary": {"path": os.path.relpath(warren, REPO), "sha256": binary_sha,
                          "built": datetime.datetime.fromtimestamp(os.path.getmtime(warren), datetime.timezone.utc)
                          .strftime("%Y-%m-%dT%H:%M:%SZ")},
    }


def _ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not m:
        raise SampleError(f"unexpected wrk latency {text!r}")
    v, unit = float(m.group(1)), m.group(2)
    return {"us": v / 1000, "ms": v, "s": v * 1000, "m": v * 60000}[unit]


def wrk(url, duration, connections, close=False, headers=(), prefix=()):
    """Saturating HTTP load with wrk (2 threads), run behind `prefix` (e.g.
    `ip netns exec NS`). Returns {rps, p50_ms,
    p99_ms, requests}; any socket error (connect, read, write, timeout) or
    non-2xx/3xx answer, a non-zero exit or no request at all is a SampleError."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    if close:
        args += ["-H", "Connection: close"]
    args += list(headers)
    out = run_tool([*prefix, *args, url], duration + 30)
    done = re.search(r"^\s*(\d+) requests in", out, re.M)
    rps = re.search(r"^Requests/sec:\s*([\d.]+)", out, re.M)
    # Anchored: "65.99%" in the Req/Sec row must not read as the 99th percentile.
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (done and rps and p50 and p99):
        raise SampleError(f"unexpected wrk output: {out!r}")
    problems = []
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock and any(int(n) for n in sock.groups()):
        problems.append(sock.group(0))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad and int(bad.group(1)):
        problems.append(bad.group(0))
    if int(done.group(1)) == 0:
        problems.append("no request completed")
    if problems:
        raise SampleError(f"wrk {url}: " + "; ".join(problems) + f" (of {done.group(1)} requests)")
    return {"rps": float(rps.group(1)), "p50_ms": _ms(p50.group(1)), "p99_ms": _ms(p99.group(1)),
            "requests": int(done.group(1))}


class Run:
    """One suite's run: collects samples, writes the raw file at the end."""

    def __init__(self, suite, meta, params, tools):
        self.suite, self.samples, self.errors = suite, [], []
        self.doc = dict(meta, suite=suite, params=params, tools=tools, loadavg_start=loadavg())
        print(f"{suite} suite at {meta['commit'][:7]}{' (dirty)' if meta['dirty'] else ''}: {params}", flush=True)

    def measure(self, rnd, path, metric, fn, procs=None):
        """Runs fn() -> {value name: number}; records the sample or its error."""
        started = time.time()
        sample = {"round": rnd, "path": path, "metric": metric, "values": None, "error": None}
        try:
            sample["values"] = fn()
            if procs:
                procs.check()
        except SampleError as e:
            sample["error"] = str(e)
            self.errors.append(f"{path} {metric} (round {rnd}): {e}")
            print(f"  FAILED {path} {metric} round {rnd}: {e}", flush=True)
        sample["seconds"] = round(time.time() - started, 3)
        self.samples.append(sample)
        if sample["values"] and not sample["error"]:
            shown = "  ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v:,.2f}"
                              for k, v in sample["values"].items())
            print(f"  r{rnd} {path:18} {metric:16} {shown}", flush=True)
        return sample

    def abort(self, why):
        self.errors.append(why)
        print(f"  ABORTED: {why}", flush=True)

    def write(self):
        """Writes bench/results/<suite>-<commit>-<time>.json (.failed.json
        when any sample failed); returns its path."""
        self.doc.update(loadavg_end=loadavg(), samples=self.samples, errors=self.errors)
        os.makedirs(RESULTS, exist_ok=True)
        stamp = self.doc["date"].replace("-", "").replace(":", "")
        name = f"{self.suite}-{self.doc['commit'][:7]}-{stamp}{'.failed' if self.errors else ''}.json"
        path = os.path.join(RESULTS, name)
        with open(path, "w") as f:
            json.dump(self.doc, f, indent=1)
            f.write("\n")
        return path
