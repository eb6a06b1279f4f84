#!/usr/bin/env python3
"""deploy-lock benchmark: latency of acquire, check and release (as whole processes, so process
start-up is included), start-up time alone, peak memory of one acquire, and the binary's size,
against the local store and a real Azurite on loopback; then, through a loopback proxy that adds
50 ms to every request (a storage account in a far region): acquire, check, release, `run`, the
handoff to a waiter, `status` over 200 environments and the requests a second that 50 waiters
cost, each with its requests and against its target.

Usage: python3 bench/bench.py [--runs N] [--far-runs N] [--waiters N] [--window SECONDS]
(builds the release binary first; the far-region part takes about two minutes)
       python3 bench/bench.py --stats     (reading 50 audit logs: bench/stats_bench.py)
Needs Azurite in .tools/node (bash tests/setup-azurite.sh installs it). Not a test: it prints
figures and checks them against the targets, but never fails a build.
"""

import argparse
import concurrent.futures
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "deploy-lock"
AZURITE = ROOT / ".tools" / "node" / "node_modules" / ".bin" / "azurite-blob"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
TARGETS = {"binary_mib": 3.0, "rss_mib": 10.0, "azurite_acquire_median_ms": 20.0}
# The latency the far-region figures add to every request, and how many locks `status` reads.
FAR_DELAY = 0.050
STATUS_ENVS = 200


# A home of the bench's own, so the versions a user's state directory keeps from earlier runs
# (one small file per store and environment) never weigh on the figures.
HOME = tempfile.mkdtemp(prefix="deploy-lock-bench-home-")


def clean_env(extra):
    env = {k: os.environ[k] for k in ("PATH", "TMPDIR") if k in os.environ}
    env.update({"HOME": HOME, "USER": "bench", "HOSTNAME": "bench"})
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


class LatencyProxy:
    """A TCP proxy on loopback that holds every HTTP request for `delay` seconds before passing it
    on (a storage account in a far region) and counts the requests. A request starts when the
    client sends after the server last did (HTTP/1.1 alternates on one connection)."""

    def __init__(self, upstream_port, delay):
        self.upstream_port = upstream_port
        self.delay = delay
        self.requests = 0
        self.count_lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def count(self):
        with self.count_lock:
            return self.requests

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def serve(self, client):
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return
        state = {"awaiting_request": True}
        guard = threading.Lock()

        def to_upstream():
            while True:
                try:
                    data = client.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                with guard:
                    new_request = state["awaiting_request"]
                    state["awaiting_request"] = False
                if new_request:
                    with self.count_lock:
                        self.requests += 1
                    time.sleep(self.delay)
                try:
                    upstream.sendall(data)
                except OSError:
                    break
            try:
                upstream.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        threading.Thread(target=to_upstream, daemon=True).start()
        while True:
            try:
                data = upstream.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            with guard:
                state["awaiting_request"] = True
            try:
                client.sendall(data)
            except OSError:
                break
        for s in (client, upstream):
            try:
                s.close()
            except OSError:
                pass


def azurite_env(port, build="b"):
    return clean_env({
        "AZURE_STORAGE_CONNECTION_STRING":
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;",
        "DEPLOY_LOCK_BUILD_ID": build,
    })


def counted(proxy, args, env):
    before = proxy.count()
    ms, code = timed(args, env)
    return ms, code, proxy.count() - before


def far_region(azurite_port, runs, waiters, window):
    """Every figure through a proxy that adds 50 ms to each request: (name, value, unit, target,
    met) rows."""
    proxy = LatencyProxy(azurite_port, FAR_DELAY)
    far = azurite_env(proxy.port)
    rows = []
    timed(["acquire", "far"], far)
    timed(["release", "far"], far)
    ops = {"acquire": [], "check": [], "renew": [], "release": []}
    counts = {}
    for _ in range(runs):
        # The same user's commands: renew and release start from the version acquire remembered.
        for op in ("acquire", "check", "renew", "release"):
            ms, code, n = counted(proxy, [op, "far"], far)
            if code != 0:
                sys.exit(f"far region: {op} exited {code}")
            ops[op].append(ms)
            counts[op] = n
    for op, target_requests in (("acquire", 3), ("check", 1), ("renew", 1), ("release", 2)):
        median = statistics.median(ops[op])
        budget = target_requests * FAR_DELAY * 1000 + 60
        rows.append((f"{op} (fence and audit)" if op == "acquire" else op, f"{median:.0f} ms, "
                     f"{counts[op]} requests", f"<= {target_requests} requests, < {budget:.0f} ms",
                     counts[op] <= target_requests and median < budget))
    # A release from a machine that remembers nothing reads first.
    timed(["acquire", "far"], far)
    with tempfile.TemporaryDirectory() as home:
        elsewhere = dict(far, HOME=home, XDG_STATE_HOME=home)
        ms, code, n = counted(proxy, ["release", "far"], elsewhere)
    rows.append(("release from another machine", f"{ms:.0f} ms, {n} requests", "<= 3 requests",
                 code == 0 and n <= 3))
    ms, code, n = counted(proxy, ["run", "far", "--", "true"], far)
    rows.append(("run (acquire + release)", f"{ms:.0f} ms, {n} requests", "<= 5 requests",
                 code == 0 and n <= 5))

    # Handoff: a waiter gets the lock its holder frees.
    holder = azurite_env(proxy.port, "holder")
    timed(["acquire", "handoff"], holder)
    waiter = subprocess.Popen([str(BIN), "acquire", "handoff", "--wait=5"],
                              env=azurite_env(proxy.port, "waiter"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(3)
    timed(["release", "handoff"], holder)
    freed = time.perf_counter()
    waiter.wait(timeout=60)
    handoff = time.perf_counter() - freed
    rows.append(("handoff to a waiter", f"{handoff * 1000:.0f} ms", "< 2000 ms",
                 waiter.returncode == 0 and handoff < 2.0))

    # status over 200 environments (set up directly, without the delay).
    direct = azurite_env(azurite_port, "status")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: timed(["acquire", f"env-{i:03}", "--no-fence", "--no-audit"],
                                      direct), range(STATUS_ENVS)))
    times = []
    for _ in range(3):
        ms, code, n = counted(proxy, ["status"], far)
        times.append(ms)
    status_ms = statistics.median(times)
    rows.append((f"status over {STATUS_ENVS} environments", f"{status_ms:.0f} ms, {n} requests",
                 "< 2000 ms (sequential: ~10 s)", status_ms < 2000))

    # Requests a second with many waiters on one environment.
    timed(["acquire", "crowd", "--no-fence", "--no-audit"], holder)
    crowd = [subprocess.Popen([str(BIN), "acquire", "crowd", "--wait=10", "--no-fence",
                               "--no-audit"], env=azurite_env(proxy.port, f"w{i}"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for i in range(waiters)]
    try:
        time.sleep(15)
        before = proxy.count()
        time.sleep(window)
        rate = (proxy.count() - before) / window
    finally:
        for p in crowd:
            p.kill()
            p.wait()
    rows.append((f"requests/s with {waiters} waiters", f"{rate:.2f}/s over {window} s", "<= 3.3/s",
                 rate <= 3.3))
    proxy.listener.close()
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--stats", action="store_true",
                        help="measure only `stats` and `dashboard` over 50 audit logs (stats_bench.py)")
    parser.add_argument("--far-runs", type=int, default=10)
    parser.add_argument("--waiters", type=int, default=50)
    parser.add_argument("--window", type=int, default=90,
                        help="seconds the waiters' requests are counted (longer than their refresh)")
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
            far_rows = far_region(port, args.far_runs, args.waiters, args.window)
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

    print(f"\nfar region: Azurite behind a proxy that adds {FAR_DELAY * 1000:.0f} ms to every "
          "request")
    print(f"{'figure':34} {'measured':26} {'target':30} verdict")
    for name, value, target, ok in far_rows:
        print(f"{name:34} {value:26} {target:30} {'met' if ok else 'MISSED'}")

    az_acquire = next(m for s, op, m, _ in rows if s == "azurite" and op == "acquire")
    verdicts = [
        ("binary <= 3 MiB", size_mib <= TARGETS["binary_mib"]),
        ("peak RSS <= 10 MiB", max(rss_file, rss_az) <= TARGETS["rss_mib"]),
        ("acquire on Azurite < 20 ms median", az_acquire < TARGETS["azurite_acquire_median_ms"]),
    ]
    print("\ntargets: " + ", ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in verdicts))


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(HOME, ignore_errors=True)
