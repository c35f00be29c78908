"""HTTPS suite of the Warren benchmark (imported by bench.py).

Paths, each ending at the same nginx backend (plain HTTP, 23-byte body):
  nginx-tls          client -TLS-> nginx -> backend                 (no tunnel)
  nginx-tls-rathole  client -TLS-> nginx -> rathole server -> rathole client -> backend
  warren-https       client -TLS-> warren edge (http resource) -> tunnel -> warren site -> backend

The front nginx is what an operator would write: `worker_processes auto`,
TLS 1.3 with the same ECDSA P-256 certificate Warren serves, and an upstream
`keepalive` pool (without it nginx opens a connection per request).

Scenarios: keep-alive req/s and p50/p99 with wrk -c64 (peak); p50/p99 at
a fixed rate of half Warren's peak, the same rate for every path, with oha
(crates.io; wrk cannot hold a rate); new TLS connections per second
(`Connection: close`, a full handshake per request).
"""
import json, os, re, subprocess, sys, time

HOST = "localhost"  # wrk takes SNI from the URL; localhost resolves without /etc/hosts edits


def make_cert(work):
    cert, key = os.path.join(work, "tls.crt"), os.path.join(work, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def start_nginx_tls(procs, work, upstream_port, name, free_port, wait_port):
    cert, key = make_cert(work)
    port = free_port()
    d = os.path.join(work, name); os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes auto; daemon off; pid {d}/nginx.pid; error_log /dev/null;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  upstream origin {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port} ssl backlog=4096; server_name {HOST};
    ssl_certificate {cert}; ssl_certificate_key {key}; ssl_protocols TLSv1.3;
    location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $host; proxy_set_header X-Forwarded-For $remote_addr; }} }} }}
""")
    p = procs.start(["nginx", "-c", conf, "-p", d])
    wait_port(port)
    return {"port": port, "pids": {"nginx": p.pid}}


def start_warren_https(procs, exe, work, backend_port, free_port, wait_port, wait_agent):
    tunnel, admin, https = free_port(), free_port(), free_port()
    d = os.path.join(work, "warren-https"); os.makedirs(d, exist_ok=True)
    cert, key = make_cert(d)
    with open(os.path.join(d, "edge.toml"), "w") as f:
        f.write(f'[edge]\ndata_dir = "data"\ntunnel_listen = "127.0.0.1:{tunnel}"\nadmin_listen = "127.0.0.1:{admin}"\n'
                f'https_listen = "127.0.0.1:{https}"\n'
                f'[tls]\ncerts = [{{ cert = "{cert}", key = "{key}" }}]\n'
                f'[[site]]\nid = "bench"\nsecret = "bench-secret-0123456789"\n'
                f'[[resource]]\nname = "web"\ntype = "http"\nhost = "{HOST}"\n'
                f'targets = [{{ site = "bench", address = "127.0.0.1:{backend_port}" }}]\n')
    pin = subprocess.run([exe, "edge", "--config", "edge.toml", "--print-pin"], cwd=d, capture_output=True,
                         text=True, check=True).stdout.strip()
    env = dict(os.environ, WARREN_LOG="error")
    edge = procs.start([exe, "edge", "--config", "edge.toml"], cwd=d, env=env)
    wait_port(admin); wait_port(https)
    agent = procs.start([exe, "site", "--endpoint", f"https://127.0.0.1:{tunnel}", "--id", "bench",
                         "--secret", "bench-secret-0123456789", "--pin", pin, "--transport", "tcp",
                         "--allow", f"127.0.0.1:{backend_port}/tcp"], cwd=d, env=env)
    wait_agent(admin, d)
    return {"port": https, "pids": {"edge": edge.pid, "agent": agent.pid}}


def oha_fixed_rate(oha, port, duration, rate, connections=16):
    """Latency at a fixed offered rate (wrk can only saturate), with oha.
    Without --latency-correction: on this 2-core machine oha's own scheduling
    stalls, counted from when each request was due, put p99 at 25-65 ms for
    every path including nginx alone, which measures oha, not the proxies.
    Returns (achieved req/s, p50 ms, p99 ms, errors)."""
    out = subprocess.run([oha, "-z", f"{duration}s", "-c", str(connections), "-q", str(int(rate)),
                          "--no-tui", "--insecure", "--output-format", "json",
                          f"https://{HOST}:{port}/"], capture_output=True, text=True, timeout=duration + 30)
    d = json.loads(out.stdout)
    codes = d.get("statusCodeDistribution", {})
    bad = sum(n for c, n in codes.items() if not c.startswith("2"))
    errors = d.get("errorDistribution", {})
    return (d["summary"]["requestsPerSec"], d["latencyPercentiles"]["p50"] * 1000,
            d["latencyPercentiles"]["p99"] * 1000, (f"{bad} non-2xx " if bad else "") + (str(errors) if errors else ""))


def _ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not m:
        raise RuntimeError(f"unexpected wrk latency {text!r}")
    v, unit = float(m.group(1)), m.group(2)
    return {"us": v / 1000, "ms": v, "s": v * 1000, "m": v * 60000}[unit]


def wrk_https(port, duration, connections=64, close=False):
    """Saturating load. Returns (req/s, p50 ms, p99 ms, errors)."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    if close:
        args += ["-H", "Connection: close"]
    out = subprocess.run(args + [f"https://{HOST}:{port}/"], capture_output=True, text=True,
                         timeout=duration + 30).stdout
    if "Requests/sec" not in out or "99%" not in out:
        raise RuntimeError(f"unexpected wrk output: {out!r}")
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
    # Anchored: "65.99%" in the Req/Sec row must not read as the 99th percentile.
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return rps, p50, p99, (errors.group(0) if errors else "")


def run(args, procs_cls, backend_port, rathole_web_port_fn, helpers, median):
    """Measures every HTTPS path; returns {path: {metric: median}}."""
    free_port, wait_port, wait_agent = helpers
    work = args.work
    results = {}
    paths = ["nginx-tls", "nginx-tls-rathole", "warren-https"]
    ends_of = {}
    all_procs = procs_cls()
    try:
        ends_of["nginx-tls"] = start_nginx_tls(all_procs, work, backend_port, "nginx-tls", free_port, wait_port)
        rathole_port = rathole_web_port_fn(all_procs)
        ends_of["nginx-tls-rathole"] = start_nginx_tls(all_procs, work, rathole_port, "nginx-tls-rathole",
                                                       free_port, wait_port)
        ends_of["warren-https"] = start_warren_https(all_procs, args.warren, work, backend_port, free_port,
                                                     wait_port, wait_agent)
        # Repetitions interleave the paths (A B C A B C ...), so a slow
        # stretch of this shared machine hits every path alike.
        samples = {(p, n): [] for p in paths for n in ("keepalive", "handshake")}
        for _ in range(args.reps):
            for name, close in (("keepalive", False), ("handshake", True)):
                for path in paths:
                    try:
                        samples[(path, name)].append(wrk_https(ends_of[path]["port"], args.duration, close=close))
                    except Exception as e:
                        print(f"  {path} {name}: failed: {e}", file=sys.stderr)
        for path in paths:
            r = results.setdefault(path, {})
            for name in ("keepalive", "handshake"):
                got = samples[(path, name)]
                r[name + "_rps"] = median([s[0] for s in got])
                r[name + "_p50_ms"] = median([s[1] for s in got])
                r[name + "_p99_ms"] = median([s[2] for s in got])
                r[name + "_errors"] = [s[3] for s in got if s[3]]
                print(f"  {path:18} {name:10} {r[name + '_rps']:10.0f} req/s  p50 {r[name + '_p50_ms']:.2f} ms"
                      f"  p99 {r[name + '_p99_ms']:.2f} ms  {['%.0f' % s[0] for s in got]} {r[name + '_errors']}",
                      file=sys.stderr)
        # Half of Warren's peak, the same offered rate on every path.
        rate = results["warren-https"]["keepalive_rps"] / 2
        half = {p: [] for p in paths}
        for _ in range(args.reps):
            for path in paths:
                half[path].append(oha_fixed_rate(args.oha, ends_of[path]["port"], args.duration, rate))
        for path in paths:
            samples = half[path]
            r = results[path]
            r["half_rps"] = median([s[0] for s in samples])
            r["half_p50_ms"] = median([s[1] for s in samples])
            r["half_p99_ms"] = median([s[2] for s in samples])
            r["half_errors"] = [s[3] for s in samples if s[3]]
            print(f"  {path:18} half-load  {r['half_rps']:10.0f} req/s  p50 {r['half_p50_ms']:.2f} ms"
                  f"  p99 {r['half_p99_ms']:.2f} ms  (offered {rate:.0f}/s, oha c16) {r['half_errors']}",
                  file=sys.stderr)
    finally:
        all_procs.stop()
    return results, paths


def print_table(results, paths):
    rows = [("keep-alive (wrk c64)", "keepalive_rps", "req/s"),
            ("keep-alive p50", "keepalive_p50_ms", "ms"), ("keep-alive p99", "keepalive_p99_ms", "ms"),
            ("half of Warren's peak: achieved", "half_rps", "req/s"),
            ("half load p50", "half_p50_ms", "ms"), ("half load p99", "half_p99_ms", "ms"),
            ("new TLS connections (Connection: close)", "handshake_rps", "req/s")]
    print()
    print("| HTTPS scenario | unit | " + " | ".join(paths) + " | warren / nginx-tls-rathole | warren - nginx-tls |")
    print("|---|---|" + "---|" * len(paths) + "---|---|")
    for label, key, unit in rows:
        vals = [results.get(p, {}).get(key, float("nan")) for p in paths]
        w = results.get("warren-https", {}).get(key, float("nan"))
        chain = results.get("nginx-tls-rathole", {}).get(key, float("nan"))
        alone = results.get("nginx-tls", {}).get(key, float("nan"))
        f = (lambda v: f"{v:,.0f}") if unit == "req/s" else (lambda v: f"{v:.2f}")
        ratio = f"{w / chain:.2f}x" if unit == "req/s" and chain else ""
        diff = f"{w - alone:+.2f} ms" if unit == "ms" else ""
        print(f"| {label} | {unit} | " + " | ".join(f(v) for v in vals) + f" | {ratio} | {diff} |")
