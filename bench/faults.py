#!/usr/bin/env python3
"""Fault injection against real processes: what clients see when PostgreSQL restarts
under load, and when `serve` gets SIGTERM under load. Each scenario checks its
expectations and exits non-zero if one fails; docs/RELIABILITY.md records the runs.

    python3 bench/faults.py                 # every scenario
    python3 bench/faults.py pg-restart      # one
    python3 bench/faults.py --release ...   # against a release build

The killed-worker and pg_terminate_backend faults, the tenant sweep and the
two-replica run are part of `scripts/test` (KilledWorkerTests, BackendTerminationTests,
TenantIsolationSweepTests, ReplicasTests).
"""
import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, bash, psql, wait_for  # noqa: E402

CLUSTER = "faults"
HASH_KEY = "ab" * 32


def cluster(step):
    return bash(f"source scripts/lib/database.sh && ensure_system_packages && {step}").splitlines()


def database_url():
    return cluster(
        f"start_private_postgres {CLUSTER} >&2 && recreate_database surveyd_faults >&2 && private_database_url surveyd_faults"
    )[-1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """Every request: when it started and ended, and its status or error."""

    def __init__(self):
        self.lock = threading.Lock()
        self.records = []

    def add(self, started, ended, status, error=None, created=None):
        with self.lock:
            self.records.append((started, ended, status, error, created))


def load(port, token, recorder, stop, write_share=0.5, timeout=20):
    """One client with a keep-alive connection: creates surveys and lists them until `stop`."""
    connection = None
    index = 0
    while not stop.is_set():
        index += 1
        write = (index % int(1 / write_share)) == 0 if write_share else False
        started = time.time()
        try:
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
            if write:
                body = json.dumps({"name": f"fault {started}", "interactionType": "faults",
                                   "questions": [{"body": "How likely …?", "language": "en"}]})
                connection.request("POST", "/survey/1.0.0/surveys", body=body, headers=headers)
            else:
                connection.request("GET", "/survey/1.0.0/surveys?limit=5", headers=headers)
            response = connection.getresponse()
            payload = response.read()
            created = None
            if response.status == 201:
                created = json.loads(payload)["id"]
            recorder.add(started, time.time(), response.status, created=created)
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException) as error:
            recorder.add(started, time.time(), None, error=type(error).__name__)
            if connection is not None:
                connection.close()
            connection = None
            time.sleep(0.05)


def start_serve(surveyd, env, port, extra=None):
    serve_env = dict(env, PORT=str(port), **(extra or {}))
    process = subprocess.Popen([surveyd, "serve"], env=serve_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(port, "/health")
    return process


def summarize(records, t0):
    by_status = {}
    for _, _, status, error, _ in records:
        key = str(status) if status is not None else error
        by_status[key] = by_status.get(key, 0) + 1
    return by_status


def pg_restart(surveyd, env, outage_seconds=4, clients=8):
    """PostgreSQL stops under load and comes back: during the outage clients get 503 (not
    500, not a hang); after it the service recovers by itself; every 201 is in the
    database."""
    port = free_port()
    url = env["DATABASE_URL"]
    token = subprocess.run([surveyd, "company", "create", "--name", "faults", "--quiet-hours", "off"], env=env, check=True, capture_output=True,
                           text=True).stdout.split()[-1]
    serve = start_serve(surveyd, env, port, {"DATABASE_MAX_CONNECTIONS": "8", "REQUEST_TIMEOUT_SECONDS": "10"})
    recorder, stop = Recorder(), threading.Event()
    threads = [threading.Thread(target=load, args=(port, token, recorder, stop)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(3)
    down = time.time()
    cluster(f"stop_private_postgres {CLUSTER}")
    time.sleep(outage_seconds)
    cluster(f"start_private_postgres {CLUSTER} >&2")
    up = time.time()
    time.sleep(8)
    stop.set()
    for thread in threads:
        thread.join()
    serve.send_signal(signal.SIGTERM)
    serve.wait(timeout=30)

    records = recorder.records
    during = [r for r in records if r[0] >= down and r[1] <= up]
    after = [r for r in records if r[0] >= up]
    first_success = min((r[1] for r in after if r[2] is not None and r[2] < 300), default=None)
    longest = max(r[1] - r[0] for r in records)
    server_errors = [r for r in records if r[2] is not None and r[2] >= 500 and r[2] != 503]
    transport = [r for r in records if r[2] is None]
    created = [r[4] for r in records if r[4] is not None]
    stored = int(psql(url, f"SELECT count(*) FROM surveys WHERE survey_id = ANY('{{{','.join(map(str, created)) or '0'}}}'::bigint[])"))
    result = {
        "requests": len(records), "by_status": summarize(records, down),
        "during_outage": summarize(during, down), "after": summarize(after, down),
        "recovered_after_seconds": round(first_success - up, 2) if first_success else None,
        "last_503_after_seconds": round(max((r[1] for r in after if r[2] == 503), default=up) - up, 2),
        "longest_request_seconds": round(longest, 2), "created": len(created), "created_and_stored": stored,
    }
    print(json.dumps({"pg-restart": result}, indent=2))
    checks = {
        "no 5xx other than 503": not server_errors,
        "no transport errors (serve stayed up, no hang)": not transport,
        "503 during the outage": any(r[2] == 503 for r in during),
        "no request hung (all under 12 s)": longest < 12,
        "recovered within 5 s of PostgreSQL returning": first_success is not None and first_success - up < 5,
        "no 503 later than 5 s after it returned": max((r[1] for r in after if r[2] == 503), default=up) - up < 5,
        "every 201 is in the database": stored == len(created) and len(created) > 0,
    }
    return checks


def serve_sigterm(surveyd, env, clients=8):
    """SIGTERM to serve under load: the requests in flight complete, new connections are
    refused, and it exits within the grace period."""
    port = free_port()
    url = env["DATABASE_URL"]
    token = subprocess.run([surveyd, "company", "create", "--name", "faults-sigterm", "--quiet-hours", "off"], env=env, check=True,
                           capture_output=True, text=True).stdout.split()[-1]
    serve = start_serve(surveyd, env, port, {"DATABASE_MAX_CONNECTIONS": "8"})
    recorder, stop = Recorder(), threading.Event()
    threads = [threading.Thread(target=load, args=(port, token, recorder, stop, 0.5)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(3)
    signalled = time.time()
    serve.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    refused = False
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        refused = True
    try:
        serve.wait(timeout=30)
        exited = time.time() - signalled
    except subprocess.TimeoutExpired:
        serve.kill()
        exited = None
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()

    records = recorder.records
    in_flight = [r for r in records if r[0] < signalled < r[1]]
    in_flight_failed = [r for r in in_flight if r[2] is None or r[2] >= 500]
    created = [r[4] for r in records if r[4] is not None]
    stored = int(psql(url, f"SELECT count(*) FROM surveys WHERE survey_id = ANY('{{{','.join(map(str, created)) or '0'}}}'::bigint[])"))
    result = {
        "requests": len(records), "by_status": summarize(records, signalled), "in_flight_at_sigterm": len(in_flight),
        "in_flight_failed": len(in_flight_failed), "new_connection_refused": refused,
        "exit_seconds": round(exited, 2) if exited is not None else None, "created": len(created), "created_and_stored": stored,
    }
    print(json.dumps({"serve-sigterm": result}, indent=2))
    return {
        "requests were in flight at SIGTERM": len(in_flight) > 0,
        "every request in flight completed": not in_flight_failed,
        "new connections refused after SIGTERM": refused,
        "exited within 10 s": exited is not None and exited < 10,
        "every 201 is in the database": stored == len(created),
    }


SCENARIOS = {"pg-restart": pg_restart, "serve-sigterm": serve_sigterm}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", choices=[[], *SCENARIOS], default=[])
    parser.add_argument("--release", action="store_true", help="build and run the release binary")
    args = parser.parse_args()
    configuration = ["-c", "release"] if args.release else []
    subprocess.run(["swift", "build", *configuration, "--product", "surveyd"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    bin_dir = subprocess.run(["swift", "build", *configuration, "--show-bin-path"], cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout.strip()
    surveyd = os.path.join(bin_dir, "surveyd")
    failed = False
    for name in args.scenarios or list(SCENARIOS):
        url = database_url()
        env = dict(os.environ, DATABASE_URL=url, DESTINATION_HASH_KEY=HASH_KEY, HOST="127.0.0.1", LOG_LEVEL="error",
                   SURVEYD_SQL_DIR=os.path.join(ROOT, "sql"), SURVEYD_OPENAPI=os.path.join(ROOT, "openapi.yaml"),
                   RATE_LIMIT_PER_SECOND="100000", RATE_LIMIT_BURST="100000",
                   COMPANY_RATE_LIMIT_PER_SECOND="100000", COMPANY_RATE_LIMIT_BURST="100000")
        subprocess.run([surveyd, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        checks = SCENARIOS[name](surveyd, env)
        for check, passed in checks.items():
            print(f"{'PASS' if passed else 'FAIL'}  {name}: {check}")
            failed |= not passed
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
