#!/usr/bin/env python3
"""Warren benchmark orchestrator (stdlib only). Run through bench/run.sh.

Suites (each in its own module, each measured in interleaved rounds):
  tunnel  raw TCP: direct, rathole, rathole-noise, warren-tcp, warren-quic (tunnel_bench.py)
  https   TLS fronts: nginx alone, nginx -> rathole, Warren's edge (https_bench.py)
  apply   admin API changes to traffic: create, update, CLI update, delete (apply_bench.py)

Each suite writes every sample to bench/results/<suite>-<commit>-<time>.json
(.failed.json if any sample failed) and prints its tables (bench/report.py).
A failed sample (tool error, wrk socket errors or non-2xx answers, a timeout,
a non-zero exit, a process that died) does not vanish: the run goes on, then
exits 1 naming each failure.
"""
import argparse, os, shutil, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import apply_bench, auth_bench, https_bench, report, tunnel_bench  # noqa: E402
from common import Procs, Run, file_sha256, resource_limit, run_meta, tool_version  # noqa: E402

SUITES = {"tunnel": tunnel_bench, "https": https_bench, "apply": apply_bench, "auth": auth_bench}


def params(args, suite):
    common = {"reps": args.reps, "duration_s": args.duration}
    if suite == "tunnel":
        return dict(common, paths=args.paths.split(","), wrk="-t2 -c50", iperf3_streams=[1, 4], rss_connections=1000)
    if suite == "https":
        extra = {"baseline_sha256": file_sha256(args.baseline)} if args.baseline else {}
        return dict(common, paths=https_bench.paths(args), wrk="-t2 -c64",
                    oha="-c16 at half warren-https's median peak", **extra)
    if suite == "auth":
        return dict(common, paths=auth_bench.PATHS, wrk="-t2 -c64",
                    oha="-c16 at half warren-public's median peak")
    return {"reps": args.apply_reps, "paths": apply_bench.PATHS, "deadline_s": apply_bench.DEADLINE}


def tools(args):
    t = {"warren": tool_version([args.warren, "--version"]), "wrk": tool_version(["wrk", "-v"]),
         "nginx": tool_version(["nginx", "-v"]), "iperf3": tool_version(["iperf3", "--version"])}
    if args.rathole:
        t["rathole"] = tool_version([args.rathole, "--version"])
    if args.oha:
        t["oha"] = tool_version([args.oha, "--version"])
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--warren", required=True)
    ap.add_argument("--rathole", help="rathole binary (tunnel and https suites)")
    ap.add_argument("--oha", help="oha binary (https suite, fixed-rate latency)")
    ap.add_argument("--reps", type=int, default=int(os.environ.get("REPS", 5)), help="interleaved rounds")
    ap.add_argument("--duration", type=int, default=int(os.environ.get("DURATION", 5)), help="seconds per sample")
    ap.add_argument("--apply-reps", type=int, default=int(os.environ.get("APPLY_REPS", 20)))
    ap.add_argument("--paths", default=tunnel_bench.PATHS, help="tunnel suite paths")
    ap.add_argument("--suites", default=os.environ.get("SUITES", "tunnel,https,apply"))
    ap.add_argument("--baseline", default=os.environ.get("WARREN_BASELINE") or None,
                    help="https suite: a second warren binary measured side by side (warren-https-baseline)")
    args = ap.parse_args()
    args.warren = os.path.abspath(args.warren)
    args.rathole = args.rathole and os.path.abspath(args.rathole)
    args.oha = args.oha and os.path.abspath(args.oha)
    args.baseline = args.baseline and os.path.abspath(args.baseline)
    suites = args.suites.split(",")
    for s in suites:
        if s not in SUITES:
            ap.error(f"unknown suite {s!r} (known: {', '.join(SUITES)})")
    if {"tunnel", "https"} & set(suites) and not args.rathole:
        ap.error("the tunnel and https suites need --rathole")
    if {"https", "auth"} & set(suites) and not args.oha:
        ap.error("the https suite needs --oha")
    os.environ.setdefault("RUST_LOG", "error")
    resource_limit()
    versions = tools(args)
    failed = []
    for suite in suites:
        work = tempfile.mkdtemp(prefix=f"warren-bench-{suite}-")
        run = Run(suite, run_meta(args.warren), params(args, suite), versions)
        procs = Procs(work)
        try:
            SUITES[suite].run(run, args, procs, work)
        except Exception as e:  # a path that would not start: the run is kept, and fails
            run.abort(f"{type(e).__name__}: {e}")
        finally:
            procs.stop()
        path = run.write()
        print(f"\nraw results: {os.path.relpath(path)}\n")
        print(report.render(report.load(path), path))
        if run.errors:
            failed += [f"{suite}: {e}" for e in run.errors]
            print(f"process logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if failed:
        print(f"\n{len(failed)} failed sample(s); these runs are written as .failed.json and "
              "bench/report.py does not use them:", file=sys.stderr)
        for f in failed:
            print(f"  {f}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
