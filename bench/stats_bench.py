#!/usr/bin/env python3
"""deploy-lock benchmark of `stats` and `dashboard` over many audit logs: 50 environments with
1,000 events each, on the local store and on a real Azurite, as whole processes. One listing,
then one read per environment over a pool of readers.

Usage: python3 bench/stats_bench.py [--runs N] [--envs N] [--events N], or
python3 bench/bench.py --stats. Builds the release binary first; needs Azurite in .tools/node.
"""

import argparse
import base64
import email.utils
import hashlib
import hmac
import json
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import AZURITE, DEV_KEY, ROOT, clean_env, percentile, start_azurite, timed  # noqa: E402

ACCOUNT = "devstoreaccount1"
CONTAINER = "deployment-locks"
KINDS = ["acquire", "release", "blocked", "acquire", "release", "steal", "release", "timed-out"]


def audit_log(env, events):
    """`events` JSON lines as the audit log holds them, spread over the last four weeks."""
    lines = []
    for i in range(events):
        kind = KINDS[i % len(KINDS)]
        event = {"at": f"2026-01-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00.000Z",
                 "event": kind, "environment": env,
                 "pipeline": ["github", "azdevops", "local"][i % 3], "build_id": str(i)}
        if kind in ("acquire", "steal"):
            event["waited_seconds"] = i % 300
        if kind == "release":
            event["held_seconds"] = 60 + i % 900
        lines.append(json.dumps(event, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()


def azurite_put(port, path, body, query=""):
    """One Shared Key-signed PUT to Azurite (path-style: the account appears twice)."""
    date = email.utils.formatdate(usegmt=True)
    headers = {"x-ms-date": date, "x-ms-version": "2021-08-06"}
    if not query:
        headers["x-ms-blob-type"] = "BlockBlob"
    canon_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
    resource = f"/{ACCOUNT}/{ACCOUNT}{path}" + ("\nrestype:container" if query else "")
    length = str(len(body)) if body else ""
    # urllib sends a Content-Type with every body; it is signed as sent.
    sts = f"PUT\n\n\n{length}\n\napplication/octet-stream\n\n\n\n\n\n\n{canon_headers}{resource}"
    sig = base64.b64encode(hmac.new(base64.b64decode(DEV_KEY), sts.encode(), hashlib.sha256).digest())
    headers["Authorization"] = f"SharedKey {ACCOUNT}:{sig.decode()}"
    url = f"http://127.0.0.1:{port}/{ACCOUNT}{path}" + (f"?{query}" if query else "")
    headers["Content-Type"] = "application/octet-stream"
    req = urllib.request.Request(url, data=body, method="PUT", headers=headers)
    try:
        urllib.request.urlopen(req).read()
    except urllib.error.HTTPError as e:
        if e.code != 409:
            raise


def measure(name, env, runs, args):
    times = []
    for _ in range(runs):
        ms, code = timed(args, env)
        if code != 0:
            sys.exit(f"{name}: {' '.join(args)} exited {code}")
        times.append(ms)
    return (name, " ".join(args[:1]), statistics.median(times), percentile(times, 95))


def run(runs, envs, events):
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True)
    if not AZURITE.exists():
        sys.exit("Azurite is missing: run `bash tests/setup-azurite.sh` first")
    names = [f"env{i:03d}" for i in range(envs)]
    logs = {n: audit_log(n, events) for n in names}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        container = Path(tmp) / "store" / CONTAINER
        container.mkdir(parents=True)
        for n, data in logs.items():
            (container / f"deployment-audit-{n}").write_bytes(data)
        file_env = clean_env({"DEPLOY_LOCK_STORE": f"file:{tmp}/store"})
        out = Path(tmp) / "site"
        rows.append(measure("local", file_env, runs, ["stats", "--since", "3650d", "--output", "json"]))
        rows.append(measure("local", file_env, runs, ["dashboard", "--since", "3650d", "--out", str(out)]))
        proc, port = start_azurite(f"{tmp}/azurite")
        try:
            azurite_put(port, f"/{CONTAINER}", b"", "restype=container")
            for n, data in logs.items():
                azurite_put(port, f"/{CONTAINER}/deployment-audit-{n}", data)
            az_env = clean_env({
                "AZURE_STORAGE_CONNECTION_STRING":
                    f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={DEV_KEY};"
                    f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};",
            })
            check = subprocess.run([str(ROOT / "target/release/deploy-lock"), "stats", "--since",
                                    "3650d", "--output", "json"], env=az_env, capture_output=True,
                                   text=True, check=True)
            counted = json.loads(check.stdout)["environments"]
            if len(counted) != envs:
                sys.exit(f"stats saw {len(counted)} environments, not {envs}")
            rows.append(measure("azurite", az_env, runs, ["stats", "--since", "3650d", "--output", "json"]))
            rows.append(measure("azurite", az_env, runs, ["dashboard", "--since", "3650d", "--out", str(out)]))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"\nreading audit logs: {envs} environments x {events} events, {runs} runs per figure\n")
    print(f"{'store':10} {'command':10} {'median ms':>10} {'p95 ms':>8}")
    for store, cmd, med, p95 in rows:
        print(f"{store:10} {cmd:10} {med:10.1f} {p95:8.1f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--envs", type=int, default=50)
    parser.add_argument("--events", type=int, default=1000)
    args = parser.parse_args()
    run(args.runs, args.envs, args.events)


if __name__ == "__main__":
    main()
