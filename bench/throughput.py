#!/usr/bin/env python3
"""HTTP throughput and latency with wrk, side by side in one run: the framework's ceiling
(`GET /health`: a bare Hummingbird route in the same binary, no database) against
`GET /survey/1.0.0/surveys` with a token (authentication, rate limit, RLS, a database
round trip, JSON). Also the resident memory of `serve`, idle and under load.

    python3 bench/throughput.py [--duration 15] [--connections 64] [--rounds 2] [--reference]

With `--reference`, the same rounds also run against `bench/reference-postgres-nio`: the same
transaction served by Hummingbird with vapor/postgres-nio (a separate package, built here in
release mode; its first build takes about 10 minutes), as a point of comparison.

It ends with PostgreSQL alone: pgbench runs the route's transaction flat out, and the
script prints the best ratio the machine allows if `serve` spent nothing beyond what
`/health` costs (the bound); then pgbench again, paced at the rate each surveys round
reached, to compare the route's costs with PostgreSQL's for the same work at the same rate.

Targets (issue 18, replacing issue 5's ratio; this 2-core machine): what `serve` spends per
surveys request beyond `/health` <= 2x PostgreSQL's CPU per paced pgbench transaction;
PostgreSQL's CPU per surveys request <= 2x the same; the surveys route at >= 50 % of the
bound, and (with --reference) >= 3x the reference's requests/s; p99 <= 20 ms at 64
connections; RSS <= 150 MB under load, <= 64 MB idle.
"""
import argparse
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (  # noqa: E402
    ROOT, Client, cpu_seconds, postgres_cpu_seconds, postmaster_pid, private_database_url, psql, wait_for)

PORT = 9181
REFERENCE_PORT = 9183
HASH_KEY = "cd" * 32


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# The transaction `serve` runs for the surveys route, as it reaches PostgreSQL: one segment
# of a pipeline (libpq's pipeline mode) ending in a sync, an implicit transaction, which
# `serve` sends batched with the other requests' that arrive together (`Database.read`).
# pgbench sends each alone: the same statements, without the batching.
SURVEYS_TRANSACTION = """\\startpipeline
SELECT set_config('app.company_id', '{company}', true), set_config('statement_timeout', '29750', true), set_config('transaction_read_only', 'on', true);
SELECT s.survey_id, s.name, s.interaction_type, q.question_id, q.body, q.language FROM (SELECT survey_id, name, interaction_type FROM surveys WHERE company_id = {company} AND survey_id > coalesce(NULL::bigint, 0) ORDER BY survey_id LIMIT 50) AS s LEFT JOIN questions AS q ON q.company_id = {company} AND q.survey_id = s.survey_id ORDER BY s.survey_id;
\\endpipeline
"""


def postgres_alone(url, company, duration, clients=20, rate=None):
    """PostgreSQL's own CPU per surveys transaction, without `serve`: pgbench runs the same
    pipeline, every statement prepared (as our client does), each transaction sent alone,
    with as many clients as the pool has connections. pgbench's
    backends come and go with it, so PostgreSQL's share is read from its processes, the
    exited backends included (`postgres_cpu_seconds`).

    With `rate`, pgbench paces itself to that many transactions a second (`-R`), as the
    route's requests arrive: PostgreSQL's CPU per transaction depends on the rate on this
    virtual machine (every transaction that finds its backend asleep pays for the wake-up),
    so the route's cost is compared with pgbench's at the rate the route reached."""
    script = os.path.join("/tmp", f"surveys-transaction-{os.getpid()}.sql")
    with open(script, "w") as out:
        out.write(SURVEYS_TRANSACTION.format(company=company))
    env = dict(os.environ, PGOPTIONS="-c role=survey_app")
    postmaster = postmaster_pid(url)
    before = postgres_cpu_seconds(postmaster)
    pacing = ["-R", str(int(rate))] if rate else []
    finished = subprocess.run(["/usr/bin/time", "-f", "%U %S", "pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
                               *pacing, "-T", str(duration), "-f", script, url], check=True, capture_output=True, text=True, env=env)
    # pgbench's backends' CPU reaches the postmaster's account only once they have exited
    # and been reaped: wait for that, or a run's figure can come out near zero.
    for _ in range(50):
        if psql(url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'") == "0":
            break
        time.sleep(0.1)
    time.sleep(0.3)
    used = postgres_cpu_seconds(postmaster) - before
    os.remove(script)
    count = int(re.search(r"number of transactions actually processed: (\d+)", finished.stdout).group(1))
    pgbench_cpu = sum(map(float, finished.stderr.strip().splitlines()[-1].split()))
    return {"tps": count / duration, "pg_us": used / count * 1e6, "pgbench_us": pgbench_cpu / count * 1e6}


def context_switches(pid):
    """Context switches so far of every thread of `pid` (voluntary and not): each is a
    thread going to sleep or being preempted, the cost of hand-offs between threads."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as status:
                total += sum(int(line.split()[1]) for line in status if "ctxt_switches:" in line)
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return total


def wrk(path, token, duration, connections, serve_pid, postmaster, threads=2, port=PORT):
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency"]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    # CPU per request, of serve and of PostgreSQL (the pool's backends live through the
    # run), and of wrk itself: on a shared machine a steadier figure than requests/s.
    # PostgreSQL's whole CPU, backends opened or closed during the round included (a pool
    # may replace an idle connection between rounds: its new backend was not there before).
    before = cpu_seconds([serve_pid]), postgres_cpu_seconds(postmaster)
    switches = context_switches(serve_pid)
    finished = subprocess.run(["/usr/bin/time", "-f", "%U %S"] + command + [f"http://127.0.0.1:{port}{path}"], check=True,
                              capture_output=True, text=True)
    after = cpu_seconds([serve_pid]), postgres_cpu_seconds(postmaster)
    switches = context_switches(serve_pid) - switches
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
        "wrk_us": wrk_cpu / count * 1e6, "switches": switches / count,
        "non2xx": int(errors.group(1)) if errors else 0, "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two routes")
    parser.add_argument("--reference", action="store_true", help="also measure bench/reference-postgres-nio")
    parser.add_argument("--profile", metavar="FILE", help="perf record -g of serve during the first surveys round, into FILE")
    parser.add_argument("--surveyd", metavar="PATH", help="run this surveyd binary instead of building the tree's (an older build, side by side)")
    args = parser.parse_args()
    reference_dir = os.path.join(ROOT, "bench", "reference-postgres-nio")
    if args.reference:
        print("building the reference (release)...", file=sys.stderr)
        subprocess.run(["swift", "build", "-c", "release"], cwd=reference_dir, check=True, stdout=subprocess.DEVNULL)

    subprocess.run(["bash", "-c", "source scripts/lib/database.sh && { command -v wrk >/dev/null && [ -x /usr/bin/time ]; } || ensure_apt_packages wrk time"],
                   cwd=ROOT, check=True)
    if args.surveyd:
        surveyd = os.path.abspath(args.surveyd)
    else:
        print("building (release)...", file=sys.stderr)
        subprocess.run(["swift", "build", "-c", "release", "--product", "surveyd"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        bin_dir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True, capture_output=True,
                                 text=True).stdout.strip()
        surveyd = os.path.join(bin_dir, "surveyd")
    url = private_database_url("surveyd_http")
    env = dict(os.environ, DATABASE_URL=url, DESTINATION_HASH_KEY=HASH_KEY, PORT=str(PORT), HOST="127.0.0.1",
               LOG_LEVEL="warning", SURVEYD_SQL_DIR=os.path.join(ROOT, "sql"), SURVEYD_OPENAPI=os.path.join(ROOT, "openapi.yaml"),
               RATE_LIMIT_PER_SECOND="1000000", RATE_LIMIT_BURST="2000000",
               COMPANY_RATE_LIMIT_PER_SECOND="1000000", COMPANY_RATE_LIMIT_BURST="2000000")
    subprocess.run([surveyd, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    token = subprocess.run([surveyd, "company", "create", "--name", "http bench", "--quiet-hours", "off"], env=env, check=True, capture_output=True,
                           text=True).stdout.split()[-1]
    serve = subprocess.Popen([surveyd, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    company = psql(url, "SELECT max(company_id) FROM companies WHERE name = 'http bench'")
    postmaster = postmaster_pid(url)
    reference = None
    if args.reference:
        reference = subprocess.Popen(
            [os.path.join(reference_dir, ".build", "release", "reference-server")],
            env=dict(os.environ, PORT=str(REFERENCE_PORT), DATABASE_URL=url, COMPANY_ID=company, POOL="20", LOG_LEVEL="warning"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        wrk("/health", None, 3, args.connections, serve.pid, postmaster)
        wrk("/survey/1.0.0/surveys", token, 3, args.connections, serve.pid, postmaster)
        if reference:
            wait_for(REFERENCE_PORT, "/health")
            wrk("/health", None, 3, args.connections, reference.pid, postmaster, port=REFERENCE_PORT)
            wrk("/surveys-prepared", "x", 3, args.connections, reference.pid, postmaster, port=REFERENCE_PORT)
        time.sleep(3)
        idle = rss_mb(serve.pid)

        peak = [0.0]
        sampling = threading.Event()

        def sample():
            while not sampling.is_set():
                peak[0] = max(peak[0], rss_mb(serve.pid))
                time.sleep(0.2)

        runs = {"health": [], "surveys": []}
        if reference:
            runs.update({"reference health": [], "reference surveys": []})
        sampler = threading.Thread(target=sample)
        sampler.start()
        for round in range(args.rounds):
            runs["health"].append(wrk("/health", None, args.duration, args.connections, serve.pid, postmaster))
            # The profile costs CPU: that round's figures are not comparable with the others'.
            profiler = subprocess.Popen(
                ["perf", "record", "-F", "499", "-g", "-p", str(serve.pid), "-o", args.profile, "--", "sleep", str(args.duration)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if args.profile and round == 0 else None
            runs["surveys"].append(wrk("/survey/1.0.0/surveys", token, args.duration, args.connections, serve.pid, postmaster))
            if profiler:
                profiler.wait()
            if reference:
                runs["reference health"].append(wrk("/health", None, args.duration, args.connections, reference.pid, postmaster,
                                                    port=REFERENCE_PORT))
                runs["reference surveys"].append(wrk("/surveys-prepared", "x", args.duration, args.connections, reference.pid, postmaster,
                                                     port=REFERENCE_PORT))
        sampling.set()
        sampler.join()
        time.sleep(3)
        after = rss_mb(serve.pid)
    finally:
        for process in (serve, reference):
            if process:
                process.terminate()
                process.wait()

    def best(name, key):
        return max(run[key] for run in runs[name]) if key == "rate" else min(run[key] for run in runs[name])

    for name in runs:
        for index, run in enumerate(runs[name]):
            print(f"{name:17} round {index + 1}: {run['rate']:>9,.0f} req/s  p50 {run['p50']:6.2f} ms  p99 {run['p99']:6.2f} ms"
                  f"  CPU per request: serve {run['serve_us']:5.0f} µs, postgres {run['pg_us']:5.0f} µs, wrk {run['wrk_us']:4.0f} µs"
                  f"  serve's context switches per request {run['switches']:.2f}"
                  f"  non-2xx {run['non2xx']}  {run['socket_errors']}")
    ratios = [s["rate"] / h["rate"] for h, s in zip(runs["health"], runs["surveys"])]
    worst_p99 = max(run["p99"] for run in runs["surveys"])
    print(f"surveys / health, per round: {', '.join(f'{r:.0%}' for r in ratios)}")
    if reference:
        print("reference surveys / reference health, per round: " + ", ".join(
            f"{s['rate'] / h['rate']:.0%}" for h, s in zip(runs["reference health"], runs["reference surveys"])))
        # The reference's driver cannot pipeline: its transaction is five round trips, ours one.
        print("our surveys / reference surveys (5 round trips per request there, 1 here), per round: " + ", ".join(
            f"{ours['rate'] / theirs['rate']:.1f}x" for ours, theirs in zip(runs["surveys"], runs["reference surveys"])))
    print(f"serve RSS: idle {idle:.1f} MB, peak under load {peak[0]:.1f} MB, 3 s after {after:.1f} MB")
    # What the 2 cores allow at best: a surveys request costs the machine at least what a
    # /health request does (HTTP, wrk) plus what PostgreSQL alone needs for its transaction,
    # as if the database client, authentication and JSON cost nothing. Measured last, after
    # everything above is printed.
    sys.stdout.flush()
    alone = postgres_alone(url, company, args.duration)
    health_us = min(run["serve_us"] + run["wrk_us"] for run in runs["health"])
    print(f"PostgreSQL alone (pgbench, same transaction, prepared): {alone['tps']:,.0f} tps, "
          f"{alone['pg_us']:.0f} µs of PostgreSQL CPU per transaction (pgbench itself {alone['pgbench_us']:.0f} µs)")
    print(f"bound: /health costs {health_us:.0f} µs of CPU per request; with PostgreSQL's {alone['pg_us']:.0f} µs and nothing else, "
          f"the surveys route could reach at most {health_us / (health_us + alone['pg_us']):.0%} of the ceiling")
    # Issue 18's targets, against pgbench paced at the rate each surveys round reached (the
    # two measured alike: the same transaction, the same rate, PostgreSQL's CPU read the same way).
    paced = [postgres_alone(url, company, args.duration, rate=run["rate"]) for run in runs["surveys"]]
    beyond = [s["serve_us"] - h["serve_us"] for h, s in zip(runs["health"], runs["surveys"])]
    for index, (run, at_rate, extra) in enumerate(zip(runs["surveys"], paced, beyond)):
        print(f"round {index + 1}: pgbench paced at {run['rate']:,.0f} tps ({at_rate['tps']:,.0f} reached): "
              f"{at_rate['pg_us']:.0f} µs of PostgreSQL CPU per transaction; serve beyond /health {extra:.0f} µs "
              f"({extra / at_rate['pg_us']:.1f}x), PostgreSQL per surveys request {run['pg_us']:.0f} µs "
              f"({run['pg_us'] / at_rate['pg_us']:.1f}x)")
    bound = health_us / (health_us + alone["pg_us"])
    checks = {
        "serve beyond /health <= 2x PostgreSQL per paced pgbench transaction (every round)":
            all(extra <= 2 * at_rate["pg_us"] for extra, at_rate in zip(beyond, paced)),
        "PostgreSQL per surveys request <= 2x per paced pgbench transaction (every round)":
            all(run["pg_us"] <= 2 * at_rate["pg_us"] for run, at_rate in zip(runs["surveys"], paced)),
        "surveys >= 50 % of the bound (every round)": min(ratios) >= 0.5 * bound,
        "surveys p99 <= 20 ms (every round)": worst_p99 <= 20,
        **({"surveys >= 3x the reference's req/s (every round)": all(
            ours["rate"] >= 3 * theirs["rate"] for ours, theirs in zip(runs["surveys"], runs["reference surveys"]))}
           if reference else {}),
        "no errors": all(run["non2xx"] == 0 and not run["socket_errors"] for name in runs for run in runs[name]),
        "RSS <= 150 MB under load": peak[0] <= 150,
        "RSS <= 64 MB idle": idle <= 64,
    }
    for check, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {check}")
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
