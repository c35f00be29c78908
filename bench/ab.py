"""A/B of two Warren binaries on iperf3 through warren-tcp (1 and 4 streams),
alternating A B A B so both meet the same machine load; prints medians.

  python3 bench/ab.py OLD_WARREN NEW_WARREN [ROUNDS]

Each side may be EDGE_BINARY:AGENT_BINARY, to compare agent builds behind
the same edge (e.g. the size-optimised build for sites).

Used for issue 14 (protocol 2 against the binary before it); not a suite:
it writes no results file.
"""
import sys, os, json, statistics, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Procs, free_port, wait_port, start_warren, run_tool, rss_kb
bins = {"old": sys.argv[1], "new": sys.argv[2]}
split = {n: (b.split(":", 1) + [None])[:2] for n, b in bins.items()}
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 4
work = tempfile.mkdtemp(prefix="ab-")
procs = Procs(work)
try:
    ends = {}
    agent_pids = {}
    for name, exe in bins.items():
        for _ in range(5):
            ip = free_port()
            pr = procs.start(f"iperf-{name}", ["iperf3", "-s", "-p", str(ip)])
            time.sleep(0.5)
            if pr.poll() is None:
                break
            procs.procs.remove(pr)
        wait_port(ip)
        pub = free_port()
        res = (f'[[resource]]\nname = "iperf"\ntype = "tcp"\nlisten = "127.0.0.1:{pub}"\n'
               f'targets = [{{ site = "bench", address = "127.0.0.1:{ip}" }}]\n')
        edge_exe, agent_exe = split[name]
        w = start_warren(procs, edge_exe, work, name, "tcp", resources_toml=res, allow=[f"127.0.0.1:{ip}/tcp"],
                         agent_exe=agent_exe)
        agent_pids[name] = w["pids"]["agent"]
        wait_port(pub)
        ends[name] = pub
    time.sleep(2)
    for n, pid in agent_pids.items():
        print(n, "idle agent", f"VmRSS {rss_kb(pid) / 1024:.1f} MiB", f"RssAnon {rss_kb(pid, 'RssAnon') / 1024:.1f} MiB")
    out = {(n, p): [] for n in bins for p in (1, 4)}
    for r in range(rounds):
        for p in (1, 4):
            for n in bins:
                j = json.loads(run_tool(["iperf3", "-c", "127.0.0.1", "-p", str(ends[n]), "-P", str(p), "-t", "4", "-J"], 60))
                out[(n, p)].append(j["end"]["sum_received"]["bits_per_second"] / 1e9)
    for (n, p), v in out.items():
        print(n, f"P{p}", f"median {statistics.median(v):.2f}", [f"{x:.2f}" for x in v])
finally:
    procs.stop()
