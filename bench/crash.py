#!/usr/bin/env python3
"""Edge crash recovery: time from a restarted edge to traffic, per transport (stdlib only).

For each transport, one edge publishes a TCP echo (served by this script) through
one agent. Each round kills every transport's edge in turn with SIGKILL (interleaved:
tcp quic tcp quic ...), starts it again at once on the same ports and data
directory (as systemd's Restart= would), and times the first echo that comes back
whole through the tunnel:

  from_listen_ms  from the new edge's `edge_started` log line (tunnel bound) to the echo
  from_spawn_ms   from starting the new process to the echo
  down_ms         from the kill to the new edge's `edge_started`

Before each kill the script waits a random pause (0 to --max-pause s, seeded), so
the kill falls anywhere in the agent's keepalive period. Each sample also records
`cause`, how the agent says it lost the old link (its `edge_link_lost` event): a
QUIC agent told by the restarted edge's stateless reset says `reset`, one that
waited out its idle timeout says `dead`.

Writes bench/results/crash-<commit>-<time>.json (.failed.json when a sample
failed) and prints median, min and max per transport. A sample with no echo
within --deadline is a failure: the run goes on, then exits 1 naming it.

  cargo build --release -p warren
  python3 bench/crash.py                       # target/release/warren, 10 rounds
  python3 bench/crash.py --reps 5 --transports tcp,quic,auto --warren target/debug/warren
"""
import argparse, json, os, random, shutil, signal, socket, statistics
import subprocess, sys, tempfile, threading, time

from common import run_meta  # noqa: E402  (bench/ is the script's directory)

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
RESULTS = os.path.join(BENCH, "results")
SECRET = "crash-bench-secret-0123456789"


def free_port():
    """A port free for both TCP and UDP (the tunnel listens on both)."""
    while True:
        t = socket.socket()
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()


def echo_server():
    """A TCP echo on 127.0.0.1 in threads; returns its port."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)

    def serve(conn):
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

    def accept():
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv.getsockname()[1]


def echo_once(port, payload, timeout=2.0):
    """One round trip through the tunnel; True when the payload came back whole."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            return got == payload
    except OSError:
        return False


class Logged:
    """A process whose JSON log lines (stderr) are kept with the monotonic
    time each arrived, and copied to a file."""

    def __init__(self, name, args, cwd, logfile):
        env = dict(os.environ, WARREN_LOG="info,quinn=warn,quinn_proto=warn,rustls=warn")
        self.name = name
        self.proc = subprocess.Popen(args + ["--log-format", "json"], cwd=cwd, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.lines, self.cond = [], threading.Condition()
        out = open(logfile, "ab")

        def read():
            for raw in self.proc.stderr:
                out.write(raw)
                out.flush()
                try:
                    line = json.loads(raw)
                except ValueError:
                    line = {"raw": raw.decode(errors="replace")}
                with self.cond:
                    self.lines.append((time.monotonic(), line))
                    self.cond.notify_all()
            out.close()

        threading.Thread(target=read, daemon=True).start()

    def events(self, event):
        with self.cond:
            return [(t, l) for t, l in self.lines if l.get("event") == event]

    def wait_event(self, event, nth, timeout):
        """(arrival time, line) of the nth (0-based) `event`, or None at the timeout."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [(t, l) for t, l in self.lines if l.get("event") == event]
                if len(found) > nth:
                    return found[nth]
                left = end - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self.cond.wait(min(left, 0.05))


class Failure(Exception):
    pass


class Path:
    """One transport: an edge on fixed ports and one agent."""

    def __init__(self, exe, work, transport, echo_port, log_dir):
        self.exe, self.transport, self.log_dir = exe, transport, log_dir
        self.dir = os.path.join(work, transport)
        os.makedirs(self.dir)
        self.tunnel, self.admin, self.public = free_port(), free_port(), free_port()
        with open(os.path.join(self.dir, "edge.toml"), "w") as f:
            f.write(f'[edge]\ndata_dir = "data"\ntunnel_listen = "127.0.0.1:{self.tunnel}"\n'
                    f'admin_listen = "127.0.0.1:{self.admin}"\n\n'
                    f'[[site]]\nid = "bench"\nsecret = "{SECRET}"\n\n'
                    f'[[resource]]\nname = "echo"\ntype = "tcp"\nlisten = "127.0.0.1:{self.public}"\n'
                    f'targets = [{{ site = "bench", address = "127.0.0.1:{echo_port}" }}]\n')
        self.edge = self.start_edge()
        if not self.edge.wait_event("edge_started", 0, 30):
            raise Failure(f"{transport}: the edge did not start (log in {self.log_dir})")
        pin = self.edge.events("edge_started")[0][1]["pin"]
        self.agent = Logged(f"{transport}-agent", [
            exe, "site", "--endpoint", f"https://127.0.0.1:{self.tunnel}", "--id", "bench",
            "--secret", SECRET, "--pin", pin, "--transport", transport,
            "--allow", f"127.0.0.1:{echo_port}/tcp"], self.dir,
            os.path.join(log_dir, f"{transport}-agent.log"))
        if not self.agent.wait_event("edge_connected", 0, 30) or not self.echo_within(30, b"warm-up"):
            raise Failure(f"{transport}: no traffic through the first edge (logs in {self.log_dir})")

    def start_edge(self):
        return Logged(f"{self.transport}-edge", [self.exe, "edge", "--config", "edge.toml"], self.dir,
                      os.path.join(self.log_dir, f"{self.transport}-edge.log"))

    def echo_within(self, seconds, payload):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if echo_once(self.public, payload):
                return time.monotonic()
            time.sleep(0.01)
        return None

    def crash_and_time(self, rnd, deadline):
        """Kills the edge with SIGKILL, starts it again, times the first echo."""
        lost_before = len(self.agent.events("edge_link_lost"))
        connected_before = len(self.agent.events("edge_connected"))
        old = self.edge
        killed = time.monotonic()
        old.proc.send_signal(signal.SIGKILL)
        old.proc.wait()
        if old.proc.returncode != -signal.SIGKILL:
            raise Failure(f"the edge ended with {old.proc.returncode}, not by SIGKILL")
        spawned = time.monotonic()
        self.edge = self.start_edge()
        started = self.edge.wait_event("edge_started", 0, 30)
        if not started:
            raise Failure("the restarted edge did not start")
        listening = started[0]
        ok = self.echo_within(deadline, f"round {rnd}".encode())
        if ok is None:
            raise Failure(f"no echo within {deadline} s of the edge listening again")
        lost = self.agent.wait_event("edge_link_lost", lost_before, 5)
        back = self.agent.wait_event("edge_connected", connected_before, 5)
        return {
            "from_listen_ms": round((ok - listening) * 1000, 1),
            "from_spawn_ms": round((ok - spawned) * 1000, 1),
            "down_ms": round((listening - killed) * 1000, 1),
        }, {
            "cause": lost[1].get("cause") if lost else None,
            "reason": lost[1].get("reason") if lost else None,
            "reconnected_transport": back[1].get("transport") if back else None,
        }

    def stop(self):
        for p in (self.agent, self.edge):
            if p.proc.poll() is None:
                p.proc.kill()
            p.proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warren", default=os.path.join(REPO, "target", "release", "warren"))
    ap.add_argument("--reps", type=int, default=int(os.environ.get("CRASH_REPS", 10)), help="rounds")
    ap.add_argument("--transports", default="tcp,quic", help="comma-separated: tcp, quic, auto")
    ap.add_argument("--deadline", type=float, default=30.0, help="seconds to wait for traffic per sample")
    ap.add_argument("--max-pause", type=float, default=4.0,
                    help="random pause before each kill, up to this (s); the keepalive interval is 4 s")
    ap.add_argument("--seed", type=int, default=12)
    args = ap.parse_args()
    exe = os.path.abspath(args.warren)
    if not os.access(exe, os.X_OK):
        ap.error(f"{exe} is not there: cargo build --release -p warren (or pass --warren)")
    transports = args.transports.split(",")
    for t in transports:
        if t not in ("tcp", "quic", "auto"):
            ap.error(f"unknown transport {t!r}")
    rng = random.Random(args.seed)
    doc = dict(run_meta(exe), suite="crash", params={
        "reps": args.reps, "transports": transports, "deadline_s": args.deadline,
        "max_pause_s": args.max_pause, "seed": args.seed, "signal": "SIGKILL"})
    print(f"crash suite at {doc['commit'][:7]}{' (dirty)' if doc['dirty'] else ''}: {doc['params']}", flush=True)
    work = tempfile.mkdtemp(prefix="warren-bench-crash-")
    samples, errors, paths = [], [], {}
    echo_port = echo_server()
    try:
        for t in transports:
            paths[t] = Path(exe, work, t, echo_port, work)
        for rnd in range(1, args.reps + 1):
            for t in transports:
                pause = round(rng.uniform(0, args.max_pause), 3)
                time.sleep(pause)
                sample = {"round": rnd, "path": f"warren-{t}", "metric": "crash_recovery", "values": None,
                          "pause_s": pause, "error": None}
                try:
                    sample["values"], sample["agent"] = paths[t].crash_and_time(rnd, args.deadline)
                    v = sample["values"]
                    print(f"  r{rnd} warren-{t:5} from_listen {v['from_listen_ms']:8.1f} ms  from_spawn "
                          f"{v['from_spawn_ms']:8.1f} ms  down {v['down_ms']:6.1f} ms  "
                          f"cause {sample['agent']['cause']}", flush=True)
                except Failure as e:
                    sample["error"] = str(e)
                    errors.append(f"warren-{t} round {rnd}: {e}")
                    print(f"  FAILED warren-{t} round {rnd}: {e}", flush=True)
                    # A path that failed once stays broken for the rest of the run.
                    if paths[t].edge.proc.poll() is not None:
                        paths[t].edge = paths[t].start_edge()
                samples.append(sample)
    except Failure as e:
        errors.append(str(e))
        print(f"  ABORTED: {e}", flush=True)
    finally:
        for p in paths.values():
            p.stop()

    summary = {}
    for t in transports:
        vals = [s["values"]["from_listen_ms"] for s in samples if s["path"] == f"warren-{t}" and s["values"]]
        causes = sorted({str(s.get("agent", {}).get("cause")) for s in samples
                         if s["path"] == f"warren-{t}" and s["values"]})
        if vals:
            summary[f"warren-{t}"] = {"n": len(vals), "median_ms": round(statistics.median(vals), 1),
                                      "min_ms": min(vals), "max_ms": max(vals), "causes": causes}
    doc.update(samples=samples, errors=errors, summary=summary)
    os.makedirs(RESULTS, exist_ok=True)
    stamp = doc["date"].replace("-", "").replace(":", "")
    out = os.path.join(RESULTS, f"crash-{doc['commit'][:7]}-{stamp}{'.failed' if errors else ''}.json")
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")

    print(f"\nTime to traffic after an edge kill -9 and restart (from the new edge listening), "
          f"{args.reps} rounds, interleaved:\n")
    print(f"| path        | n  | median ms | min ms | max ms | agent's cause |")
    print(f"|-------------|----|-----------|--------|--------|---------------|")
    for name, s in summary.items():
        print(f"| {name:11} | {s['n']:2} | {s['median_ms']:9.1f} | {s['min_ms']:6.1f} | {s['max_ms']:6.1f} "
              f"| {', '.join(s['causes']):13} |")
    print(f"\nraw results: {os.path.relpath(out, os.getcwd())}")
    if errors:
        print(f"\n{len(errors)} failed sample(s); logs kept in {work}:", file=sys.stderr)
        for e in errors:
            print(f"  {e}", file=sys.stderr)
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
