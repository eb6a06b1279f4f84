#!/usr/bin/env python3
"""deploy-lock benchmark: latency of acquire, check and release (as whole processes, so process
start-up is included), start-up time alone, peak memory of one acquire, and the binary's size,
against the local store and a real Azurite on loopback.

Usage: python3 bench/bench.py [--runs N]   (builds the release binary first)
       python3 bench/bench.py --stats     (reading 50 audit logs: bench/stats_bench.py)
Needs Azurite in .tools/node (bash tests/setup-azurite.sh installs it). Not a test: it prints
figures and checks them against the targets, but never fails a build.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "deploy-lock"
AZURITE = ROOT / ".tools" / "node" / "node_modules" / ".bin" / "azurite-blob"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
TARGETS = {"binary_mib": 3.0, "rss_mib": 10.0, "azurite_acquire_median_ms": 20.0}


def clean_env(extra):
    env = {k: os.environ[k] for k in ("PATH", "TMPDIR") if k in os.environ}
    env.update({"HOME": tempfile.gettempdir(), "USER": "bench", "HOSTNAME": "bench"})
    env.update(extra)
    return env


def timed(args, env):
    start = time.perf_counter()
    code = subprocess.run([str(BIN), *args], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode
    return (time.perf_counter() - start) * 1000.0, code


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


def bench_store(name, env, runs, extra_args=()):
    times = {"acquire": [], "check": [], "release": []}
    for i in range(runs):
        for op in ("acquire", "check", "release"):
            ms, code = timed([op, "bench", *extra_args], env)
            if code not in (0, 3):
                sys.exit(f"{name}: {op} exited {code}")
            times[op].append(ms)
    rows = []
    for op, values in times.items():
        rows.append((name, op, statistics.median(values), percentile(values, 95)))
    return rows


def peak_rss_mib(args, env):
    """Peak RSS of one run, as GNU time reports it (Debian package `time`). A child forked from
    this Python process would count Python's own pages, so its rusage is not used."""
    gnu_time = shutil.which("time", path="/usr/bin:/bin")
    if gnu_time is None:
        sys.exit("GNU time is missing: apt-get install time")
    out = subprocess.run([gnu_time, "-f", "%M", str(BIN), *args], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True).stderr
    return int(out.strip().splitlines()[-1]) / 1024.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_azurite(location):
    port = free_port()
    proc = subprocess.Popen(
        [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
         location, "--silent", "--disableTelemetry"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("Azurite did not start")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--stats", action="store_true",
                        help="measure only `stats` and `dashboard` over 50 audit logs (stats_bench.py)")
    args = parser.parse_args()
    if args.stats:
        import stats_bench
        stats_bench.run(10, 50, 1000)
        return
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True)
    if not AZURITE.exists():
        sys.exit("Azurite is missing: run `bash tests/setup-azurite.sh` first")

    size_mib = BIN.stat().st_size / (1024 * 1024)
    startup = [timed(["--version"], clean_env({}))[0] for _ in range(args.runs)]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        file_env = clean_env({"DEPLOY_LOCK_STORE": f"file:{tmp}/store", "DEPLOY_LOCK_BUILD_ID": "b"})
        rows += bench_store("local", file_env, args.runs)
        rows += bench_store("local, --no-fence --no-audit", file_env, args.runs,
                            ("--no-fence", "--no-audit"))
        proc, port = start_azurite(f"{tmp}/azurite")
        try:
            az_env = clean_env({
                "AZURE_STORAGE_CONNECTION_STRING":
                    f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};"
                    f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;",
                "DEPLOY_LOCK_BUILD_ID": "b",
            })
            timed(["acquire", "warmup"], az_env)
            rows += bench_store("azurite", az_env, args.runs)
            rows += bench_store("azurite, --no-fence --no-audit", az_env, args.runs,
                                ("--no-fence", "--no-audit"))
            rss_az = peak_rss_mib(["acquire", "rss"], az_env)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        rss_file = peak_rss_mib(["acquire", "rss"], file_env)

    print(f"deploy-lock benchmark, {args.runs} runs per figure, whole processes (start-up included)\n")
    print(f"{'store':34} {'operation':9} {'median ms':>10} {'p95 ms':>8}")
    for store, op, med, p95 in rows:
        print(f"{store:34} {op:9} {med:10.2f} {p95:8.2f}")
    print(f"\nstart-up (--version)      median {statistics.median(startup):.2f} ms, "
          f"p95 {percentile(startup, 95):.2f} ms")
    print(f"peak RSS of one acquire   local {rss_file:.1f} MiB, Azurite {rss_az:.1f} MiB")
    print(f"release binary            {size_mib:.2f} MiB (stripped)")

    az_acquire = next(m for s, op, m, _ in rows if s == "azurite" and op == "acquire")
    verdicts = [
        ("binary <= 3 MiB", size_mib <= TARGETS["binary_mib"]),
        ("peak RSS <= 10 MiB", max(rss_file, rss_az) <= TARGETS["rss_mib"]),
        ("acquire on Azurite < 20 ms median", az_acquire < TARGETS["azurite_acquire_median_ms"]),
    ]
    print("\ntargets: " + ", ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in verdicts))


if __name__ == "__main__":
    main()
