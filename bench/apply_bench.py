"""Apply suite: how soon a change made through the admin API carries traffic.

One edge and one agent per path (warren-tcp, warren-quic: the agent's link),
two banner servers (A and B: accept, send one letter, close). Each round,
on each path in turn (interleaved), on a fresh resource and port:
  create      POST /api/v1/resources (target A) answered 201 -> first "A" through the new listener
  update      PUT  /api/v1/resources/NAME (target B) answered 200 -> first "B"
  cli_update  `warren resource update NAME --target bench=A` started -> first "A" (CLI process included)
  delete      DELETE answered 204 -> the port refuses connections
The figures the timed assertions of tests/resources_api.rs and
tests/control_plane_cli.rs used to hold. A change that does not show within
10 s is a failed sample.
"""
import os, socket, subprocess, threading, time

from common import SampleError, api, free_port, start_warren

PATHS = ["warren-tcp", "warren-quic"]
DEADLINE = 10.0


def banner(letter):
    """A TCP server that sends `letter` to each connection and closes it."""
    srv = socket.create_server(("127.0.0.1", 0), backlog=256)

    def serve():
        while True:
            c, _ = srv.accept()
            try:
                c.sendall(letter.encode())
            finally:
                c.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


def answer(port):
    """What the listener on `port` says, or None when it refuses."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(2)
            got = b""
            while chunk := s.recv(16):
                got += chunk
            return got.decode(errors="replace")
    except OSError:
        return None


def until(port, want, started, what):
    """Milliseconds from `started` until `port` answers `want` (None: refuses)."""
    last = "nothing"
    while time.perf_counter() - started < DEADLINE:
        got = answer(port)
        if got == want:
            return {"ms": (time.perf_counter() - started) * 1000}
        last = got
        time.sleep(0.0005)
    raise SampleError(f"{what}: port {port} still answers {last!r} {DEADLINE:.0f} s later, wanted {want!r}")


def spec(name, port, target):
    return {"name": name, "type": "tcp", "listen": f"127.0.0.1:{port}",
            "targets": [{"site": "bench", "address": f"127.0.0.1:{target}"}]}


def call(edge, method, path, body, want):
    status, got = api(edge["admin"], edge["token"], method, path, body)
    started = time.perf_counter()
    if status != want:
        raise SampleError(f"{method} {path}: {status} {got}, wanted {want}")
    return started


def cli_update(exe, edge, name, port, target):
    env = dict(os.environ, WARREN_API=f"http://127.0.0.1:{edge['admin']}", WARREN_TOKEN=edge["token"])
    started = time.perf_counter()
    out = subprocess.run([exe, "resource", "update", name, "--type", "tcp", "--listen", f"127.0.0.1:{port}",
                          "--target", f"bench=127.0.0.1:{target}"], env=env, capture_output=True, text=True,
                         timeout=30)
    if out.returncode != 0:
        raise SampleError(f"warren resource update exited {out.returncode}: {out.stderr.strip()[-300:]}")
    return started


def run(run, args, procs, work):
    a, b = banner("A"), banner("B")
    edges = {p: start_warren(procs, args.warren, work, f"apply-{p}", p.split("-")[1],
                             allow=(f"127.0.0.1:{a}/tcp", f"127.0.0.1:{b}/tcp")) for p in PATHS}
    rounds = args.apply_reps
    for rnd in range(1, rounds + 1):
        for p in PATHS:
            edge, name, port = edges[p], f"apply-{rnd}", free_port()
            path = f"/api/v1/resources/{name}"
            run.measure(rnd, p, "create", lambda: until(
                port, "A", call(edge, "POST", "/api/v1/resources", spec(name, port, a), 201), "create"), procs)
            run.measure(rnd, p, "update", lambda: until(
                port, "B", call(edge, "PUT", path, spec(name, port, b), 200), "update"), procs)
            run.measure(rnd, p, "cli_update", lambda: until(
                port, "A", cli_update(args.warren, edge, name, port, a), "cli update"), procs)
            run.measure(rnd, p, "delete", lambda: until(
                port, None, call(edge, "DELETE", path, None, 204), "delete"), procs)
