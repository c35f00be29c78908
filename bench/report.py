#!/usr/bin/env python3
"""Renders the benchmark tables of bench/RESULTS.md from the raw result files.

  bench/report.py                      # print each suite's tables (newest complete file of each)
  bench/report.py --write              # replace the generated blocks of bench/RESULTS.md
  bench/report.py --check              # exit 1 if RESULTS.md's blocks differ from the files
  bench/report.py bench/results/X.json # print the tables of one file
  bench/report.py --write --results DIR  # from the files in DIR (e.g. only those to be committed)

A generated block sits between `<!-- bench:SUITE -->` and `<!-- /bench:SUITE -->`
and cites the file and the commit it comes from. Medians are over the
rounds of one run; a ratio is of two medians of the same run, followed by
the range of the per-round ratios (each round measured the paths back to
back, so a round's ratio shares its stretch of machine load). Files named
.failed.json (a sample failed) are never used.
"""
import collections, glob, json, os, re, statistics, sys

BENCH = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(BENCH, "results")
RESULTS_MD = os.path.join(BENCH, "RESULTS.md")

# rows: (label, metric, value, unit); ratios of medians (a / b) in ratio_units; diffs (a - b) in ms
TABLES = {
    "tunnel": {
        "rows": [("single-stream iperf3", "iperf_1", "gbps", "Gbit/s"),
                 ("4-stream iperf3", "iperf_4", "gbps", "Gbit/s"),
                 ("HTTP keep-alive (wrk c50)", "http_keepalive", "rps", "req/s"),
                 ("new connections (Connection: close)", "http_close", "rps", "req/s"),
                 ("idle RSS (once, before traffic)", "idle_rss", "*", "MiB"),
                 ("RSS at 1,000 connections", "rss_1000", "*", "MiB"),
                 ("idle RssAnon (heap and stacks, no code pages)", "idle_anon", "*", "MiB"),
                 ("RssAnon at 1,000 connections", "anon_1000", "*", "MiB")],
        "ratios": [("warren-tcp", "rathole"), ("warren-quic", "rathole"), ("warren-tcp", "rathole-noise")],
        "ratio_units": ("Gbit/s", "req/s"),
    },
    "https": {
        "rows": [("keep-alive (wrk c64)", "keepalive", "rps", "req/s"),
                 ("keep-alive p50", "keepalive", "p50_ms", "ms"), ("keep-alive p99", "keepalive", "p99_ms", "ms"),
                 ("half of Warren's peak: achieved", "half_load", "rps", "req/s"),
                 ("half load p50", "half_load", "p50_ms", "ms"), ("half load p99", "half_load", "p99_ms", "ms"),
                 ("new TLS connections (Connection: close)", "handshake", "rps", "req/s")],
        "ratios": [("warren-https", "nginx-tls-rathole"), ("warren-https", "warren-https-baseline")],
        "ratio_units": ("req/s",),
        "diffs": [("warren-https", "nginx-tls")],
    },
    "auth": {
        "rows": [("keep-alive (wrk c64)", "keepalive", "rps", "req/s"),
                 ("keep-alive p50", "keepalive", "p50_ms", "ms"), ("keep-alive p99", "keepalive", "p99_ms", "ms"),
                 ("half of the public peak: achieved", "half_load", "rps", "req/s"),
                 ("half load p50", "half_load", "p50_ms", "ms"), ("half load p99", "half_load", "p99_ms", "ms")],
        "ratios": [("warren-signed-in", "warren-public"), ("warren-signed-in", "warren-public-bytes")],
        "ratio_units": ("req/s",),
        "diffs": [("warren-signed-in", "warren-public"), ("warren-signed-in", "warren-public-bytes")],
    },
    "apply": {
        "rows": [("POST 201 -> first answer through the new listener", "create", "ms", "ms"),
                 ("PUT 200 -> the new target answers", "update", "ms", "ms"),
                 ("`warren resource update` started -> the new target answers", "cli_update", "ms", "ms"),
                 ("DELETE 204 -> the port refuses", "delete", "ms", "ms")],
        "ratios": [("warren-quic", "warren-tcp")],
        "ratio_units": ("ms",),
    },
    # Written by bench/ssh_bench.py.
    "ssh": {
        "rows": [("`... -- true` started -> exited", "login", "ms", "ms")],
        "ratios": [("warren-ssh", "plain-ssh"), ("ssh-via-edge", "plain-ssh")],
        "ratio_units": ("ms",),
        "diffs": [("warren-ssh", "plain-ssh"), ("warren-ssh", "ssh-via-edge")],
    },
    # Written by bench/devices_bench.py.
    "devices": {
        "rows": [("single-stream iperf3, phone -> home", "iperf_1", "gbps", "Gbit/s"),
                 ("HTTP keep-alive (wrk c50)", "http_keepalive", "rps", "req/s")],
        "ratios": [("warren", "wg-gateway")],
        "ratio_units": ("Gbit/s", "req/s"),
    },
    # Written by bench/crash.py.
    "crash": {
        "rows": [("restarted edge listening -> first echo through the tunnel", "crash_recovery", "from_listen_ms", "ms"),
                 ("restarted edge spawned -> first echo", "crash_recovery", "from_spawn_ms", "ms"),
                 ("kill -9 -> restarted edge listening", "crash_recovery", "down_ms", "ms")],
        "ratios": [("warren-quic", "warren-tcp")],
        "ratio_units": ("ms",),
    },
}


def load(path):
    with open(path) as f:
        return json.load(f)


def newest(suite, directory=RESULTS):
    """The newest complete result file of `suite`, or None."""
    files = [f for f in glob.glob(os.path.join(directory, f"{suite}-*.json")) if not f.endswith(".failed.json")]
    return max(files, key=lambda f: load(f)["date"], default=None)


def values(doc, path, metric, key):
    """{round: value} of the samples of one path and metric."""
    return {s["round"]: s["values"][key] for s in doc["samples"]
            if s["path"] == path and s["metric"] == metric and s["values"] and not s["error"]}


def fmt(v, unit):
    if v is None:
        return "n/a"
    return f"{v:.2f}" if unit in ("Gbit/s", "ms") else f"{v:,.0f}"


def spread(xs, f):
    return f"{f(min(xs))} / {f(statistics.median(xs))} / {f(max(xs))}" if xs else "n/a"


def memory(doc, path, metric):
    keys = sorted({k for s in doc["samples"] if s["path"] == path and s["metric"] == metric and s["values"]
                   for k in s["values"]}, key=lambda k: ("edge", "server", "agent", "client").index(k[:-3])
                  if k[:-3] in ("edge", "server", "agent", "client") else 9)
    if not keys:
        return "n/a", "n/a"
    per = {k: list(values(doc, path, metric, k).values()) for k in keys}
    med = " + ".join(f"{k[:-3]} {statistics.median(v) / 1024:.1f}" for k, v in per.items())
    rng = " + ".join(f"{k[:-3]} {min(v) / 1024:.1f}-{max(v) / 1024:.1f}" for k, v in per.items())
    return med, rng


def ratio_cell(doc, a, b, metric, key, diff=False):
    va, vb = values(doc, a, metric, key), values(doc, b, metric, key)
    if not va or not vb:
        return "n/a"
    ma, mb = statistics.median(va.values()), statistics.median(vb.values())
    rounds = [r for r in va if r in vb]
    if diff:
        per = [va[r] - vb[r] for r in rounds]
        return f"{ma - mb:+.2f} ms ({min(per):+.2f} to {max(per):+.2f})"
    per = [va[r] / vb[r] for r in rounds if vb[r]]
    return f"{ma / mb:.2f}x ({min(per):.2f}-{max(per):.2f})" if mb else "n/a"


def header(doc, path):
    rel = f"results/{os.path.basename(path)}"
    state = "clean tree" if not doc["dirty"] else f"uncommitted changes to {', '.join(doc['dirty_files'])}"
    p = doc["params"]
    shape = (f"{p['reps']} {'rounds' if doc['suite'] == 'scale' else 'interleaved rounds'}" + (f" of {p['duration_s']} s per sample" if "duration_s" in p else ""))
    load = (f", load average {doc['loadavg_start'][0]:.2f} at the start and {doc['loadavg_end'][0]:.2f} at the end"
            if "loadavg_start" in doc and "loadavg_end" in doc else "")
    return (f"Raw data: [`bench/{rel}`]({rel}): commit `{doc['commit'][:7]}` (\"{doc['subject']}\"), {state}; "
            f"{doc['date']}, nproc {doc['nproc']}{load}; {shape}. "
            "Cells are medians; ratios are followed by the range of the per-round ratios.")


def paths_of(doc):
    """The paths of a run, in the order of its parameters or of its samples."""
    return doc["params"].get("paths") or list(dict.fromkeys(s["path"] for s in doc["samples"]))


def causes(doc):
    """How the agents said they lost the killed edge (bench/crash.py's `agent.cause`), per path."""
    cells = []
    for p in paths_of(doc):
        got = [str((s.get("agent") or {}).get("cause")) for s in doc["samples"] if s["path"] == p and s["values"]]
        cells.append(f"{p}: " + ", ".join(f"{c} x{got.count(c)}" for c in sorted(set(got))))
    return "The agent's `edge_link_lost` cause per kill: " + "; ".join(cells) + "."


def scale(doc, path):
    """bench/scale.py: N agents on one edge, against the issue's targets."""
    p, t = doc["params"], doc["params"]["targets"]
    path_ = paths_of(doc)[0]
    med = lambda metric, key, rounds=None: [v for r, v in values(doc, path_, metric, key).items()
                                            if rounds is None or r in rounds]
    mib = lambda xs: f"{statistics.median(xs) / 1024:.1f}" if xs else "n/a"
    sec = lambda xs: f"{statistics.median(xs) / 1000:.2f}" if xs else "n/a"
    rng = lambda xs, f: f"{f(min(xs))}-{f(max(xs))}" if xs else "n/a"
    s = lambda v: f"{v / 1000:.2f}"
    m = lambda v: f"{v / 1024:.1f}"
    rows = [
        ("edge restarted (listening) -> all agents connected", "s", sec(med("restart", "connected_ms")),
         rng(med("restart", "connected_ms"), s), f"<= {t['connected_s']:g}"),
        ("edge restarted (listening) -> all sites serving (an echo through each)", "s",
         sec(med("restart", "serving_ms")), rng(med("restart", "serving_ms"), s), f"<= {t['connected_s']:g}"),
        ("kill -9 -> restarted edge listening", "s", sec(med("restart", "down_ms")),
         rng(med("restart", "down_ms"), s), ""),
        (f"edge VmRSS with {p['agents']:,} agents connected", "MiB", mib(med("edge_rss", "vmrss_kb")),
         rng(med("edge_rss", "vmrss_kb"), m), f"<= {t['edge_rss_mib']}"),
        ("edge RssAnon (heap: what the agents cost)", "MiB", mib(med("edge_rss", "rssanon_kb")),
         rng(med("edge_rss", "rssanon_kb"), m), ""),
        ("idle agent VmRSS, median of all agents", "MiB", mib(med("agent_rss", "median_vmrss_kb")),
         rng(med("agent_rss", "median_vmrss_kb"), m), f"<= {t['agent_rss_mib']}"),
        ("idle agent VmRSS, largest agent", "MiB", mib(med("agent_rss", "max_vmrss_kb")),
         rng(med("agent_rss", "max_vmrss_kb"), m), f"<= {t['agent_rss_mib']}"),
        ("idle agent RssAnon (its own heap and stacks), median / largest", "MiB",
         f"{mib(med('agent_rss', 'median_rssanon_kb'))} / {mib(med('agent_rss', 'max_rssanon_kb'))}", "", ""),
        ("idle agent RssFile (the binary's pages, shared between processes), median", "MiB",
         mib(med("agent_rss", "median_rssfile_kb")), "", ""),
        ("first start: all agents launched -> all serving", "s", sec(med("start", "serving_ms")), "", ""),
    ]
    refused = collections.Counter()
    for smp in doc["samples"]:
        refused.update(smp.get("edge_handshake_failures") or smp.get("edge_refusals") or {})
    sources = med("start", "sources")
    out = [header(doc, path), "",
           f"{p['agents']:,} `warren site` processes over {p['transport']}, one site and one TCP resource each, "
           f"{'each from its own loopback source address' if p['sources'] == 'per-agent' else 'all from 127.0.0.1'}"
           f"{f' ({sources[0]:,} distinct seen by the edge)' if sources else ''}; {p['reps']} edge restart{'s' if p['reps'] != 1 else ''} "
           "(SIGKILL, same ports and data directory); memory read once before the restarts and after each.", "",
           "| measure | unit | median | range | target |", "|---|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    out += ["", "Tunnel handshakes the restarted edges failed or refused (their /metrics, by reason): " +
            (", ".join(f"{k} x{v}" for k, v in sorted(refused.items())) if refused else "none") + "."]
    return "\n".join(out)


def render(doc, path):
    suite = doc["suite"]
    if suite == "scale":
        return scale(doc, path)
    spec = TABLES.get(suite)
    if spec is None:
        return generic(doc, path)
    paths = paths_of(doc)
    ratios = [(a, b) for a, b in spec.get("ratios", []) if a in paths and b in paths]
    diffs = [(a, b) for a, b in spec.get("diffs", []) if a in paths and b in paths]
    cols = [f"{a} / {b}" for a, b in ratios] + [f"{a} - {b}" for a, b in diffs]
    out = [header(doc, path), "", "| scenario | unit | " + " | ".join(paths + cols) + " |",
           "|---|---|" + "---|" * (len(paths) + len(cols))]
    noise = ["| scenario | unit | " + " | ".join(paths) + " |", "|---|---|" + "---|" * len(paths)]
    for label, metric, key, unit in spec["rows"]:
        if key == "*":
            cells = [memory(doc, p, metric) for p in paths]
            out.append(f"| {label} | {unit} | " + " | ".join(c[0] for c in cells) + " |" * (len(cols) + 1))
            noise.append(f"| {label} | {unit} | " + " | ".join(c[1] for c in cells) + " |")
            continue
        meds = []
        for p in paths:
            v = list(values(doc, p, metric, key).values())
            meds.append(fmt(statistics.median(v), unit) if v else "n/a")
        extra = [ratio_cell(doc, a, b, metric, key) if unit in spec["ratio_units"] else "" for a, b in ratios]
        extra += [ratio_cell(doc, a, b, metric, key, diff=True) if unit == "ms" else "" for a, b in diffs]
        out.append(f"| {label} | {unit} | " + " | ".join(meds + extra) + " |")
        noise.append(f"| {label} | {unit} | " + " | ".join(
            spread(list(values(doc, p, metric, key).values()), lambda v: fmt(v, unit)) for p in paths) + " |")
    if suite == "crash":
        out += ["", causes(doc)]
    memory_rows = any(key == "*" for _, _, key, _ in spec["rows"])
    out += ["", f"Spread over the rounds (min / median / max{'; memory: min-max' if memory_rows else ''}):", ""] + noise
    return "\n".join(out)


def generic(doc, path):
    """Any other suite written in the common sample shape: min / median / max per metric and path."""
    paths = paths_of(doc)
    rows = sorted({(s["metric"], k) for s in doc["samples"] if s["values"] for k in s["values"]})
    out = [header(doc, path), "", "| metric | " + " | ".join(paths) + " |", "|---|" + "---|" * len(paths)]
    for metric, key in rows:
        out.append(f"| {metric} {key} (min / median / max) | " + " | ".join(
            spread(list(values(doc, p, metric, key).values()), lambda v: f"{v:,.2f}") for p in paths) + " |")
    return "\n".join(out)


def blocks(text):
    return re.findall(r"<!-- bench:(\w+) -->\n.*?<!-- /bench:\1 -->", text, re.S)


def rewrite(text, directory=RESULTS):
    """RESULTS.md with every generated block rendered from its suite's newest file."""
    def block(m):
        suite = m.group(1)
        path = newest(suite, directory)
        body = render(load(path), path) if path else f"No complete `bench/results/{suite}-*.json` yet."
        return f"<!-- bench:{suite} -->\n{body}\n<!-- /bench:{suite} -->"
    return re.sub(r"<!-- bench:(\w+) -->\n.*?<!-- /bench:\1 -->", block, text, flags=re.S)


def main(argv):
    directory = RESULTS
    if len(argv) >= 2 and argv[-2] == "--results":
        directory, argv = argv[-1], argv[:-2]
    if argv and argv[0] in ("--write", "--check"):
        with open(RESULTS_MD) as f:
            text = f.read()
        new = rewrite(text, directory)
        if argv[0] == "--check":
            if new != text:
                sys.exit("bench/RESULTS.md differs from bench/report.py's rendering of bench/results/: "
                         "run bench/report.py --write")
            return
        with open(RESULTS_MD, "w") as f:
            f.write(new)
        print(f"rewrote {', '.join(blocks(text))} in {RESULTS_MD}")
        return
    if argv:
        for path in argv:
            print(render(load(path), path) + "\n")
        return
    for suite in sorted({os.path.basename(f).split("-")[0] for f in glob.glob(os.path.join(RESULTS, "*.json"))}):
        path = newest(suite)
        if path:
            print(f"## {suite}\n\n{render(load(path), path)}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
