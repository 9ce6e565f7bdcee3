#!/usr/bin/env python3
"""Scheduled sends benchmark: waiting jobs must cost the worker nothing.

    python3 bench/scheduled.py --waiting 1000000 --drain 50000 --rounds 2

The target (issue: scheduled sends): with 1,000,000 jobs scheduled for next week, the drain
rate of due jobs stays within 10 % of the rate with none, and the claim query's plan shows
an index range on due time.

Sets up as bench/sending.py does (release build, a private PostgreSQL cluster with durable
commits, a fresh migrated database, `surveyd serve`; a company without quiet hours), then:

1. drain rate: `--drain` jobs due now are queued through the API (send calls of 1000 fresh
   numbers), the database is checkpointed, one `surveyd worker` (SMS_PROVIDER=accept-all,
   the knobs of sending.py's drain) is started, and the time until no admitted job is left
   gives jobs per second. Measured with no waiting job and with `--waiting` jobs scheduled
   for next week (inserted in bulk with SQL as the superuser: a request with
   `scheduled_for` and a job with `needs_admission` each, as a send call with `sendAt`
   writes them; the API would take hours for a million);
2. plans: with the waiting jobs present and the due jobs queued, EXPLAIN (ANALYZE,
   BUFFERS) of the worker's claim (QueueRepository.claim), the scheduler's selection
   (SchedulerRepository.admitDue) and the reaper's DELETE (QueueRepository
   .failExpiredLeases), as the worker's role and inside BEGIN ... ROLLBACK so nothing is
   leased or deleted. Checked: the claim reads an index range of `sms_jobs_ready` on
   `run_at`, and neither the claim, the scheduler, the reaper, the worker's queue-depth metric
   nor the API's cancel of one request scans `sms_jobs`.

Rounds alternate the two conditions to cancel the machine's drift, in ABBA order: round 1
is [without, with], round 2 [with, without], round 3 [without, with], ... Consecutive runs
across a round boundary share their condition, so each round costs one insert or one
removal of the waiting jobs (the expensive part) rather than two, and a linear drift (a
warming cache, a growing survey_requests table) cancels within every two rounds. The
removal deletes the jobs, then their requests, and vacuums both tables. Each rate is printed, and the ratio of the
medians (with / without).

The poll that watches the drain reads the two partial indexes of admitted jobs (unleased
and leased), never the waiting ones, so the benchmark itself does not make them cost.

Exit status: non-zero if a plan check fails. The ratio's verdict is printed (PASS/FAIL)
but, being a timing on a shared machine, does not set the exit status. Prints a Markdown
table for docs/BENCHMARKS.md. Uses its own database (surveyd_bench_scheduled) and API port,
so it cannot disturb a bench/sending.py run.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sending  # noqa: E402  (its helpers: numbers, Client, psql, wait_for, bash, ROOT, …)
from benchlib import migrate_and_create_company, private_database_url, release_binaries, service_environment  # noqa: E402

API_PORT = 18082
DATABASE = "surveyd_bench_scheduled"
BODY = "How likely are you to recommend us to a friend, 0-10?"
# The literals substituted for the claim's, the scheduler's and the reaper's parameters.
CLAIM_LIMIT = 1000
LEASE_SECONDS = 120  # SendWorker.Configuration.lease
MAXIMUM_JOB_AGE_SECONDS = 3600  # SendingPolicy.maximumJobAge
EXPLAIN_LEASE_ID = "bench-explain-lease"

# --- The product's queries, as written in Sources/SurveyStorage (parameters as literals). ---

CLAIM = f"""
WITH due AS (
    SELECT company_id, job_id, row_number() OVER (ORDER BY run_at, job_id) AS position FROM (
        SELECT company_id, job_id, run_at FROM sms_jobs
         WHERE leased_until IS NULL AND NOT needs_admission AND run_at <= now()
           AND due_at > now() - make_interval(secs => {MAXIMUM_JOB_AGE_SECONDS})
         ORDER BY run_at
         LIMIT {CLAIM_LIMIT}
         FOR UPDATE SKIP LOCKED) AS locked
), claim AS (
    INSERT INTO sms_claims (lease_id) SELECT '{EXPLAIN_LEASE_ID}' WHERE EXISTS (SELECT 1 FROM due)
)
UPDATE sms_jobs AS j
   SET leased_until = now() + make_interval(secs => {LEASE_SECONDS}), attempts = j.attempts + 1,
       lease_id = '{EXPLAIN_LEASE_ID}', claim_position = due.position
  FROM due
 WHERE j.company_id = due.company_id AND j.job_id = due.job_id
RETURNING j.company_id, j.job_id, j.request_id, j.destination_hash, j.destination, j.body, j.attempts, j.created_at,
          EXISTS (SELECT 1 FROM opt_outs AS o WHERE o.destination_hash = j.destination_hash), due.position"""

ADMISSION = f"""
SELECT j.company_id, j.job_id, j.request_id, j.destination_hash,
       to_char(c.quiet_hours_start, 'HH24:MI'), to_char(c.quiet_hours_end, 'HH24:MI'), c.time_zone
  FROM sms_jobs AS j JOIN companies AS c ON c.company_id = j.company_id
 WHERE j.needs_admission AND j.run_at <= now()
 ORDER BY j.run_at
 LIMIT {CLAIM_LIMIT}
   FOR UPDATE OF j SKIP LOCKED"""

REAPER = f"""
DELETE FROM sms_jobs
 WHERE leased_until < now()
    OR (leased_until IS NULL AND NOT needs_admission AND run_at <= now()
        AND due_at < now() - make_interval(secs => {MAXIMUM_JOB_AGE_SECONDS}))
RETURNING company_id, request_id, destination_hash, CASE WHEN leased_until IS NULL THEN 'expired' ELSE 'uncertain' END"""

# QueueRepository.depth, which the worker's QueueMonitor runs every 5 s.
DEPTH = """
SELECT (SELECT count(*) FROM sms_jobs WHERE leased_until IS NULL AND NOT needs_admission AND run_at <= now())
     + (SELECT count(*) FROM sms_jobs WHERE leased_until IS NOT NULL),
       (SELECT min(run_at) FROM sms_jobs WHERE leased_until IS NULL AND NOT needs_admission AND run_at <= now())"""

# RequestRepository's cancel (DELETE /requests/{id}), for one waiting request.
CANCEL = """
DELETE FROM sms_jobs
 WHERE company_id = {company} AND request_id = {request} AND leased_until IS NULL
RETURNING destination_hash"""

# Jobs admitted to the queue and not done yet: unleased ones through sms_jobs_ready, leased
# ones through sms_jobs_leased (a waiting job is never leased), so the poll never reads a
# waiting job.
ADMITTED = """
SELECT (SELECT count(*) FROM sms_jobs WHERE leased_until IS NULL AND NOT needs_admission)
     + (SELECT count(*) FROM sms_jobs WHERE leased_until IS NOT NULL)"""


def psql_script(url, script):
    """Runs several statements in one session (psql -c would show only the last result)."""
    return subprocess.run(["psql", "-X", "-q", url, "-v", "ON_ERROR_STOP=1", "-At", "-f", "-"], input=script,
                          check=True, capture_output=True, text=True).stdout.strip()


def explain(url, statement, role="survey_worker", settings=()):
    """EXPLAIN (ANALYZE, BUFFERS) of `statement` as `role` with the pool's session settings,
    rolled back: it runs, but leases, locks and deletes nothing that lasts."""
    lines = ["BEGIN;", *settings, f"SET LOCAL ROLE {role};", "SET LOCAL jit = off;",
             f"EXPLAIN (ANALYZE, BUFFERS) {statement.strip()};", "ROLLBACK;"]
    return psql_script(url, "\n".join(lines))


def reads_index_range(plan, index, column):
    """Whether a node of `plan` reads `index` with an Index Cond on `column`."""
    node = re.compile(rf"(Index Scan|Index Only Scan)( Backward)? using {index}\b|Bitmap Index Scan on {index}\b")
    lines = plan.splitlines()
    for i, line in enumerate(lines):
        if node.search(line):
            for detail in lines[i + 1:]:
                if "->" in detail:  # the next node: this one's details are over
                    break
                if "Index Cond:" in detail and column in detail:
                    return True
    return False


def scans_jobs(plan):
    return re.search(r"Seq Scan on sms_jobs\b", plan) is not None


class Bench:
    def __init__(self, args):
        self.args = args
        self.processes = []
        self.waiting_generation = 0
        self.waiting_present = False

    # --- setup ---

    def build(self):
        self.surveyd = os.path.join(release_binaries("surveyd"), "surveyd")

    def set_up(self):
        self.url = private_database_url(DATABASE)
        self.env = service_environment(self.url, API_PORT)
        self.token, self.company = migrate_and_create_company(self.surveyd, self.env)

        serve = subprocess.Popen([self.surveyd, "serve"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes.append(serve)
        sending.wait_for(API_PORT, "/survey/1.0.0/surveys")
        # One survey for the due jobs, another for the waiting ones (removed by survey).
        self.survey, _ = self.create_survey("bench")
        self.waiting_survey, self.waiting_question = self.create_survey("bench scheduled")

    def create_survey(self, name):
        status, survey = sending.Client(API_PORT, self.token).request("POST", "/survey/1.0.0/surveys", {
            "name": name, "interactionType": "general", "questions": [{"body": BODY, "language": "en-GB"}],
        })
        assert status == 201, survey
        question = int(sending.psql(self.url, f"SELECT question_id FROM questions WHERE survey_id = {survey['id']}"))
        return survey["id"], question

    def stop(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()

    # --- the waiting jobs ---

    def insert_waiting(self):
        """`--waiting` requests scheduled for next week, each with its waiting job, in one statement."""
        self.waiting_generation += 1
        started = time.perf_counter()
        sequence = sending.psql(self.url, "SELECT pg_get_serial_sequence('survey_requests', 'request_id')")
        sending.psql(self.url, f"""
            WITH ids AS (
                SELECT i, nextval('{sequence}') AS request_id,
                       sha256(convert_to('bench waiting {self.waiting_generation} ' || i, 'UTF8')) AS hash
                  FROM generate_series(1, {self.args.waiting}) AS i
            ), requests AS (
                INSERT INTO survey_requests (company_id, request_id, survey_id, question_id, channel, destination_hash, scheduled_for)
                SELECT {self.company}, request_id, {self.waiting_survey}, {self.waiting_question}, 'SMS', hash, now() + interval '7 days'
                  FROM ids
            )
            INSERT INTO sms_jobs (company_id, request_id, destination_hash, destination, body, run_at, due_at, needs_admission)
            SELECT {self.company}, request_id, hash, '+3249' || lpad(i::text, 7, '0'), '{BODY}',
                   now() + interval '7 days', now() + interval '7 days', true
              FROM ids""")
        sending.psql(self.url, "VACUUM ANALYZE sms_jobs, survey_requests")
        self.waiting_present = True
        print(f"inserted {self.args.waiting:,} waiting jobs in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    def remove_waiting(self):
        started = time.perf_counter()
        sending.psql(self.url, "DELETE FROM sms_jobs WHERE needs_admission")
        sending.psql(self.url, "VACUUM sms_jobs")
        # Each deleted request cascades to sms_jobs through `sms_jobs_by_request`.
        sending.psql(self.url, f"DELETE FROM survey_requests WHERE company_id = {self.company} AND survey_id = {self.waiting_survey}")
        sending.psql(self.url, "VACUUM ANALYZE sms_jobs, survey_requests")
        self.waiting_present = False
        print(f"removed the waiting jobs in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    def set_waiting(self, present):
        if present and not self.waiting_present:
            self.insert_waiting()
        elif not present and self.waiting_present:
            self.remove_waiting()

    def waiting_count(self):
        return int(sending.psql(self.url, "SELECT count(*) FROM sms_jobs WHERE needs_admission"))

    # --- the drain ---

    def queue_due(self, count, threads=4):
        """Queues `count` jobs due now: send calls of 1000 fresh numbers from `threads` threads
        (drained requests hold their numbers for 72 hours)."""
        path = f"/survey/1.0.0/surveys/{self.survey}/send"
        bodies = [json.dumps({"requests": [{"channel": "SMS", "destination": n} for n in sending.numbers(1000)]}).encode()
                  for _ in range(count // 1000)]

        def send(part):
            client = sending.Client(API_PORT, self.token)
            for body in part:
                status, result = client.request("POST", path, body)
                assert status == 202, (status, result)
                assert all(r["status"] == "queued" for r in result["results"]), result

        pool = [threading.Thread(target=send, args=(bodies[i::threads],)) for i in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()

    def admitted(self):
        return int(sending.psql(self.url, ADMITTED))

    def settle(self):
        """Flushes what the setup wrote and waits for autovacuum, so neither lands on the drain."""
        sending.psql(self.url, "CHECKPOINT")
        deadline = time.time() + 120
        while time.time() < deadline and int(sending.psql(
                self.url, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")) > 0:
            time.sleep(0.5)

    def drain(self):
        """Times one `surveyd worker` until no admitted job is left; returns jobs per second."""
        jobs = self.admitted()
        assert jobs > 0, "nothing queued"
        self.settle()
        worker_env = dict(self.env, SMS_PROVIDER="accept-all", SMS_RATE_LIMIT="100000", SMS_BATCH_SIZE="1000",
                          SMS_CONCURRENCY="128", DATABASE_MAX_CONNECTIONS="4")
        started = time.perf_counter()
        worker = subprocess.Popen([self.surveyd, "worker"], env=worker_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes.append(worker)
        try:
            while self.admitted() > 0:
                time.sleep(0.05)
                if time.perf_counter() - started > 600:
                    raise SystemExit("drain did not finish in 10 minutes")
            seconds = time.perf_counter() - started
        finally:
            worker.terminate()
            worker.wait()
            self.processes.remove(worker)
        return jobs, seconds

    # --- the plans ---

    def plans(self):
        """Explains the worker's queries with the waiting jobs and the due ones in place;
        returns the checks as (ok, text), and notes on the queries shown for information."""
        waiting_request = sending.psql(self.url, "SELECT request_id FROM sms_jobs WHERE needs_admission LIMIT 1")
        shown = [
            ("claim (QueueRepository.claim)", CLAIM, {}),
            ("scheduler (SchedulerRepository.admitDue)", ADMISSION, {}),
            ("reaper (QueueRepository.failExpiredLeases)", REAPER, {}),
            ("queue depth metric (QueueRepository.depth, every 5 s)", DEPTH, {}),
            ("cancel of one waiting request (RequestRepository)",
             CANCEL.format(company=self.company, request=waiting_request),
             dict(role="survey_app", settings=[f"SET LOCAL app.company_id = '{self.company}';"])),
        ]
        plans = {}
        for title, statement, options in shown:
            plan = explain(self.url, statement, **options)
            plans[title.split()[0]] = plan
            print(f"\n### {title}\n\n```\n{plan}\n```", file=sys.stderr)
        admitted = sending.psql(self.url, f"EXPLAIN {ADMITTED}")
        if scans_jobs(admitted):
            print(f"WARNING: the benchmark's own poll scans sms_jobs:\n{admitted}", file=sys.stderr)

        checks = [
            (reads_index_range(plans["claim"], "sms_jobs_ready", "run_at"),
             "claim reads an index range of sms_jobs_ready on run_at"),
            (not scans_jobs(plans["claim"]), "claim: no Seq Scan on sms_jobs"),
            (not scans_jobs(plans["scheduler"]), "scheduler: no Seq Scan on sms_jobs"),
            (not scans_jobs(plans["reaper"]), "reaper: no Seq Scan on sms_jobs"),
            (not scans_jobs(plans["queue"]), "queue depth metric: no Seq Scan on sms_jobs"),
            (not scans_jobs(plans["cancel"]), "cancel of one request: no Seq Scan on sms_jobs"),
        ]
        return checks, []


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waiting", type=int, default=1_000_000, help="jobs scheduled for next week")
    parser.add_argument("--drain", type=int, default=50_000, help="jobs due now for each drain (a multiple of 1000)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of [without, with] measurements, in ABBA order")
    args = parser.parse_args()
    if args.drain < 1000 or args.drain % 1000 or args.waiting < 1 or args.rounds < 1:
        parser.error("--drain must be a positive multiple of 1000, --waiting and --rounds positive")

    bench = Bench(args)
    bench.build()
    rates = {False: [], True: []}
    checks, notes = None, []
    try:
        bench.set_up()
        bench.queue_due(2000)  # warm up the API and the worker's tables
        bench.drain()
        for number in range(1, args.rounds + 1):
            order = [False, True] if number % 2 == 1 else [True, False]
            for with_waiting in order:
                bench.set_waiting(with_waiting)
                bench.queue_due(args.drain)
                if with_waiting and checks is None:
                    checks, notes = bench.plans()
                jobs, seconds = bench.drain()
                waiting = bench.waiting_count() if with_waiting else 0
                assert waiting == (args.waiting if with_waiting else 0), waiting
                rates[with_waiting].append(jobs / seconds)
                print(f"round {number}, {waiting:,} waiting: {jobs:,} jobs in {seconds:.2f} s = {jobs / seconds:,.0f}/s",
                      file=sys.stderr)
    except subprocess.CalledProcessError as error:
        # psql and surveyd failures: what they said, which the traceback leaves out.
        print(error.stderr, file=sys.stderr)
        raise
    finally:
        bench.stop()

    without, with_ = statistics.median(rates[False]), statistics.median(rates[True])
    ratio = with_ / without
    ratio_ok = ratio >= 0.9
    print()
    print(f"drain without waiting jobs: {', '.join(f'{r:,.0f}' for r in rates[False])} jobs/s (median {without:,.0f})")
    print(f"drain with {args.waiting:,} waiting: {', '.join(f'{r:,.0f}' for r in rates[True])} jobs/s (median {with_:,.0f})")
    print(f"{'PASS' if ratio_ok else 'FAIL'} drain ratio with/without {ratio:.3f} (target ≥ 0.90; timing, not in the exit status)")
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'} {text}")
    plans_ok = all(ok for ok, _ in checks)
    for note in notes:
        print(note)

    cpu = sending.bash("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    print()
    print(f"Machine: {os.cpu_count()} cores ({cpu}), PostgreSQL with fsync and synchronous_commit on, all on loopback; "
          f"median of {args.rounds} round(s), {args.drain:,} jobs per drain.")
    print()
    print("| measure | result | target |")
    print("| --- | --- | --- |")
    print(f"| worker drain, accept-all, no waiting jobs | {without:,.0f} jobs/s | |")
    print(f"| worker drain, accept-all, {args.waiting:,} jobs waiting for next week | {with_:,.0f} jobs/s | |")
    print(f"| ratio with / without | {ratio:.2f} | within 10 % (≥ 0.90) {'✓' if ratio_ok else '✗'} |")
    print(f"| claim plan | {'index range on sms_jobs_ready (run_at), no Seq Scan' if checks[0][0] and checks[1][0] else 'scans: see above'} "
          f"| index range on due time {'✓' if checks[0][0] and checks[1][0] else '✗'} |")
    print(f"| scheduler and reaper plans | {'no Seq Scan on sms_jobs' if checks[2][0] and checks[3][0] else 'Seq Scan on sms_jobs'} "
          f"| no scan of waiting jobs {'✓' if checks[2][0] and checks[3][0] else '✗'} |")
    sys.exit(0 if plans_ok else 1)


if __name__ == "__main__":
    main()
