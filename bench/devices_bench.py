#!/usr/bin/env python3
"""Devices: a phone (Debian's wireguard-go) reaching a service at home,
through Warren and through the seed's own design built from the same parts
(root: network namespaces).

Namespaces: `phone` and `home`, each joined to this one (the VPS) by a
veth; this namespace routes between them. At home, on its loopback, two
addresses of the same service (nginx, 23-byte body; iperf3): one reached
through each path, so both paths run side by side in the same rounds.
  warren      phone wbp0 (wireguard-go, the config `warren device add`
              printed) -> the edge's WireGuard endpoint and netstack on the
              VPS -> the TCP+TLS link -> the agent at home -> the service
  wg-gateway  phone wbp1 (wireguard-go) -> UDP routed by the VPS -> home's
              own wireguard-go gateway (wbgw) with an nftables allowlist
              (only the service's ports, only from the tunnel) -> the service
Metrics: iperf3 single stream (Gbit/s, phone -> home) and wrk c50
keep-alive (req/s), both run in the phone's namespace.

  bench/devices_bench.py --warren target/release/warren [--reps 5] [--duration 4]
"""
import argparse, os, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Procs, Run, api, free_port, run_meta, run_tool, tool_version, wait_agent, wrk  # noqa: E402
import tunnel_bench  # noqa: E402

PATHS = ["warren", "wg-gateway"]
SERVICE = {"warren": "192.168.78.10", "wg-gateway": "192.168.79.10"}
IPERF = {"warren": 5201, "wg-gateway": 5202}
PHONE, HOME = "wb-phone", "wb-home"
SECRET = "bench-secret-0123456789"


def sh(*args, check=True):
    out = subprocess.run(args, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def ns(name, *args):
    return ["ip", "netns", "exec", name, *args]


def keypair():
    private = sh("wg", "genkey").strip()
    public = subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True).stdout.strip()
    return private, public


def net_up():
    for n in (PHONE, HOME):
        sh("ip", "netns", "delete", n, check=False)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
    for n, sub, out, inn in ((PHONE, "10.247.0", "wbpo", "wbpi"), (HOME, "10.246.0", "wbho", "wbhi")):
        sh("ip", "link", "delete", out, check=False)
        sh("ip", "netns", "add", n)
        sh("ip", "link", "add", out, "type", "veth", "peer", "name", inn)
        sh("ip", "link", "set", inn, "netns", n)
        sh("ip", "addr", "add", f"{sub}.1/30", "dev", out)
        sh("ip", "link", "set", out, "up")
        sh("ip", "-n", n, "addr", "add", f"{sub}.2/30", "dev", inn)
        sh("ip", "-n", n, "link", "set", inn, "up")
        sh("ip", "-n", n, "link", "set", "lo", "up")
        sh("ip", "-n", n, "route", "add", "default", "via", f"{sub}.1")
    for addr in SERVICE.values():
        sh("ip", "-n", HOME, "addr", "add", f"{addr}/32", "dev", "lo")


def net_down():
    for n in (PHONE, HOME):
        sh("ip", "netns", "delete", n, check=False)


def wg_interface(procs, netns, name, private, address, listen, peer_public, endpoint, allowed, work):
    procs.start(f"wireguard-go-{netns}-{name}", ns(netns, "wireguard-go", "-f", name))
    for _ in range(100):
        if subprocess.run(["ip", "-n", netns, "link", "show", name], capture_output=True).returncode == 0:
            break
        time.sleep(0.05)
    else:
        raise SystemExit(f"wireguard-go made no {name} in {netns}")
    key = os.path.join(work, f"{netns}-{name}.key")
    with open(key, "w") as f:
        f.write(private + "\n")
    args = ["wg", "set", name, "private-key", key]
    if listen:
        args += ["listen-port", str(listen)]
    args += ["peer", peer_public, "allowed-ips", ",".join(allowed)]
    if endpoint:
        args += ["endpoint", endpoint, "persistent-keepalive", "25"]
    sh(*ns(netns, *args))
    sh("ip", "-n", netns, "addr", "add", address, "dev", name)
    sh("ip", "-n", netns, "link", "set", name, "mtu", "1420", "up")
    if endpoint:
        for a in allowed:
            sh("ip", "-n", netns, "route", "add", a, "dev", name)


def services(procs, work):
    conf = os.path.join(work, "nginx.conf")
    listens = "".join(f"listen {a}:80 backlog=4096; " for a in SERVICE.values())
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {work}/nginx.pid; error_log stderr;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  server {{ {listens} location / {{ return 200 "hello from the backend\\n"; }} }} }}
""")
    procs.start("nginx", ns(HOME, "nginx", "-c", conf, "-p", work))
    for p in PATHS:
        procs.start(f"iperf3-{p}", ns(HOME, "iperf3", "-s", "-B", SERVICE[p], "-p", str(IPERF[p])))
    time.sleep(0.5)


def warren_path(procs, exe, work):
    """The edge here, the agent at home, a device for the phone's wg0."""
    d = os.path.join(work, "warren")
    os.makedirs(d)
    tunnel, admin, wg = free_port(), free_port(), free_port()
    svc = SERVICE["warren"]
    with open(os.path.join(d, "edge.toml"), "w") as f:
        f.write(f'[edge]\ndata_dir = "data"\ntunnel_listen = "10.246.0.1:{tunnel}"\nadmin_listen = "127.0.0.1:{admin}"\n'
                f'[devices]\nlisten = "10.247.0.1:{wg}"\nendpoint = "10.247.0.1:{wg}"\naddress = "100.96.0.0/24"\n'
                f'[[site]]\nid = "bench"\nsecret = "{SECRET}"\n'
                f'[[resource]]\nname = "svc"\ntype = "private"\nsite = "bench"\naddress = "{svc}"\n'
                f'ports = ["80/tcp", "{IPERF["warren"]}/tcp"]\n')
    pin = run_tool([exe, "edge", "--config", "edge.toml", "--print-pin"], 30, cwd=d).strip()
    env = dict(os.environ, WARREN_LOG="error")
    edge = procs.start("warren-edge", [exe, "edge", "--config", "edge.toml"], cwd=d, env=env)
    agent = procs.start("warren-agent", ns(HOME, exe, "site", "--endpoint", f"https://10.246.0.1:{tunnel}", "--id",
                                           "bench", "--secret", SECRET, "--pin", pin, "--transport", "tcp",
                                           "--allow", f"{svc}:80/tcp", "--allow", f"{svc}:{IPERF['warren']}/tcp"),
                        cwd=d, env=env)
    token = wait_agent(admin, d, procs)
    email = "bench@example.com"
    calls = (("POST", "/api/v1/users", {"email": email, "password": "correct horse battery staple"}),
             ("PUT", "/api/v1/policy", {"text": f'[[grants]]\nsrc = ["{email}"]\ndst = ["svc"]\n'}),
             ("POST", "/api/v1/devices", {"name": "phone", "user": email}))
    for method, path, body in calls:
        status, reply = api(admin, token, method, path, body)
        if status not in (200, 201):
            raise SystemExit(f"{method} {path}: {status} {reply}")
    config = reply["config"]
    field = {line.split(" = ", 1)[0]: line.split(" = ", 1)[1] for line in config.splitlines() if " = " in line}
    wg_interface(procs, PHONE, "wbp0", field["PrivateKey"], field["Address"], None, field["PublicKey"],
                 field["Endpoint"], [a.strip() for a in field["AllowedIPs"].split(",")], work)
    return {"edge": edge.pid, "agent": agent.pid}


def gateway_path(procs, work):
    """The seed's design: the phone's wg1 to home's own wireguard-go gateway
    (UDP routed through the VPS), home's nftables allowing only the
    service's ports from the tunnel."""
    phone_private, phone_public = keypair()
    home_private, home_public = keypair()
    svc = SERVICE["wg-gateway"]
    # Distinct names: wireguard-go's control sockets (/var/run/wireguard/NAME.sock)
    # are shared by every namespace.
    wg_interface(procs, HOME, "wbgw", home_private, "10.99.0.1/24", 51821, phone_public, None,
                 ["10.99.0.2/32"], work)
    wg_interface(procs, PHONE, "wbp1", phone_private, "10.99.0.2/32", None, home_public, "10.246.0.2:51821",
                 [f"{svc}/32"], work)
    rules = os.path.join(work, "gateway.nft")
    with open(rules, "w") as f:
        f.write(f"""table inet gateway {{
  chain input {{ type filter hook input priority 0; policy accept;
    iifname "wbgw" ip daddr {svc} tcp dport {{ 80, {IPERF['wg-gateway']} }} accept
    iifname "wbgw" ct state established,related accept
    iifname "wbgw" drop
  }}
}}
""")
    sh(*ns(HOME, "nft", "-f", rules))


def iperf(path, duration):
    return tunnel_bench.iperf(IPERF[path], 1, duration, host=SERVICE[path], prefix=ns(PHONE))


def http(path, duration):
    # wrk from the phone's namespace.
    return wrk(f"http://{SERVICE[path]}/", duration, 50, prefix=ns(PHONE))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warren", required=True)
    ap.add_argument("--reps", type=int, default=int(os.environ.get("REPS", 5)))
    ap.add_argument("--duration", type=int, default=int(os.environ.get("DURATION", 4)))
    args = ap.parse_args()
    exe = os.path.abspath(args.warren)
    params = {"reps": args.reps, "duration_s": args.duration, "paths": PATHS}
    run = Run("devices", run_meta(exe), params, {
        "warren": tool_version([exe, "--version"]), "wireguard-go": tool_version(["wireguard-go", "--version"]),
        "iperf3": tool_version(["iperf3", "--version"]), "wrk": tool_version(["wrk", "-v"]),
        "nft": tool_version(["nft", "--version"])})
    work = tempfile.mkdtemp(prefix="warren-devices-bench-")
    procs = Procs(work)
    forwarding = sh("sysctl", "-n", "net.ipv4.ip_forward").strip()
    try:
        net_up()
        services(procs, work)
        pids = warren_path(procs, exe, work)
        gateway_path(procs, work)
        time.sleep(1)
        for rnd in range(1, args.reps + 1):
            for metric, fn in (("iperf_1", iperf), ("http_keepalive", http)):
                for p in PATHS:
                    run.measure(rnd, p, metric, lambda: fn(p, args.duration), procs)
                time.sleep(0.5)
        run.doc["pids"] = pids
    finally:
        procs.stop()
        net_down()
        sh("sysctl", "-qw", f"net.ipv4.ip_forward={forwarding}")
        shutil.rmtree(work, ignore_errors=True)
    out = run.write()
    print(f"wrote {out}")
    sys.exit(1 if run.errors else 0)


if __name__ == "__main__":
    main()
