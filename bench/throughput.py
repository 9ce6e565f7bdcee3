#!/usr/bin/env python3
"""HTTP throughput and latency with wrk, side by side in one run: the framework's ceiling
(`GET /health`: a bare Hummingbird route in the same binary, no database) against
`GET /survey/1.0.0/surveys` with a token (authentication, rate limit, RLS, a database
round trip, JSON). Also the resident memory of `serve`, idle and under load.

    python3 bench/throughput.py [--duration 15] [--connections 64] [--rounds 2]

Targets (issue 5, this 2-core machine): the surveys route at >= 50 % of the ceiling's
requests/s, its p99 <= 20 ms at 64 connections, RSS <= 150 MB under load, <= 64 MB idle.
"""
import argparse
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, Client, private_database_url, wait_for  # noqa: E402

PORT = 9181
HASH_KEY = "cd" * 32


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pids):
    """User plus system CPU time of `pids` so far (processes that are gone count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / tick


def postgres_pids():
    found = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found]


def wrk(path, token, duration, connections, serve_pid, threads=2):
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency"]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    # CPU per request, of serve and of PostgreSQL (the pool's backends live through the
    # run), and of wrk itself: on a shared machine a steadier figure than requests/s.
    pg = postgres_pids()
    before = cpu_seconds([serve_pid]), cpu_seconds(pg)
    finished = subprocess.run(["/usr/bin/time", "-f", "%U %S"] + command + [f"http://127.0.0.1:{PORT}{path}"], check=True,
                              capture_output=True, text=True)
    after = cpu_seconds([serve_pid]), cpu_seconds(pg)
    output = finished.stdout
    wrk_cpu = sum(map(float, finished.stderr.strip().splitlines()[-1].split()))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    count = int(re.search(r"(\d+) requests in", output).group(1))

    def latency(label):
        match = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", output)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {
        "rate": rate, "p50": latency("50"), "p99": latency("99"),
        "serve_us": (after[0] - before[0]) / count * 1e6, "pg_us": max(0.0, after[1] - before[1]) / count * 1e6,
        "wrk_us": wrk_cpu / count * 1e6,
        "non2xx": int(errors.group(1)) if errors else 0, "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two routes")
    args = parser.parse_args()

    subprocess.run(["bash", "-c", "source scripts/lib/database.sh && { command -v wrk >/dev/null && [ -x /usr/bin/time ]; } || ensure_apt_packages wrk time"],
                   cwd=ROOT, check=True)
    print("building (release)...", file=sys.stderr)
    subprocess.run(["swift", "build", "-c", "release", "--product", "surveyd"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    bin_dir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout.strip()
    surveyd = os.path.join(bin_dir, "surveyd")
    url = private_database_url("surveyd_http")
    env = dict(os.environ, DATABASE_URL=url, DESTINATION_HASH_KEY=HASH_KEY, PORT=str(PORT), HOST="127.0.0.1",
               LOG_LEVEL="warning", SURVEYD_SQL_DIR=os.path.join(ROOT, "sql"), SURVEYD_OPENAPI=os.path.join(ROOT, "openapi.yaml"),
               RATE_LIMIT_PER_SECOND="1000000", RATE_LIMIT_BURST="2000000")
    subprocess.run([surveyd, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    token = subprocess.run([surveyd, "company", "create", "--name", "http bench"], env=env, check=True, capture_output=True,
                           text=True).stdout.split()[-1]
    serve = subprocess.Popen([surveyd, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(PORT, "/health")
        api = Client(PORT, token)
        for index in range(5):
            status, _ = api.request("POST", "/survey/1.0.0/surveys", {
                "name": f"survey {index}", "interactionType": "support",
                "questions": [{"body": "How likely are you to recommend us to a friend, 0-10?", "language": language}
                              for language in ("en-GB", "fr", "nl-BE")],
            })
            assert status == 201
        status, page = api.request("GET", "/survey/1.0.0/surveys")
        assert status == 200 and len(page) == 5, page
        # Warm up both routes, then settle before the idle reading.
        wrk("/health", None, 3, args.connections, serve.pid)
        wrk("/survey/1.0.0/surveys", token, 3, args.connections, serve.pid)
        time.sleep(3)
        idle = rss_mb(serve.pid)

        peak = [0.0]
        sampling = threading.Event()

        def sample():
            while not sampling.is_set():
                peak[0] = max(peak[0], rss_mb(serve.pid))
                time.sleep(0.2)

        runs = {"health": [], "surveys": []}
        sampler = threading.Thread(target=sample)
        sampler.start()
        for _ in range(args.rounds):
            runs["health"].append(wrk("/health", None, args.duration, args.connections, serve.pid))
            runs["surveys"].append(wrk("/survey/1.0.0/surveys", token, args.duration, args.connections, serve.pid))
        sampling.set()
        sampler.join()
        time.sleep(3)
        after = rss_mb(serve.pid)
    finally:
        serve.terminate()
        serve.wait()

    def best(name, key):
        return max(run[key] for run in runs[name]) if key == "rate" else min(run[key] for run in runs[name])

    for name in runs:
        for index, run in enumerate(runs[name]):
            print(f"{name:8} round {index + 1}: {run['rate']:>9,.0f} req/s  p50 {run['p50']:6.2f} ms  p99 {run['p99']:6.2f} ms"
                  f"  CPU per request: serve {run['serve_us']:5.0f} µs, postgres {run['pg_us']:5.0f} µs, wrk {run['wrk_us']:4.0f} µs"
                  f"  non-2xx {run['non2xx']}  {run['socket_errors']}")
    ratios = [s["rate"] / h["rate"] for h, s in zip(runs["health"], runs["surveys"])]
    worst_p99 = max(run["p99"] for run in runs["surveys"])
    print(f"surveys / health, per round: {', '.join(f'{r:.0%}' for r in ratios)}")
    print(f"serve RSS: idle {idle:.1f} MB, peak under load {peak[0]:.1f} MB, 3 s after {after:.1f} MB")
    checks = {
        "surveys >= 50 % of the ceiling (every round)": min(ratios) >= 0.5,
        "surveys p99 <= 20 ms (every round)": worst_p99 <= 20,
        "no errors": all(run["non2xx"] == 0 and not run["socket_errors"] for name in runs for run in runs[name]),
        "RSS <= 150 MB under load": peak[0] <= 150,
        "RSS <= 64 MB idle": idle <= 64,
    }
    for check, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {check}")
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
