#!/usr/bin/env python3
"""Warren benchmark orchestrator (stdlib only). Run through bench/run.sh.

Paths compared, all on 127.0.0.1, each carrying traffic to the same backends:
  direct        client -> backend
  rathole       client -> rathole server -> rathole client -> backend (plain TCP)
  rathole-noise the same with the Noise transport (encrypted)
  warren-tcp    client -> warren edge -> warren site -> backend, TCP+TLS link
  warren-quic   the same over QUIC

The HTTPS suite (TLS-terminating fronts: nginx alone, nginx -> rathole, and
Warren's edge) lives in https_bench.py.
"""
import argparse, json, os, re, signal, socket, statistics, subprocess, sys, tempfile, time

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def wait_port(port, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close(); return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")

def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

class Procs:
    def __init__(self): self.procs = []
    def start(self, args, **kw):
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        self.procs.append(p); return p
    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p in self.procs:
            p.wait()
        self.procs = []

def backends(procs, work):
    iperf_port, nginx_port = free_port(), free_port()
    procs.start(["iperf3", "-s", "-p", str(iperf_port)])
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {work}/nginx.pid; error_log /dev/null;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 120s; client_header_timeout 120s;
  server {{ listen 127.0.0.1:{nginx_port} backlog=4096; location / {{ return 200 "hello from the backend\\n"; }} }} }}
""")
    procs.start(["nginx", "-c", conf, "-p", work])
    wait_port(iperf_port); wait_port(nginx_port)
    return iperf_port, nginx_port

def start_rathole(procs, exe, work, iperf_port, nginx_port, noise):
    ctrl, pub_iperf, pub_web = free_port(), free_port(), free_port()
    transport_s = transport_c = ""
    if noise:
        out = subprocess.run([exe, "--genkey"], capture_output=True, text=True).stdout
        keys = re.findall(r"Key:\s*\n?\s*(\S+)", out)
        priv, pub = keys[0], keys[1]
        transport_s = f'[server.transport]\ntype = "noise"\n[server.transport.noise]\nlocal_private_key = "{priv}"\n'
        transport_c = f'[client.transport]\ntype = "noise"\n[client.transport.noise]\nremote_public_key = "{pub}"\n'
    s = os.path.join(work, "rh-server.toml"); c = os.path.join(work, "rh-client.toml")
    with open(s, "w") as f:
        f.write(f'[server]\nbind_addr = "127.0.0.1:{ctrl}"\ndefault_token = "bench"\n{transport_s}'
                f'[server.services.iperf]\nbind_addr = "127.0.0.1:{pub_iperf}"\n'
                f'[server.services.web]\nbind_addr = "127.0.0.1:{pub_web}"\n')
    with open(c, "w") as f:
        f.write(f'[client]\nremote_addr = "127.0.0.1:{ctrl}"\ndefault_token = "bench"\n{transport_c}'
                f'[client.services.iperf]\nlocal_addr = "127.0.0.1:{iperf_port}"\n'
                f'[client.services.web]\nlocal_addr = "127.0.0.1:{nginx_port}"\n')
    env = dict(os.environ, RUST_LOG="error")
    server = procs.start([exe, "--server", s], env=env)
    wait_port(ctrl)
    client = procs.start([exe, "--client", c], env=env)
    wait_port(pub_iperf); wait_port(pub_web)
    time.sleep(1.0)  # rathole's client connects lazily per service
    return {"iperf": pub_iperf, "web": pub_web, "pids": {"server": server.pid, "client": client.pid}}

def start_warren(procs, exe, work, iperf_port, nginx_port, transport):
    tunnel, admin, pub_iperf, pub_web = free_port(), free_port(), free_port(), free_port()
    d = os.path.join(work, f"warren-{transport}"); os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "edge.toml"), "w") as f:
        f.write(f'[edge]\ndata_dir = "data"\ntunnel_listen = "127.0.0.1:{tunnel}"\nadmin_listen = "127.0.0.1:{admin}"\n'
                f'[[site]]\nid = "bench"\nsecret = "bench-secret-0123456789"\n'
                f'[[resource]]\nname = "iperf"\ntype = "tcp"\nlisten = "127.0.0.1:{pub_iperf}"\n'
                f'targets = [{{ site = "bench", address = "127.0.0.1:{iperf_port}" }}]\n'
                f'[[resource]]\nname = "web"\ntype = "tcp"\nlisten = "127.0.0.1:{pub_web}"\n'
                f'targets = [{{ site = "bench", address = "127.0.0.1:{nginx_port}" }}]\n')
    pin = subprocess.run([exe, "edge", "--config", "edge.toml", "--print-pin"], cwd=d, capture_output=True, text=True, check=True).stdout.strip()
    env = dict(os.environ, WARREN_LOG="error")
    edge = procs.start([exe, "edge", "--config", "edge.toml"], cwd=d, env=env)
    wait_port(admin); wait_port(pub_web)
    agent = procs.start([exe, "site", "--endpoint", f"https://127.0.0.1:{tunnel}", "--id", "bench",
                         "--secret", "bench-secret-0123456789", "--pin", pin, "--transport", transport,
                         "--allow", f"127.0.0.1:{iperf_port}/tcp", "--allow", f"127.0.0.1:{nginx_port}/tcp"], cwd=d, env=env)
    wait_agent(admin, d)
    return {"iperf": pub_iperf, "web": pub_web, "pids": {"edge": edge.pid, "agent": agent.pid}}

def wait_agent(admin, edge_dir):
    end = time.time() + 15
    while time.time() < end:
        try:
            with open(os.path.join(edge_dir, "data", "admin-token")) as f:
                token = f.read().strip()
            body = urlget(f"http://127.0.0.1:{admin}/api/v1/sites", token)
            if json.loads(body)[0]["agents"]:
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError("warren agent never connected")

def urlget(url, token):
    import urllib.request
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=2) as r:
        return r.read()

def iperf(port, streams, duration):
    out = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-P", str(streams), "-t", str(duration), "-J"],
                         capture_output=True, text=True, timeout=duration + 30)
    data = json.loads(out.stdout)
    return data["end"]["sum_received"]["bits_per_second"] / 1e9

def wrk(port, duration, close):
    args = ["wrk", "-t2", "-c50", f"-d{duration}s", "--latency"]
    if close:
        args += ["-H", "Connection: close"]
    out = subprocess.run(args + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return rps, (errors.group(0) if errors else "")

def open_connections(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(s)
    return socks

def median(xs):
    return statistics.median(xs) if xs else float("nan")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--warren", required=True)
    ap.add_argument("--rathole", required=True)
    ap.add_argument("--oha", help="oha binary (HTTPS fixed-rate latency)")
    ap.add_argument("--reps", type=int, default=int(os.environ.get("REPS", 3)))
    ap.add_argument("--duration", type=int, default=int(os.environ.get("DURATION", 5)))
    ap.add_argument("--paths", default="direct,rathole,rathole-noise,warren-tcp,warren-quic")
    ap.add_argument("--suites", default=os.environ.get("SUITES", "tunnel,https"),
                    help="tunnel (raw TCP paths), https (TLS-terminating fronts)")
    ap.add_argument("--json", help="write raw results here")
    args = ap.parse_args()
    args.warren, args.rathole = os.path.abspath(args.warren), os.path.abspath(args.rathole)
    args.oha = os.path.abspath(args.oha) if args.oha else None
    os.environ.setdefault("RUST_LOG", "error")
    resource_limit()
    paths = args.paths.split(",")
    results = {}
    work = tempfile.mkdtemp(prefix="warren-bench-")
    procs = Procs()
    args.work = work
    https_results = None
    try:
        iperf_port, nginx_port = backends(procs, work)
        if "https" in args.suites.split(","):
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import https_bench
            https_results = https_bench.run(
                args, Procs, nginx_port,
                lambda p: start_rathole(p, args.rathole, work, iperf_port, nginx_port, False)["web"],
                (free_port, wait_port, wait_agent), median)
        for path in (paths if "tunnel" in args.suites.split(",") else []):
            path_procs = Procs()
            if path == "direct":
                ends = {"iperf": iperf_port, "web": nginx_port, "pids": {}}
            elif path.startswith("rathole"):
                ends = start_rathole(path_procs, args.rathole, work, iperf_port, nginx_port, path.endswith("noise"))
            else:
                ends = start_warren(path_procs, args.warren, work, iperf_port, nginx_port, path.split("-")[1])
            r = {}
            r["idle_rss_kb"] = {k: rss_kb(p) for k, p in ends["pids"].items()}
            for name, fn in [
                ("iperf_1_gbps", lambda: iperf(ends["iperf"], 1, args.duration)),
                ("iperf_4_gbps", lambda: iperf(ends["iperf"], 4, args.duration)),
                ("http_keepalive_rps", lambda: wrk(ends["web"], args.duration, False)[0]),
                ("http_close_rps", lambda: wrk(ends["web"], args.duration, True)[0]),
            ]:
                samples = []
                for _ in range(args.reps):
                    try:
                        samples.append(fn())
                    except Exception as e:
                        print(f"  {path} {name}: failed: {e}", file=sys.stderr)
                r[name] = median(samples)
                r[name + "_samples"] = samples
                print(f"  {path:14} {name:20} {r[name]:10.2f}  {['%.2f' % s for s in samples]}", file=sys.stderr)
            if ends["pids"]:
                socks = open_connections(ends["web"], 1000)
                time.sleep(1.0)
                r["rss_1000_kb"] = {k: rss_kb(p) for k, p in ends["pids"].items()}
                for s in socks:
                    s.close()
            results[path] = r
            path_procs.stop()
            time.sleep(0.5)
    finally:
        procs.stop()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tunnel": results, "https": https_results and https_results[0]}, f, indent=1)
    if results:
        print_table(results, paths)
    if https_results:
        https_bench.print_table(*https_results)

def resource_limit():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

def print_table(results, paths):
    base = "rathole"
    def fmt(v, unit):
        return "n/a" if v != v else (f"{v:.2f}" if unit == "Gbit/s" else f"{v:,.0f}")
    rows = [("single-stream iperf3", "iperf_1_gbps", "Gbit/s"), ("4-stream iperf3", "iperf_4_gbps", "Gbit/s"),
            ("HTTP keep-alive (wrk c50)", "http_keepalive_rps", "req/s"), ("new connections (Connection: close)", "http_close_rps", "req/s")]
    print()
    print("| scenario | unit | " + " | ".join(paths) + " | warren-tcp / rathole | warren-quic / rathole |")
    print("|---|---|" + "---|" * len(paths) + "---|---|")
    for label, key, unit in rows:
        vals = [results.get(p, {}).get(key, float("nan")) for p in paths]
        b = results.get(base, {}).get(key, float("nan"))
        ratio = lambda p: results.get(p, {}).get(key, float("nan")) / b if b == b and b else float("nan")
        print(f"| {label} | {unit} | " + " | ".join(fmt(v, unit) for v in vals) + f" | {ratio('warren-tcp'):.2f}x | {ratio('warren-quic'):.2f}x |")
    for label, key in [("idle RSS", "idle_rss_kb"), ("RSS at 1,000 connections", "rss_1000_kb")]:
        cells = []
        for p in paths:
            d = results.get(p, {}).get(key, {})
            cells.append(" + ".join(f"{k} {v/1024:.1f}" for k, v in d.items()) if d else "n/a")
        print(f"| {label} | MiB | " + " | ".join(cells) + " | | |")

if __name__ == "__main__":
    main()
