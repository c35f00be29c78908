#!/usr/bin/env python3
"""Scale: N real agents on one edge; memory, and time back to serving after an edge kill -9 (stdlib only).

One edge (SQLite store and data directory in a temporary directory, fixed ports
below the kernel's ephemeral range so that a restart can always bind them
again) gets N sites through its REST API (`POST /api/v1/sites`, a secret each)
and one TCP resource per site (`POST /api/v1/resources`, its own edge port,
target: one shared asyncio echo server in a child process). One resource per
site is what "serving" means here: a site counts as serving when an echo
through *its* resource comes back whole, so every one of the N links is
proven to carry a stream, not just a sample of them. It also makes the edge
hold N listeners, as a real edge with N sites would.

The agents are N real `warren site` processes, not N agents in one process:
the claims are about real agents (the RSS of a process a user runs at home,
with its own runtime, TLS state and allocator arenas; the edge's work with N
independent dialers, each with its own jittered backoff and its own TCP or
QUIC connection) and an in-process fleet would share a runtime, a TLS
config and an allocator, and measure neither. 1,000 processes cost this
machine a few GiB, which it has.

Source addresses. The edge admits at most 8 unauthenticated handshakes per
source address (crates/edge/src/tunnel/admit.rs), and on loopback every
connection comes from 127.0.0.1 whatever address it dials. N agents at N
homes have N addresses, so by default each agent is given its own loopback
source (127.0.x.y) by a 30-line LD_PRELOAD shim, compiled here with cc,
that binds the agent's sockets to it (TCP: before connect; QUIC: its
0.0.0.0:0 UDP socket). The edge's `agent_connected` lines show the sources it
saw; the run records how many were distinct. `--same-source` leaves the shim
out: all N agents then dial from 127.0.0.1, the case of a fleet behind one
NAT, and the per-source limit paces their return (recorded as the edge's
`agent_refused` reasons per round).

Measured, in the common sample format (bench/common.py Run):
  round 0   start: all N agents launched -> all connected -> all serving
            edge_rss: the edge's VmRSS and RssAnon with N agents connected
            agent_rss: VmRSS and RssAnon of every agent (median and max), idle
  round r   restart: the edge killed with SIGKILL (as crash.py does), started
            again at once on the same ports and data directory; from the new
            edge's `edge_started` log line (tunnel bound) to the arrival of
            the line that makes all N sites connected (`agent_connected`,
            connected_ms) and to the last echo that came back (serving_ms);
            down_ms from the kill to `edge_started`. Each site is probed from
            the moment the edge logs its agent, at most 64 probes at once, a
            failed probe retried after 50 ms: the probes are this script's
            Python on the same 2 cores, so serving_ms is an upper bound.
            Then edge_rss and agent_rss again, and the edge's handshake
            failures by reason from its /metrics (too_many_from_source is
            counted there, and only logged at debug).
A round in which not all N are connected and serving within --timeout (60 s)
is a failed sample: the run goes on and is written as .failed.json.

  python3 bench/scale.py                                   # 1,000 agents, 3 restarts, tcp
  python3 bench/scale.py --agents 50 --rounds 2 --transport quic --exe /tmp/warren
"""
import argparse, asyncio, collections, ctypes, json, os, shutil, signal, socket, statistics
import re, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, Run, SampleError, api, resource_limit, run_meta, tool_version  # noqa: E402
from crash import Logged  # noqa: E402

TARGETS = {"connected_s": 2.0, "edge_rss_mib": 100, "agent_rss_mib": 8}
PROBES_AT_ONCE = 64
LOG = "info,quinn=warn,quinn_proto=warn,rustls=warn"

ECHO = r"""
import asyncio
async def echo(r, w):
    try:
        while True:
            d = await r.read(65536)
            if not d:
                break
            w.write(d)
            await w.drain()
    except OSError:
        pass
    finally:
        w.close()
async def main():
    s = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=4096)
    print(s.sockets[0].getsockname()[1], flush=True)
    await s.serve_forever()
asyncio.run(main())
"""

# Binds an agent's IPv4 sockets to WARREN_BENCH_SRC: a wildcard bind (QUIC's
# 0.0.0.0:0) is narrowed to it, and an unbound TCP socket dialing loopback is
# bound to it before connect.
SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
typedef int (*fn)(int, const struct sockaddr *, socklen_t);
static in_addr_t src(void) {
    static in_addr_t a; static int done;
    if (!done) { const char *s = getenv("WARREN_BENCH_SRC"); a = s ? inet_addr(s) : INADDR_NONE; done = 1; }
    return a;
}
static fn real(const char *name) { return (fn)dlsym(RTLD_NEXT, name); }
int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static fn b; if (!b) b = real("bind");
    if (addr && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in) && src() != INADDR_NONE) {
        struct sockaddr_in a; memcpy(&a, addr, sizeof a);
        if (a.sin_addr.s_addr == htonl(INADDR_ANY)) { a.sin_addr.s_addr = src(); return b(fd, (struct sockaddr *)&a, sizeof a); }
    }
    return b(fd, addr, len);
}
int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static fn c, b; if (!c) { c = real("connect"); b = real("bind"); }
    if (addr && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in) && src() != INADDR_NONE
        && (ntohl(((const struct sockaddr_in *)addr)->sin_addr.s_addr) >> 24) == 127) {
        struct sockaddr_in cur; socklen_t cl = sizeof cur; int type; socklen_t tl = sizeof type;
        if (getsockname(fd, (struct sockaddr *)&cur, &cl) == 0 && cur.sin_family == AF_INET && cur.sin_port == 0
            && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_STREAM) {
            struct sockaddr_in a; memset(&a, 0, sizeof a);
            a.sin_family = AF_INET; a.sin_addr.s_addr = src();
            b(fd, (struct sockaddr *)&a, sizeof a);
        }
    }
    return c(fd, addr, len);
}
"""


def fixed_ports(n, start=10000):
    """n ports free for TCP and UDP on 127.0.0.1, below the ephemeral range
    (an agent's outgoing connection can never be sitting on one when the
    restarted edge binds it)."""
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    ports, port = [], start
    while len(ports) < n:
        if port >= low:
            raise SystemExit(f"not {n} free ports between {start} and {low}")
        ok = True
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            ports.append(port)
        port += 1
    return ports


def status_kb(pid):
    """{vmrss_kb, rssanon_kb, rssfile_kb} of a process (RssFile: mapped
    file pages, mostly the warren binary's code, shared by every process
    running it)."""
    got = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "RssAnon:", "RssFile:")):
                    got[line.split(":")[0].lower() + "_kb"] = int(line.split()[1])
    except OSError as e:
        raise SampleError(f"cannot read /proc/{pid}/status: {e}")
    if len(got) != 3:
        raise SampleError(f"no VmRSS/RssAnon/RssFile for pid {pid}")
    return got


def handshake_failures(admin):
    """The edge's tunnel handshake failures by reason since it started
    (/metrics): too_many_from_source is only logged at debug, so the log
    alone would not show the per-source limit at work."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError as e:
        print(f"     cannot read the edge's /metrics: {e}", flush=True)
        return {"metrics_unreadable": 1}
    return {m.group(1): int(float(m.group(2))) for m in re.finditer(
        r'^warren_edge_tunnel_handshake_failures(?:_total)?\{reason="([^"]+)"\} (\S+)$', text, re.M)}


def die_with_parent():
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no agent outlives a crashed script


class EdgeLog:
    """Reads a Logged edge's JSON lines incrementally: which sites have an
    agent, the sources they came from, refusals by reason."""

    def __init__(self, edge):
        self.edge, self.i = edge, 0
        self.agents = collections.Counter()
        self.full_at, self.sources, self.refused = None, set(), collections.Counter()

    def poll(self, n):
        """New sites with an agent since the last call, as (arrival time, site)."""
        with self.edge.cond:
            new = self.edge.lines[self.i:]
            self.i += len(new)
        fresh = []
        for t, line in new:
            event = line.get("event")
            if event == "agent_connected":
                site = line.get("site")
                if self.agents[site] == 0:
                    fresh.append((t, site))
                self.agents[site] += 1
                self.sources.add(str(line.get("remote", "")).rsplit(":", 1)[0])
                if self.full_at is None and sum(1 for c in self.agents.values() if c > 0) >= n:
                    self.full_at = t
            elif event == "agent_disconnected":
                self.agents[line.get("site")] -= 1
            elif event in ("agent_refused", "handshake_failed"):
                self.refused[f"{event}:{line.get('reason')}"] += 1
        return fresh

    def connected(self):
        return sum(1 for c in self.agents.values() if c > 0)


async def echo_through(port, payload, timeout=2.0):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    try:
        w.write(payload)
        await w.drain()
        w.write_eof()
        got = await asyncio.wait_for(r.read(), timeout)
        return got == payload
    except (OSError, asyncio.TimeoutError):
        return False
    finally:
        w.close()


async def serving_at(port, deadline, gate):
    """Monotonic time of the first whole echo through `port`, or None."""
    while time.monotonic() < deadline:
        async with gate:
            ok = await echo_through(port, f"scale {port}".encode())
        if ok:
            return time.monotonic()
        await asyncio.sleep(0.05)
    return None


async def all_serving(log, ports, deadline, procs_alive):
    """Probes each site once the edge has logged its agent, until all of
    them answered or the deadline. Returns (all connected at, all serving at)."""
    gate = asyncio.Semaphore(PROBES_AT_ONCE)
    tasks = {}
    n, polls = len(ports), 0
    while time.monotonic() < deadline:
        for _, site in log.poll(n):
            if site not in tasks:
                tasks[site] = asyncio.create_task(serving_at(ports[site], deadline, gate))
        if len(tasks) == n and all(t.done() for t in tasks.values()):
            break
        polls += 1
        if polls % 100 == 0:  # 1,000 waitpid calls: not every 5 ms
            procs_alive()
        await asyncio.sleep(0.005)
    for t in tasks.values():
        if not t.done():
            t.cancel()
    done = [t.result() for t in tasks.values() if t.done() and not t.cancelled()]
    serving = [t for t in done if t is not None]
    if log.full_at is None or len(serving) < n:
        raise SampleError(f"{log.connected()} of {n} agents connected and {len(serving)} of {n} sites serving "
                          f"within the timeout; edge refusals {dict(log.refused)}")
    return log.full_at, max(serving)


class Fleet:
    def __init__(self, args, exe, work):
        self.args, self.exe, self.work = args, exe, work
        self.n = args.agents
        self.dir = os.path.join(work, "edge")
        os.makedirs(os.path.join(work, "agents"))
        os.makedirs(self.dir)
        self.edge = self.echo = self.shim = None
        self.agents = []
        ports = fixed_ports(self.n + 2)
        self.tunnel, self.admin, self.resource_ports = ports[0], ports[1], ports[2:]
        self.sites = [f"s{i:04d}" for i in range(self.n)]
        self.ports = dict(zip(self.sites, self.resource_ports))

    # -- the pieces
    def start_echo(self):
        self.echo = subprocess.Popen([sys.executable, "-c", ECHO], stdout=subprocess.PIPE, text=True,
                                     preexec_fn=die_with_parent)
        self.echo_port = int(self.echo.stdout.readline())

    def build_shim(self):
        src = os.path.join(self.work, "srcshim.c")
        self.shim = os.path.join(self.work, "srcshim.so")
        with open(src, "w") as f:
            f.write(SHIM)
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", self.shim, src, "-ldl"], check=True)

    def start_edge(self):
        self.edge = Logged("edge", [self.exe, "edge", "--config", "edge.toml"], self.dir,
                           os.path.join(self.work, "edge.log"))
        if not self.edge.wait_event("edge_started", 0, 30):
            raise SampleError(f"the edge did not start (log: {self.work}/edge.log)")
        return self.edge.events("edge_started")[0]

    def alive(self):
        if self.edge.proc.poll() is not None:
            raise SampleError(f"the edge exited with {self.edge.proc.returncode} (log: {self.work}/edge.log)")
        dead = [(s, p.returncode) for s, p in zip(self.sites, self.agents) if p.poll() is not None]
        if dead:
            raise SampleError(f"{len(dead)} agent(s) exited, first {dead[0][0]} with {dead[0][1]} "
                              f"(log: {self.work}/agents/{dead[0][0]}.log)")

    def setup(self):
        with open(os.path.join(self.dir, "edge.toml"), "w") as f:
            f.write(f'[edge]\ndata_dir = "data"\ntunnel_listen = "127.0.0.1:{self.tunnel}"\n'
                    f'admin_listen = "127.0.0.1:{self.admin}"\n')
        self.start_echo()
        if not self.args.same_source:
            self.build_shim()
        _, started = self.start_edge()
        self.pin = started["pin"]
        with open(os.path.join(self.dir, "data", "admin-token")) as f:
            self.token = f.read().strip()
        t = time.monotonic()
        self.secrets = {}
        for site in self.sites:
            status, body = api(self.admin, self.token, "POST", "/api/v1/sites", {"id": site})
            if status != 201:
                raise SampleError(f"POST /api/v1/sites {site}: {status} {body}")
            self.secrets[site] = body["secret"]
            status, body = api(self.admin, self.token, "POST", "/api/v1/resources", {
                "name": f"r{site[1:]}", "type": "tcp", "listen": f"127.0.0.1:{self.ports[site]}",
                "targets": [{"site": site, "address": f"127.0.0.1:{self.echo_port}"}]})
            if status != 201:
                raise SampleError(f"POST /api/v1/resources for {site}: {status} {body}")
        self.api_s = round(time.monotonic() - t, 2)
        print(f"  {self.n} sites and resources created through the API in {self.api_s} s", flush=True)

    def launch(self):
        """Starts the N agents (each with its own source address unless
        --same-source), --stagger ms apart (spawning is slow enough on 2 cores: ~10 ms each)."""
        for i, site in enumerate(self.sites):
            env = dict(os.environ, WARREN_SECRET=self.secrets[site], WARREN_LOG=LOG)
            if self.shim:
                env.update(LD_PRELOAD=self.shim, WARREN_BENCH_SRC=f"127.0.{1 + i // 250}.{1 + i % 250}")
            with open(os.path.join(self.work, "agents", f"{site}.log"), "wb") as log:
                self.agents.append(subprocess.Popen(
                    [self.exe, "site", "--endpoint", f"https://127.0.0.1:{self.tunnel}", "--id", site,
                     "--pin", self.pin, "--transport", self.args.transport,
                     "--allow", f"127.0.0.1:{self.echo_port}/tcp", "--log-format", "json"],
                    env=env, cwd=self.work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                    preexec_fn=die_with_parent))
            if self.args.stagger:
                time.sleep(self.args.stagger / 1000)

    # -- the measurements
    def start_all(self):
        log = EdgeLog(self.edge)
        t0 = time.monotonic()
        self.launch()
        launched = time.monotonic()
        print(f"  {self.n} agents launched in {launched - t0:.1f} s", flush=True)
        connected, serving = self.measured(lambda: asyncio.run(
            all_serving(log, self.ports, launched + self.args.timeout, self.alive)))
        self.sources = len(log.sources)
        return {"launch_ms": round((launched - t0) * 1000, 1), "connected_ms": round((connected - t0) * 1000, 1),
                "serving_ms": round((serving - t0) * 1000, 1), "sources": len(log.sources)}

    def restart(self):
        old = self.edge
        killed = time.monotonic()
        old.proc.send_signal(signal.SIGKILL)
        old.proc.wait()
        if old.proc.returncode != -signal.SIGKILL:
            raise SampleError(f"the edge ended with {old.proc.returncode}, not by SIGKILL")
        spawned = time.monotonic()
        listening, _ = self.start_edge()
        log = EdgeLog(self.edge)
        try:
            connected, serving = self.measured(lambda: asyncio.run(
                all_serving(log, self.ports, listening + self.args.timeout, self.alive)))
        finally:
            self.last_refused = dict(log.refused)
            self.last_failures = handshake_failures(self.admin)
        return {"connected_ms": round((connected - listening) * 1000, 1),
                "serving_ms": round((serving - listening) * 1000, 1),
                "down_ms": round((listening - killed) * 1000, 1),
                "spawn_to_listen_ms": round((listening - spawned) * 1000, 1),
                "sources": len(log.sources)}

    def agents_say(self):
        """What the agents last logged, counted: where a failed round stuck."""
        last = collections.Counter()
        for site in self.sites:
            try:
                with open(os.path.join(self.work, "agents", f"{site}.log"), "rb") as f:
                    f.seek(max(0, os.path.getsize(f.name) - 2000))
                    line = json.loads(f.read().decode(errors="replace").strip().splitlines()[-1])
                last[f"{line.get('event')}: {line.get('message', '')[:80]}"] += 1
            except (OSError, ValueError, IndexError):
                last["(no log line)"] += 1
        return "; ".join(f"{n} x {what}" for what, n in last.most_common(4))

    def measured(self, fn):
        """fn(), its SampleError completed with what the agents last said."""
        try:
            return fn()
        except SampleError as e:
            raise SampleError(f"{e}; agents' last log lines: {self.agents_say()}")

    def edge_rss(self):
        self.alive()
        return status_kb(self.edge.proc.pid)

    def agent_rss(self):
        self.alive()
        got = [status_kb(p.pid) for p in self.agents]
        out = {"n": len(got)}
        for key in ("vmrss_kb", "rssanon_kb", "rssfile_kb"):
            xs = [g[key] for g in got]
            out[f"median_{key}"] = int(statistics.median(xs))
            out[f"max_{key}"] = max(xs)
        return out

    def stop(self):
        procs = [p for p in self.agents] + ([self.edge.proc] if self.edge else []) + ([self.echo] if self.echo else [])
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p in procs:
            p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3, help="edge restarts")
    ap.add_argument("--transport", choices=("tcp", "quic"), default="tcp")
    ap.add_argument("--exe", "--warren", dest="exe", default=os.path.join(REPO, "target", "release", "warren"))
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds for all agents to connect and serve")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds of quiet before each memory reading")
    ap.add_argument("--stagger", type=float, default=0.0, help="ms between agent launches")
    ap.add_argument("--same-source", action="store_true",
                    help="all agents dial from 127.0.0.1 (one NAT); default: one loopback source each")
    args = ap.parse_args()
    exe = os.path.abspath(args.exe)
    if not os.access(exe, os.X_OK):
        ap.error(f"{exe} is not there: cargo build --release -p warren (or pass --exe)")
    if not 1 <= args.agents <= 9000:
        ap.error("--agents: 1 to 9000")
    resource_limit()
    path = f"warren-{args.transport}"
    params = {"reps": args.rounds, "agents": args.agents, "transport": args.transport, "paths": [path],
              "sources": "one" if args.same_source else "per-agent", "timeout_s": args.timeout,
              "settle_s": args.settle, "stagger_ms": args.stagger, "probes_at_once": PROBES_AT_ONCE,
              "signal": "SIGKILL", "targets": TARGETS}
    run = Run("scale", run_meta(exe), params, {"warren": tool_version([exe, "--version"])})
    work = tempfile.mkdtemp(prefix="warren-bench-scale-")
    fleet = Fleet(args, exe, work)
    try:
        fleet.setup()
        run.doc["params"]["api_setup_s"] = fleet.api_s
        start = run.measure(0, path, "start", fleet.start_all)
        if start["error"]:
            raise SampleError("not every agent came up; no restart measured")
        time.sleep(args.settle)
        run.measure(0, path, "edge_rss", fleet.edge_rss)
        run.measure(0, path, "agent_rss", fleet.agent_rss)
        for rnd in range(1, args.rounds + 1):
            s = run.measure(rnd, path, "restart", fleet.restart)
            s["edge_refusals"] = fleet.last_refused
            s["edge_handshake_failures"] = fleet.last_failures
            if fleet.last_refused or fleet.last_failures:
                print(f"     edge log refusals {fleet.last_refused}; /metrics handshake failures "
                      f"{fleet.last_failures}", flush=True)
            if s["error"]:
                continue
            time.sleep(args.settle)
            run.measure(rnd, path, "edge_rss", fleet.edge_rss)
            run.measure(rnd, path, "agent_rss", fleet.agent_rss)
    except (SampleError, OSError, subprocess.CalledProcessError) as e:
        run.abort(f"{type(e).__name__}: {e}")
    finally:
        fleet.stop()
    out = run.write()
    print(f"\nraw results: {os.path.relpath(out)}\n")
    import report
    print(report.render(report.load(out), out))
    if run.errors:
        print(f"\n{len(run.errors)} failure(s); logs kept in {work}:", file=sys.stderr)
        for e in run.errors:
            print(f"  {e}", file=sys.stderr)
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
