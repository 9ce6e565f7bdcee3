#!/usr/bin/env python3
"""E-mail drain benchmark: how fast the worker hands queued e-mails to an SMTP relay.

    bench/email_drain.py [--emails 20000] [--concurrency 16] [--worker-env NAME=VALUE ...]

Builds surveyd in release mode, starts a private PostgreSQL cluster with durable commits,
a fresh database, `surveyd serve`, and a local SMTP server (scripts/smtp_sink.py: aiosmtpd
with STARTTLS, AUTH and PIPELINING, storing nothing but a count). Queues N e-mail requests
through the API (calls of 1000), then starts one `surveyd worker` and measures e-mails per
second until the queue is empty: each message rendered (MIME, four languages, eleven
links), handed over on reused TLS connections, its outcome recorded. Also reports how many
SMTP connections carried them.

Everything runs on loopback and stops by itself. Prints a Markdown table for
docs/BENCHMARKS.md.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import (
    cpu_model, stop_all,
    ROOT, Client, Session, bash, migrate_and_create_company, private_database_url, psql, release_binaries,
    service_environment, wait_for)

API_PORT = 18081
USER, PASSWORD = "bench@example.com", "bench-password"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=20_000, help="e-mails queued for the drain (a multiple of 1000)")
    parser.add_argument("--concurrency", type=int, default=16, help="EMAIL_CONCURRENCY: e-mails in flight, one per SMTP connection")
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()

    python = os.path.join(ROOT, ".venv", "bin", "python")
    if subprocess.run([python, "-c", "import aiosmtpd"], capture_output=True).returncode != 0:
        bash("source scripts/lib/database.sh && ensure_project_python")
    bin_dir = release_binaries("surveyd")
    surveyd = os.path.join(bin_dir, "surveyd")
    url = private_database_url("surveyd_email_bench")
    env = service_environment(url, API_PORT, PUBLIC_BASE_URL="https://nps.example.com")
    token, _ = migrate_and_create_company(surveyd, env)

    sink_dir = tempfile.mkdtemp(prefix="surveyd-email-bench-")
    processes = []
    try:
        sink = subprocess.Popen([python, os.path.join(ROOT, "scripts", "smtp_sink.py"), "--dir", sink_dir, "--user", USER,
                                 "--password", PASSWORD, "--pipelining", "--no-store"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(sink)
        ready_path = os.path.join(sink_dir, "ready.json")
        deadline = time.time() + 30
        while not os.path.exists(ready_path):
            if time.time() > deadline or sink.poll() is not None:
                raise SystemExit("the SMTP sink did not start")
            time.sleep(0.05)
        with open(ready_path) as ready_file:
            ready = json.load(ready_file)

        serve = subprocess.Popen([surveyd, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(serve)
        wait_for(API_PORT, "/survey/1.0.0/surveys")
        api = Client(API_PORT, token)
        status, survey = api.request("POST", "/survey/1.0.0/surveys", {
            "name": "bench", "interactionType": "general",
            "questions": [{"body": "How likely are you to recommend us to a friend, 0-10?", "language": "en-GB"},
                          {"body": "Quelle est la probabilité que vous nous recommandiez à un ami ?", "language": "fr"}],
        })
        assert status == 201, survey
        send_path = f"/survey/1.0.0/surveys/{survey['id']}/send"

        # Queue them, four client threads, 1000 fresh addresses a call; no worker yet.
        calls = max(1, args.emails // 1000)
        run = int(time.time())
        bodies = [json.dumps({"requests": [
            {"channel": "EMAIL", "destination": f"customer.{run}.{call}.{i}@example.com", "language": "fr-BE" if i % 2 else "en-GB"}
            for i in range(1000)]}).encode() for call in range(calls)]

        def send(index, threads=4):
            client = Client(API_PORT, token)
            for body in bodies[index::threads]:
                status, result = client.request("POST", send_path, body)
                assert status == 202, (status, result)
        pool = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        jobs = int(psql(url, "SELECT count(*) FROM sms_jobs WHERE channel = 'EMAIL'"))
        print(f"queued {jobs} e-mails", file=sys.stderr)

        worker_env = dict(
            env, SMS_PROVIDER="accept-all", SMTP_URL=f"smtp://{USER.replace('@', '%40')}:{PASSWORD}@127.0.0.1:{ready['port']}",
            SMTP_CA_FILE=ready["certificate"], MAIL_FROM="surveys@nps.example.com", EMAIL_RATE_LIMIT="100000",
            EMAIL_CONCURRENCY=str(args.concurrency), SMS_BATCH_SIZE="1000", DATABASE_MAX_CONNECTIONS="4")
        worker_env.update(setting.split("=", 1) for setting in args.worker_env)
        poll = Session(url)
        started = time.perf_counter()
        worker = subprocess.Popen([surveyd, "worker"], env=worker_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        processes.append(worker)
        while poll.query("SELECT count(*) FROM (SELECT 1 FROM sms_jobs ORDER BY company_id, job_id LIMIT 1) AS left_") != "0":
            time.sleep(0.05)
            if worker.poll() is not None:
                raise SystemExit("the worker exited: " + worker.stderr.read().decode(errors="replace")[-2000:])
            if time.perf_counter() - started > 600:
                raise SystemExit("drain did not finish in 10 minutes")
        seconds = time.perf_counter() - started
        poll.close()
        worker.terminate()
        worker.wait()
        processes.remove(worker)
        outcomes = psql(url, "SELECT string_agg(status || coalesce('/' || failure, '') || ' ' || n, ', ') "
                             "FROM (SELECT status, failure, count(*) AS n FROM survey_requests GROUP BY 1, 2) AS t")
        time.sleep(0.3)
        with open(os.path.join(sink_dir, "count")) as count_file:
            count = json.load(count_file)
        rate = jobs / seconds
        print(f"drain: {jobs} e-mails in {seconds:.2f} s = {rate:,.0f}/s; requests: {outcomes}; "
              f"the sink counted {count['messages']} (to the last hundred) over {count['connections']} connections",
              file=sys.stderr)
    finally:
        stop_all(processes)

    cpu = cpu_model()
    print()
    print(f"Machine: {os.cpu_count()} cores ({cpu}), PostgreSQL 15 with fsync and synchronous_commit on, all on loopback; "
          f"the relay is aiosmtpd (Python) with STARTTLS, AUTH and PIPELINING.")
    print()
    print("| measure | result | target |")
    print("| --- | --- | --- |")
    print(f"| e-mail drain to the local SMTP sink, {args.concurrency} connections | {rate:,.0f} e-mails/s "
          f"({jobs:,} over {count['connections']} connections) | ≥ 500/s |")


if __name__ == "__main__":
    main()
