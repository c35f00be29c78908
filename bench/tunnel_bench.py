"""Tunnel suite: raw TCP through each tunnel, to the same backends.

Paths, all on 127.0.0.1, all started before the first measurement and
measured in interleaved rounds (every metric on A B C ..., then the next
round), so a slow stretch of this shared machine hits every path alike:
  direct        client -> backend
  rathole       client -> rathole server -> rathole client -> backend (plain TCP)
  rathole-noise the same with the Noise transport (encrypted)
  warren-tcp    client -> warren edge -> warren site -> backend, TCP+TLS link
  warren-quic   the same over QUIC

Metrics: iperf3 1 and 4 streams (Gbit/s), wrk c50 keep-alive and
`Connection: close` (req/s), RSS of the tunnel's processes idle (once,
before any traffic) and holding 1,000 open connections (once, after the rounds):
VmRSS, and RssAnon (what the process allocated, without the code pages of its
binary; Warren's edge and agent are one 20 MiB binary whose resident code is
most of their VmRSS, while rathole's is small).
"""
import json, socket, time

from common import SampleError, backends, free_port, rss_kb, run_tool, start_rathole, start_warren, wait_port, wrk

PATHS = "direct,rathole,rathole-noise,warren-tcp,warren-quic"


def iperf(port, streams, duration, host="127.0.0.1", prefix=()):
    """iperf3 to host:port, run behind `prefix` (e.g. `ip netns exec NS`)."""
    out = run_tool([*prefix, "iperf3", "-c", host, "-p", str(port), "-P", str(streams), "-t", str(duration), "-J"],
                   duration + 30)
    try:
        data = json.loads(out)
    except ValueError:
        raise SampleError(f"iperf3: not JSON: {out[-300:]!r}")
    if data.get("error"):
        raise SampleError(f"iperf3: {data['error']}")
    bps = data["end"]["sum_received"]["bits_per_second"]
    if not bps:
        raise SampleError("iperf3: nothing received")
    return {"gbps": bps / 1e9}


def rss_at_connections(port, pids, n, anon):
    """VmRSS of `pids` (kB) while `n` connections through `port` are open;
    their RssAnon at the same moment goes into `anon`."""
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(1.0)
        anon.update({f"{name}_kb": rss_kb(pid, "RssAnon") for name, pid in pids.items()})
        return {f"{name}_kb": rss_kb(pid) for name, pid in pids.items()}
    except OSError as e:
        raise SampleError(f"connection {len(socks) + 1} of {n}: {e}")
    finally:
        for s in socks:
            s.close()


def start_path(path, procs, args, work, nginx_port):
    """Starts one path, with an iperf3 server of its own (one test at a time:
    shared, a test still closing on one path made the next path's test fail
    with "the server is busy"); returns {"iperf": port, "web": port, "pids": {...}}."""
    iperf_port = free_port()
    procs.start(f"iperf3-{path}", ["iperf3", "-s", "-p", str(iperf_port)])
    wait_port(iperf_port)
    if path == "direct":
        return {"iperf": iperf_port, "web": nginx_port, "pids": {}}
    if path.startswith("rathole"):
        public, pids = start_rathole(procs, args.rathole, work, {"iperf": iperf_port, "web": nginx_port},
                                     noise=path.endswith("noise"), name=path)
        return dict(public, pids=pids)
    if path in ("warren-tcp", "warren-quic"):
        pub_iperf, pub_web = free_port(), free_port()
        resources = ""
        for name, pub, backend in (("iperf", pub_iperf, iperf_port), ("web", pub_web, nginx_port)):
            resources += (f'[[resource]]\nname = "{name}"\ntype = "tcp"\nlisten = "127.0.0.1:{pub}"\n'
                          f'targets = [{{ site = "bench", address = "127.0.0.1:{backend}" }}]\n')
        w = start_warren(procs, args.warren, work, path, path.split("-")[1], resources_toml=resources,
                         allow=(f"127.0.0.1:{iperf_port}/tcp", f"127.0.0.1:{nginx_port}/tcp"))
        return {"iperf": pub_iperf, "web": pub_web, "pids": w["pids"]}
    raise SystemExit(f"unknown tunnel path {path!r}")


def run(run, args, procs, work):
    paths = args.paths.split(",")
    _, nginx_port = backends(procs, work)
    ends = {p: start_path(p, procs, args, work, nginx_port) for p in paths}
    for p in paths:
        if ends[p]["pids"]:
            run.measure(0, p, "idle_rss", lambda: {f"{k}_kb": rss_kb(pid) for k, pid in ends[p]["pids"].items()})
            run.measure(0, p, "idle_anon",
                        lambda: {f"{k}_kb": rss_kb(pid, "RssAnon") for k, pid in ends[p]["pids"].items()})
    d = args.duration
    metrics = [
        ("iperf_1", lambda e: iperf(e["iperf"], 1, d)),
        ("iperf_4", lambda e: iperf(e["iperf"], 4, d)),
        ("http_keepalive", lambda e: wrk(f"http://127.0.0.1:{e['web']}/", d, 50)),
        ("http_close", lambda e: wrk(f"http://127.0.0.1:{e['web']}/", d, 50, close=True)),
    ]
    for rnd in range(1, args.reps + 1):
        for metric, fn in metrics:
            for p in paths:
                run.measure(rnd, p, metric, lambda: fn(ends[p]), procs)
                try:
                    procs.check()
                except SampleError as e:
                    run.abort(f"stopped after {p} {metric} round {rnd}: {e}")
                    return
            time.sleep(0.5)
    # Once, after the rounds: 1,000 connections at once left rathole-noise's
    # web service answering no later request (its server logged Noise
    # handshake timeouts), which failed all its later samples.
    for p in paths:
        if ends[p]["pids"]:
            anon = {}
            run.measure(0, p, "rss_1000", lambda: rss_at_connections(ends[p]["web"], ends[p]["pids"], 1000, anon),
                        procs)
            if anon:
                run.measure(0, p, "anon_1000", lambda: dict(anon))
