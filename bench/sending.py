#!/usr/bin/env python3
"""Sending pipeline benchmark: API acceptance rate, worker drain rate, enqueue-to-gateway latency.

    bench/sending.py [--calls 40] [--drain 100000] [--latency-samples 200] [--worker-env NAME=VALUE ...]
                     [--after-migrate-sql FILE] [--surveyd PATH]

Builds surveyd and fake-twilio in release mode, starts a private PostgreSQL cluster with
durable commits (fsync and synchronous_commit on), a fresh database, `surveyd serve`, and
measures on this machine:

1. acceptance: POST /surveys/{id}/send with 1000 fresh numbers per call, from 4 client
   threads; survey requests accepted (queued) per second;
2. drain: N jobs queued, then one `surveyd worker` started; jobs per second until the queue
   is empty, once with SMS_PROVIDER=accept-all (the queue's own ceiling) and once with
   SMS_PROVIDER=twilio against the local fake gateway, with the worker's and PostgreSQL's
   CPU time per job (steadier than the rate on a shared machine);
3. latency: with an idle worker LISTENing, single-request sends one at a time; time from
   the call to the message reaching the gateway, p50 and p99.

Everything runs on loopback and stops by itself. Prints a Markdown table for
docs/BENCHMARKS.md.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time

from benchlib import (
    cpu_model, cpu_seconds, postgres_cpu_seconds, postmaster_pid, stop_all,
    HASH_KEY, ROOT, Client, Session, migrate_and_create_company, percentile, private_database_url, psql,
    release_binaries, service_environment, wait_for)
API_PORT = 18080
GATEWAY_PORT = 19099
AUTH_TOKEN = "bench-auth-token"
ACCOUNT = "AC" + "be" * 16


def database_url():
    return private_database_url("surveyd_bench")


def numbers(count):
    # Unique Belgian mobile numbers.
    start = random.randrange(10_000_000, 80_000_000)
    return ["+324%08d" % (start + i) for i in range(count)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=40, help="send calls of 1000 requests for the acceptance rate")
    parser.add_argument("--drain", type=int, default=100_000, help="jobs queued for each drain measurement")
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra setting for the draining worker (repeatable), e.g. SMS_LANES=1")
    parser.add_argument("--after-migrate-sql", metavar="FILE",
                        help="SQL run as the superuser once the schema is migrated, for experiments "
                             "(e.g. dropping an index to measure what it costs)")
    parser.add_argument("--surveyd", metavar="PATH",
                        help="run this surveyd binary instead of the tree's release build (an older build, side by side; "
                             "the tree's migrations are applied)")
    args = parser.parse_args()

    bin_dir = release_binaries("surveyd", "fake-twilio")
    surveyd = os.path.abspath(args.surveyd) if args.surveyd else os.path.join(bin_dir, "surveyd")

    url = database_url()
    env = service_environment(url, API_PORT, TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT)
    token, _ = migrate_and_create_company(surveyd, env)
    if args.after_migrate_sql:
        with open(args.after_migrate_sql) as experiment:
            psql(url, experiment.read())
    # Every number is new to this company; the rule that skips recently surveyed numbers still runs.
    processes = []
    try:
        serve = subprocess.Popen([surveyd, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(serve)
        gateway = subprocess.Popen([os.path.join(bin_dir, "fake-twilio"), str(GATEWAY_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(gateway)
        wait_for(API_PORT, "/survey/1.0.0/surveys")
        wait_for(GATEWAY_PORT, "/received")

        api = Client(API_PORT, token)
        status, survey = api.request("POST", "/survey/1.0.0/surveys", {
            "name": "bench", "interactionType": "general",
            "questions": [{"body": "How likely are you to recommend us to a friend, 0-10?", "language": "en-GB"}],
        })
        assert status == 201, survey
        send_path = f"/survey/1.0.0/surveys/{survey['id']}/send"

        def send_calls(count, threads=4):
            """Sends `count` calls of 1000 fresh numbers from `threads` threads; returns (queued, seconds)."""
            bodies = [json.dumps({"requests": [{"channel": "SMS", "destination": n, "segments": ["bench", "vip"]} for n in numbers(1000)]}).encode()
                      for _ in range(count)]
            queued = [0] * threads
            def worker(index):
                client = Client(API_PORT, token)
                for body in bodies[index::threads]:
                    status, result = client.request("POST", send_path, body)
                    assert status == 202, (status, result)
                    queued[index] += sum(1 for r in result["results"] if r["status"] == "queued")
            started = time.perf_counter()
            pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
            return sum(queued), time.perf_counter() - started

        results = {}
        # 1. Acceptance (no worker running: jobs pile up, which the drain uses next).
        send_calls(2)  # warm up
        queued, seconds = send_calls(args.calls)
        results["acceptance"] = queued / seconds
        print(f"acceptance: {queued} requests in {seconds:.2f} s = {queued / seconds:,.0f}/s", file=sys.stderr)

        def drain(provider):
            psql(url, "DELETE FROM sms_jobs")
            queued, _ = send_calls(args.drain // 1000)
            jobs = int(psql(url, "SELECT count(*) FROM sms_jobs"))
            worker_env = dict(env, SMS_PROVIDER=provider, SMS_RATE_LIMIT="100000", SMS_BATCH_SIZE="1000", SMS_CONCURRENCY="128",
                              TWILIO_API_BASE_URL=f"http://127.0.0.1:{GATEWAY_PORT}", TWILIO_ACCOUNT_SID=ACCOUNT, SMS_SENDER="+3288000",
                              DATABASE_MAX_CONNECTIONS="4")
            worker_env.update(setting.split("=", 1) for setting in args.worker_env)
            # Polled over one connection, through the primary key (drained jobs leave dead
            # index entries the scan soon learns to skip), so the poll costs the drain
            # almost nothing.
            poll = Session(url)
            postmaster = postmaster_pid(url)
            postgres_before = postgres_cpu_seconds(postmaster)
            started = time.perf_counter()
            worker = subprocess.Popen([surveyd, "worker"], env=worker_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            processes.append(worker)
            while poll.query("SELECT count(*) FROM (SELECT 1 FROM sms_jobs ORDER BY company_id, job_id LIMIT 1) AS left_") != "0":
                time.sleep(0.05)
                if time.perf_counter() - started > 600:
                    raise SystemExit("drain did not finish in 10 minutes")
            seconds = time.perf_counter() - started
            worker_cpu = cpu_seconds([worker.pid])
            poll.close()
            worker.terminate()
            worker.wait()
            processes.remove(worker)
            # The worker's backends count once they have exited and the postmaster reaped them.
            time.sleep(1)
            postgres_cpu = postgres_cpu_seconds(postmaster) - postgres_before
            sent = int(psql(url, "SELECT count(*) FROM survey_requests WHERE status = 'sent'"))
            print(f"drain ({provider}): {jobs} jobs in {seconds:.2f} s = {jobs / seconds:,.0f}/s ({sent} sent in total); "
                  f"CPU per job: worker {worker_cpu / jobs * 1e6:.0f} µs, PostgreSQL {postgres_cpu / jobs * 1e6:.0f} µs", file=sys.stderr)
            return jobs / seconds

        # 2. Drain rates. Earlier requests hold their numbers; these are all new.
        results["drain_accept_all"] = drain("accept-all")
        Client(GATEWAY_PORT).request("DELETE", "/received")
        results["drain_twilio"] = drain("twilio")
        _, received = Client(GATEWAY_PORT).request("GET", "/received")
        print(f"gateway received {received['count']} messages", file=sys.stderr)

        # 3. Latency, idle worker.
        Client(GATEWAY_PORT).request("DELETE", "/received")
        worker_env = dict(env, SMS_PROVIDER="twilio", SMS_RATE_LIMIT="100000", TWILIO_API_BASE_URL=f"http://127.0.0.1:{GATEWAY_PORT}",
                          TWILIO_ACCOUNT_SID=ACCOUNT, SMS_SENDER="+3288000")
        worker = subprocess.Popen([surveyd, "worker"], env=worker_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(worker)
        time.sleep(2)
        sent_at = {}
        call_times = []
        gateway_client = Client(GATEWAY_PORT)
        for number in numbers(args.latency_samples):
            sent_at[number] = time.time()
            status, _ = api.request("POST", send_path, {"requests": [{"channel": "SMS", "destination": number}]})
            call_times.append((time.time() - sent_at[number]) * 1000)
            assert status == 202
            deadline = time.time() + 5
            while time.time() < deadline:
                _, received = gateway_client.request("GET", "/received")
                if number in received["arrivals"]:
                    break
                time.sleep(0.001)
            time.sleep(0.02)  # idle between samples
        _, received = gateway_client.request("GET", "/received")
        latencies = [(received["arrivals"][n] - t) * 1000 for n, t in sent_at.items() if n in received["arrivals"]]
        results["latency_p50"] = statistics.median(latencies)
        results["latency_p99"] = percentile(latencies, 0.99)
        results["call_p50"] = statistics.median(call_times)
        print(f"latency: {len(latencies)} samples, p50 {results['latency_p50']:.1f} ms, p99 {results['latency_p99']:.1f} ms "
              f"(of which the send call itself: p50 {results['call_p50']:.1f} ms)", file=sys.stderr)
    finally:
        stop_all(processes)

    cpu = cpu_model()
    print()
    print(f"Machine: {os.cpu_count()} cores ({cpu}), PostgreSQL 15 with fsync and synchronous_commit on, all on loopback.")
    print()
    print("| measure | result | target |")
    print("| --- | --- | --- |")
    print(f"| API acceptance, batches of 1000 | {results['acceptance']:,.0f} requests/s | ≥ 20,000/s |")
    print(f"| worker drain, accept-all provider | {results['drain_accept_all']:,.0f} jobs/s | ≥ 10,000/s |")
    print(f"| worker drain, Twilio provider to the fake gateway | {results['drain_twilio']:,.0f} SMS/s | ≥ 3,000/s |")
    print(f"| enqueue → gateway latency, idle | p50 {results['latency_p50']:.1f} ms, p99 {results['latency_p99']:.1f} ms | p50 ≤ 10 ms |")


if __name__ == "__main__":
    main()
