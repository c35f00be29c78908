"""HTTPS suite: TLS-terminating fronts, each ending at the same nginx backend
(plain HTTP, 23-byte body):
  nginx-tls          client -TLS-> nginx -> backend                 (no tunnel)
  nginx-tls-rathole  client -TLS-> nginx -> rathole server -> rathole client -> backend
  warren-https       client -TLS-> warren edge (http resource) -> tunnel -> warren site -> backend

The front nginx is what an operator would write: `worker_processes auto`,
TLS 1.3 with the same ECDSA P-256 certificate Warren serves, and an upstream
`keepalive` pool (without it nginx opens a connection per request).

Metrics, in interleaved rounds (A B C A B C ...): keep-alive req/s and
p50/p99 with wrk -c64 (peak); new TLS connections per second
(`Connection: close`, a full handshake per request); then, once the peaks are
known, p50/p99 at a fixed rate of half Warren's median peak, the same rate
for every path, with oha (crates.io; wrk cannot hold a rate).
"""
import json, os, statistics, subprocess

from common import SampleError, backends, free_port, run_tool, start_rathole, start_warren, wait_port, wrk

HOST = "localhost"  # wrk takes SNI from the URL; localhost resolves without /etc/hosts edits
PATHS = ["nginx-tls", "nginx-tls-rathole", "warren-https"]
BASELINE = "warren-https-baseline"


def paths(args):
    """The paths of this run: with --baseline, a second Warren edge (another
    binary, e.g. the commit before a change) measured in the same rounds."""
    return PATHS + ([BASELINE] if getattr(args, "baseline", None) else [])


def make_cert(work, names=(HOST,), end_entity=False):
    """A self-signed certificate for `names` in `work`. `end_entity`: not a
    CA, as rustls wants a server's own certificate when a client trusts it
    as its root (warren's --ca)."""
    cert, key = os.path.join(work, "tls.crt"), os.path.join(work, "tls.key")
    sans = ",".join(f"DNS:{n}" for n in names)
    extra = ["-addext", "basicConstraints=critical,CA:FALSE"] if end_entity else []
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", f"/CN={names[0]}", "-addext", f"subjectAltName={sans}", *extra,
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def start_nginx_tls(procs, work, upstream_port, name):
    cert, key = make_cert(work)
    port = free_port()
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes auto; daemon off; pid {d}/nginx.pid; error_log stderr;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  upstream origin {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port} ssl backlog=4096; server_name {HOST};
    ssl_certificate {cert}; ssl_certificate_key {key}; ssl_protocols TLSv1.3;
    location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $host; proxy_set_header X-Forwarded-For $remote_addr; }} }} }}
""")
    procs.start(name, ["nginx", "-c", conf, "-p", d])
    wait_port(port)
    return port


def start_warren_https(procs, exe, work, backend_port, name="warren-https"):
    https = free_port()
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    cert, key = make_cert(d)
    start_warren(procs, exe, work, name, "tcp",
                 edge_extra=f'https_listen = "127.0.0.1:{https}"\n[tls]\ncerts = [{{ cert = "{cert}", key = "{key}" }}]\n',
                 resources_toml=f'[[resource]]\nname = "web"\ntype = "http"\nhost = "{HOST}"\n'
                                f'targets = [{{ site = "bench", address = "127.0.0.1:{backend_port}" }}]\n',
                 allow=(f"127.0.0.1:{backend_port}/tcp",))
    wait_port(https)
    return https


def oha_fixed_rate(oha, port, duration, rate, connections=16, url=None, headers=()):
    """Latency at a fixed offered rate (wrk can only saturate), with oha.
    Without --latency-correction: on this 2-core machine oha's own scheduling
    stalls, counted from when each request was due, put p99 at 25-65 ms for
    every path including nginx alone, which measures oha, not the proxies.
    Any non-2xx answer or oha error is a SampleError."""
    # -w: requests still in flight at the deadline are waited for, not
    # counted as "aborted due to deadline" errors.
    url = url or f"https://{HOST}:{port}/"
    out = run_tool([oha, "-z", f"{duration}s", "-w", "-c", str(connections), "-q", str(int(rate)),
                    "--no-tui", "--insecure", "--output-format", "json", *headers, url], duration + 30)
    try:
        d = json.loads(out)
    except ValueError:
        raise SampleError(f"oha: not JSON: {out[-300:]!r}")
    codes = d.get("statusCodeDistribution") or {}
    bad = {c: n for c, n in codes.items() if not c.startswith("2")}
    errors = d.get("errorDistribution") or {}
    if bad or errors or not codes:
        raise SampleError(f"oha {url}: status codes {codes}, errors {errors}")
    return {"rps": d["summary"]["requestsPerSec"], "p50_ms": d["latencyPercentiles"]["p50"] * 1000,
            "p99_ms": d["latencyPercentiles"]["p99"] * 1000, "offered_rps": int(rate)}


def run(run, args, procs, work):
    _, backend = backends(procs, work)
    ports = {"nginx-tls": start_nginx_tls(procs, work, backend, "nginx-tls")}
    public, _ = start_rathole(procs, args.rathole, work, {"web": backend}, noise=False, name="rathole-https")
    ports["nginx-tls-rathole"] = start_nginx_tls(procs, work, public["web"], "nginx-tls-rathole")
    ports["warren-https"] = start_warren_https(procs, args.warren, work, backend)
    if getattr(args, "baseline", None):
        ports[BASELINE] = start_warren_https(procs, args.baseline, work, backend, name=BASELINE)
    d = args.duration
    for rnd in range(1, args.reps + 1):
        for metric, close in (("keepalive", False), ("handshake", True)):
            for p in paths(args):
                run.measure(rnd, p, metric, lambda: wrk(f"https://{HOST}:{ports[p]}/", d, 64, close=close), procs)
        try:
            procs.check()
        except SampleError as e:
            return run.abort(f"stopped after round {rnd}: {e}")
    peaks = [s["values"]["rps"] for s in run.samples
             if s["path"] == "warren-https" and s["metric"] == "keepalive" and s["values"]]
    if not peaks:
        return run.abort("no keep-alive sample for warren-https: no rate for the half-load rounds")
    # Half of Warren's peak, the same offered rate on every path.
    rate = statistics.median(peaks) / 2
    for rnd in range(1, args.reps + 1):
        for p in paths(args):
            run.measure(rnd, p, "half_load", lambda: oha_fixed_rate(args.oha, ports[p], d, rate), procs)
