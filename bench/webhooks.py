#!/usr/bin/env python3
"""Company webhooks benchmark (issue 14): delivery rate, idle latency, one company's hanging
endpoint against another's rate.

    python3 bench/webhooks.py [--events 10000] [--latency-samples 200] [--rounds 3]
                              [--shared-host | --no-shared-host]

The targets (issue 14):

- 10,000 events delivered to a local receiver, one company, one endpoint: ≥ 2,000
  deliveries/s;
- idle latency, from the commit of the change to the receiver: p50 ≤ 100 ms;
- isolation: another company's endpoint that never answers (the sender gives up after
  10 s) lowers the first company's rate by less than 10 %.

Sets up as bench/sending.py does: release build, a private PostgreSQL cluster with durable
commits (fsync and synchronous_commit on), a fresh database (surveyd_bench_webhooks), two
companies without quiet hours (A and B), an admin token each (`surveyd token create
--scope admin`), a survey each through the API, and `surveyd serve`. Two receivers
(scripts/webhook_receiver.py --quiet: ids and arrival times only, no verification), each
its own process and port, i.e. another host as far as the sender's connection pools go.
A registers http://127.0.0.1:<receiver 1>/a and B http://127.0.0.1:<receiver 2>/b
through `POST /webhooks`, both for `response.received` only; B's endpoint is told to hang.
Serve and worker run with WEBHOOK_ALLOW_PRIVATE_URLS=1 (loopback URLs), the worker with
SMS_PROVIDER=accept-all and every WEBHOOK_* knob at the product's default (512 attempts at
once, 16 per endpoint, 64 per company, 2 database connections) unless given below.

Events are made through the real emission path, never by writing the outbox: survey
requests are inserted as `sent` with SQL as the superuser (the API and the SMS path would
take far too long), then answered with `UPDATE survey_requests SET score = …` 1,000 rows a
transaction, which fires the `webhook_events` trigger: event, delivery and NOTIFY are
written in that transaction, as for a reply.

1. latency: one worker running and idle (LISTENing); `--latency-samples` single answers
   one at a time, each its own committed UPDATE over one psql connection; time from the
   UPDATE's return (the commit) to the receiver's `receivedAt` for that event's webhook-id
   (`evt_<event_id>`, looked up by request id); p50 and p99. 20 ms idle between samples.
2. rate, A alone: `--events` events for A written with no worker running, then one
   `surveyd worker` started; A's rate = events / (time from the worker's start to the
   receiver holding them all). Also the rate between the first and the last arrival
   (without the worker's start-up). Before the clock starts the touched tables are
   vacuumed and analysed and a checkpoint is made, so autovacuum and checkpoints land in
   no drain. Checked: the receiver got every event's webhook-id exactly once, and the
   database records each delivery as succeeded. The CPU seconds of the worker, the
   receivers and the PostgreSQL cluster (all its databases) during the drain are printed
   on standard error, and so is one claim of the dispatcher's (`claim_webhook_deliveries`,
   what WebhookDeliveryRepository.claim calls), explained with ANALYZE just before the
   worker starts and rolled back: its time (a claim of 16 should not grow with the backlog).
3. rate, A with B hanging: the same, with `--events` more events for B pending at the
   same time against B's hanging endpoint (B holds its 16 attempts open until the 10 s
   timeout, then claims the next 16). Ratio with / alone; target ≥ 0.90. B's endpoint is
   enabled (PATCH) just before its events are written and disabled after the drain, so
   its retries stay out of the next "alone" drain.
4. (`--shared-host`, on by default) the same again with B's endpoint moved onto A's
   receiver (PATCH url): two companies' endpoints on one host and port, as many customers
   of one integration platform would be. Capped at `--shared-host-seconds` (the rate is
   then what arrived in that time).

Steps 2 and 3 alternate for `--rounds` rounds: every round's rate goes in the table, the
targets are judged on the medians (their ratio for isolation). Exit status 0 whatever the
timings (they are timings on a shared machine); every target is printed with PASS or
MISS. Prints a Markdown table for docs/BENCHMARKS.md. Uses its own database and API port,
so it cannot disturb another bench; the receivers take ephemeral ports.
"""
import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (  # noqa: E402
    ROOT, Client, Session, bash, migrate_and_create_company, percentile, private_database_url, psql, release_binaries,
    service_environment, wait_for)
from requests import cpu_seconds, postgres_cpu_seconds  # noqa: E402  (bench/requests.py: /proc CPU accounting)

API_PORT = 18085
DATABASE = "surveyd_bench_webhooks"
API = "/survey/1.0.0"
BATCH = 1000  # answers per transaction when making events
POLL = 0.02  # seconds between looks at the receiver during a drain
DRAIN_LIMIT = 600  # seconds: a drain that takes longer is reported as not finished

# --- The dispatcher's claim (WebhookDeliveryRepository.claim calls this function), with
# WebhookDispatcher's defaults: 100 per claim, 16 per endpoint, 64 per company, a 60 s lease.
CLAIM = "SELECT * FROM claim_webhook_deliveries(100, 16, 64, 1, 60)"


def explain_claim(url):
    """EXPLAIN (ANALYZE, BUFFERS) of the claim as the worker's role, rolled back: it runs,
    but leases nothing that lasts. Returns (plan, execution ms, the most rows one scan of
    webhook_deliveries in it returned, all its loops together)."""
    plan = psql(url, "BEGIN; SET LOCAL ROLE survey_worker; SET LOCAL jit = off; "
                     f"EXPLAIN (ANALYZE, BUFFERS) {CLAIM.strip()}; ROLLBACK;")
    match = re.search(r"Execution Time: ([0-9.]+) ms", plan)
    read = [int(rows) * int(loops) for rows, loops in re.findall(
        r"(?:Scan|Scan using \w+) on webhook_deliveries \w+ .*?\(actual time=[0-9.]+\.\.[0-9.]+ rows=(\d+) loops=(\d+)\)", plan)]
    return plan, float(match.group(1)) if match else float("nan"), max(read, default=0)


def receiver_python():
    """A Python with `standardwebhooks` (the receiver imports it): the project's virtualenv
    (scripts/test makes it), else WEBHOOK_RECEIVER_PYTHON, else this one."""
    for candidate in (os.path.join(ROOT, ".venv", "bin", "python"), os.environ.get("WEBHOOK_RECEIVER_PYTHON"), sys.executable):
        if candidate and os.path.exists(candidate) and subprocess.run(
                [candidate, "-c", "import standardwebhooks"], capture_output=True).returncode == 0:
            return candidate
    raise SystemExit("no Python with standardwebhooks: run scripts/test once (it makes .venv), or "
                     f"pip install {os.path.join(ROOT, 'standardwebhooks-1.3.0-py3-none-any.whl')}")


class Receiver:
    """scripts/webhook_receiver.py --quiet in a process of its own."""

    def __init__(self, python):
        self.process = subprocess.Popen([python, os.path.join(ROOT, "scripts", "webhook_receiver.py"), "--quiet"],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.port = int(self.process.stdout.readline())
        self.client = Client(self.port)

    def count(self, name):
        _, counts = self.client.request("GET", "/_count")
        return counts.get(name, 0)

    def log(self, name):
        status, entries = self.client.request("GET", f"/_log/{name}")
        assert status == 200, status
        return entries

    def configure(self, name, behaviour):
        status, _ = self.client.request("POST", f"/_configure/{name}", {"behaviour": behaviour})
        assert status == 200, status


class Company:
    """A company of the bench: its tokens, survey, endpoint, and the requests made for it."""

    def __init__(self, bench, name):
        self.bench = bench
        self.name = name
        self.token, self.id = migrate_and_create_company(bench.surveyd, bench.env, name)
        output = subprocess.run([bench.surveyd, "token", "create", "--company", str(self.id), "--scope", "admin"],
                                env=bench.env, check=True, capture_output=True, text=True).stdout
        self.admin_token = output.split()[-1]
        self.endpoint = None

    def create_survey(self):
        status, survey = Client(API_PORT, self.token).request("POST", f"{API}/surveys", {
            "name": "bench", "interactionType": "general",
            "questions": [{"body": "How likely are you to recommend us to a friend, 0-10?", "language": "en-GB"}],
        })
        assert status == 201, (status, survey)
        self.survey = survey["id"]
        self.question = int(psql(self.bench.url, f"SELECT question_id FROM questions WHERE company_id = {self.id} "
                                                  f"AND survey_id = {self.survey}"))

    def register(self, url):
        status, endpoint = Client(API_PORT, self.admin_token).request(
            "POST", f"{API}/webhooks", {"url": url, "events": ["response.received"], "description": "bench"})
        assert status == 201, (status, endpoint)
        assert endpoint["secret"].startswith("whsec_"), endpoint
        self.endpoint = endpoint["id"]

    def patch(self, change):
        status, endpoint = Client(API_PORT, self.admin_token).request("PATCH", f"{API}/webhooks/{self.endpoint}", change)
        assert status == 200, (status, endpoint)
        return endpoint

    def sent_requests(self, count):
        """Inserts `count` survey requests as sent and unanswered; returns their (first, last) ids."""
        low, high, inserted = psql(self.bench.url, f"""
            WITH made AS (
                INSERT INTO survey_requests
                       (company_id, survey_id, question_id, channel, destination_hash, language, segments, status,
                        sms_segments, sent_at, respond_by)
                SELECT {self.id}, {self.survey}, {self.question}, 'SMS', sha256(('{self.name}:' || i || ':' || clock_timestamp())::bytea),
                       'en-GB', ARRAY['bench'], 'sent', 1, now(), now() + interval '72 hours'
                  FROM generate_series(1, {count}) AS i
                RETURNING request_id)
            SELECT min(request_id), max(request_id), count(*) FROM made""").split("|")
        assert int(inserted) == count and int(high) - int(low) + 1 == count, (low, high, inserted)  # contiguous
        return int(low), int(high)

    def answer(self, low, high):
        """Answers requests low..high, BATCH per transaction: the trigger writes one event
        and one delivery each. Returns the events' webhook-ids."""
        for first in range(low, high + 1, BATCH):
            last = min(high, first + BATCH - 1)
            psql(self.bench.url, f"UPDATE survey_requests SET score = 9, responded_at = now() "
                                 f"WHERE company_id = {self.id} AND request_id BETWEEN {first} AND {last} AND score IS NULL")
        return self.webhook_ids(low, high)

    def webhook_ids(self, low, high):
        rows = psql(self.bench.url, f"SELECT request_id, event_id FROM webhook_events WHERE company_id = {self.id} "
                                    f"AND request_id BETWEEN {low} AND {high} AND type = 'response.received'")
        return {int(r): f"evt_{e}" for r, e in (line.split("|") for line in rows.splitlines())}

    def events(self, count):
        """`count` response.received events (and deliveries), pending; their webhook-ids and
        the range of their requests' ids."""
        started = time.perf_counter()
        low, high = self.sent_requests(count)
        ids = self.answer(low, high)
        assert len(ids) == count, (len(ids), count)
        seconds = time.perf_counter() - started
        print(f"{self.name}: {count:,} events written in {seconds:.1f} s (requests inserted, then answered "
              f"{BATCH} a transaction)", file=sys.stderr)
        return set(ids.values()), (low, high)


class Bench:
    def __init__(self, args):
        self.args = args
        self.processes = []
        self.worker = None
        self.postmaster = None
        self.plan_shown = False

    # --- processes ---

    def start(self, command, env):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    def start_worker(self):
        assert self.worker is None
        self.worker = self.start([self.surveyd, "worker"], self.worker_env)
        return self.worker

    def stop_worker(self):
        """SIGTERM: the attempts under way (a hanging one up to the sender's 10 s) end and
        are recorded before it exits."""
        if self.worker is None:
            return
        self.worker.terminate()
        try:
            self.worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print("worker did not stop in 30 s; killed", file=sys.stderr)
            self.worker.kill()
            self.worker.wait()
        self.processes.remove(self.worker)
        self.worker = None

    def stop_all(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []

    # --- setup ---

    def set_up(self):
        self.surveyd = os.path.join(release_binaries("surveyd"), "surveyd")
        self.url = private_database_url(DATABASE)
        self.env = service_environment(self.url, API_PORT, WEBHOOK_ALLOW_PRIVATE_URLS="1")
        extra = {"SMS_PROVIDER": "accept-all"}
        for name, value in (("WEBHOOK_CONCURRENCY", self.args.concurrency),
                            ("WEBHOOK_ENDPOINT_CONCURRENCY", self.args.endpoint_concurrency),
                            ("WEBHOOK_DATABASE_CONNECTIONS", self.args.database_connections)):
            if value is not None:
                extra[name] = str(value)
        self.worker_env = dict(self.env, **extra)
        self.knobs = " ".join(f"{k}={v}" for k, v in extra.items())
        self.a = Company(self, "bench-a")
        self.b = Company(self, "bench-b")
        self.server_version = psql(self.url, "SHOW server_version").split()[0]
        try:
            data = psql(self.url, "SHOW data_directory")
            with open(os.path.join(data, "postmaster.pid")) as pidfile:
                self.postmaster = int(pidfile.readline())
            cpu_seconds(self.postmaster, children=True)
        except (OSError, ValueError, subprocess.CalledProcessError) as error:
            print(f"note: PostgreSQL CPU not measured ({error})", file=sys.stderr)
            self.postmaster = None

        python = receiver_python()
        self.receiver = Receiver(python)
        self.processes.append(self.receiver.process)
        self.other_receiver = Receiver(python)
        self.processes.append(self.other_receiver.process)
        self.start([self.surveyd, "serve"], self.env)
        wait_for(API_PORT, f"{API}/surveys")
        for company in (self.a, self.b):
            company.create_survey()
        self.a.register(f"http://127.0.0.1:{self.receiver.port}/a")
        self.b.register(f"http://127.0.0.1:{self.other_receiver.port}/b")
        self.other_receiver.configure("b", "hang")
        self.receiver.configure("b", "hang")  # for the shared-host step
        print(f"receivers on {self.receiver.port} (A) and {self.other_receiver.port} (B, hanging)", file=sys.stderr)

    def settle(self):
        """What autovacuum would do after a burst of events, done before the clock starts
        rather than during one drain and not another (the claim's plan uses the statistics;
        a vacuum or a checkpoint landing in one drain moved its rate by half in trials);
        then waits for this database's autovacuum workers to be done."""
        psql(self.url, "VACUUM (ANALYZE) survey_requests, report_rollups, webhook_endpoints, webhook_events, webhook_deliveries, "
                       "webhook_attempts")
        psql(self.url, "CHECKPOINT")
        deadline = time.time() + 60
        while time.time() < deadline and int(psql(
                self.url, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' "
                          "AND datname = current_database()")) > 0:
            time.sleep(0.5)

    def cpu(self):
        """CPU seconds so far of the worker, the receivers and PostgreSQL."""
        def safe(function, *arguments):
            try:
                return function(*arguments)
            except (OSError, ValueError, TypeError):
                return None
        return {
            "worker": safe(cpu_seconds, self.worker.pid) if self.worker else None,
            "receiver A": safe(cpu_seconds, self.receiver.process.pid),
            "receiver B": safe(cpu_seconds, self.other_receiver.process.pid),
            "postgres": safe(postgres_cpu_seconds, self.postmaster),
        }

    # --- 1. latency ---

    def latency(self):
        count = self.args.latency_samples
        low, high = self.a.sent_requests(count)
        self.start_worker()
        time.sleep(2)  # started and idle: LISTENing, nothing pending
        session = Session(self.url)
        base = self.receiver.count("a")
        committed = {}
        commit_ms = []
        missing = 0
        for request in range(low, high + 1):
            before = time.time()
            session.query(f"UPDATE survey_requests SET score = 9, responded_at = now() "
                          f"WHERE company_id = {self.a.id} AND request_id = {request}")
            committed[request] = time.time()
            commit_ms.append((committed[request] - before) * 1000)
            deadline = time.time() + 5
            while self.receiver.count("a") < base + len(committed):
                if time.time() > deadline:
                    missing += 1
                    break
                time.sleep(0.002)
            time.sleep(0.02)  # idle between samples
        session.close()
        time.sleep(0.5)
        ids = self.a.webhook_ids(low, high)
        arrivals = {}
        for entry in self.receiver.log("a")[base:]:
            arrivals.setdefault(entry["id"], entry["receivedAt"])
        latencies = [(arrivals[ids[r]] - t) * 1000 for r, t in committed.items() if r in ids and ids[r] in arrivals]
        self.stop_worker()
        if missing or len(latencies) != count:
            print(f"latency: {count - len(latencies)} of {count} events never arrived", file=sys.stderr)
        result = {
            "samples": len(latencies), "of": count,
            "p50": statistics.median(latencies), "p90": percentile(latencies, 0.90), "p99": percentile(latencies, 0.99),
            "max": max(latencies), "commit_p50": statistics.median(commit_ms),
        }
        print(f"latency: {len(latencies)} samples, p50 {result['p50']:.1f} ms, p90 {result['p90']:.1f} ms, "
              f"p99 {result['p99']:.1f} ms, max {result['max']:.1f} ms (the UPDATE and its commit themselves: p50 "
              f"{result['commit_p50']:.1f} ms, not included)", file=sys.stderr)
        return result

    # --- 2-4. drains ---

    def drain(self, label, hanging=None, limit=DRAIN_LIMIT):
        """A's `--events` events (and, with `hanging`, as many of B's pending against that
        receiver's hanging endpoint) written with no worker running; then one worker. Returns
        A's rates and what was checked."""
        self.stop_worker()
        count = self.args.events
        base = self.receiver.count("a")
        if hanging is not None:
            hanging_base = hanging.count("b")
            self.b.patch({"enabled": True})
            self.b.events(count)
        expected, (low, high) = self.a.events(count)
        self.settle()
        plan, claim_ms, scans = explain_claim(self.url)
        if scans > 1000 or not self.plan_shown:
            print(f"one claim, explained:\n{plan}", file=sys.stderr)
            self.plan_shown = True
        before = self.cpu()
        started = time.time()
        self.start_worker()
        # Polled through the receiver's /_count: the database is left to the worker.
        received = 0
        finished = True
        while received < count:
            time.sleep(POLL)
            received = self.receiver.count("a") - base
            if time.time() - started > limit:
                finished = False
                break
        ended = time.time()
        after = self.cpu()
        seconds = ended - started
        entries = self.receiver.log("a")[base:]
        arrivals = [entry["receivedAt"] for entry in entries]
        ids = [entry["id"] for entry in entries]
        # Recorded: every delivery of these events succeeded in the database (the outcomes are written in batches after the posts).
        which = (f"JOIN webhook_events AS v USING (company_id, event_id) WHERE d.company_id = {self.a.id} "
                 f"AND v.type = 'response.received' AND v.request_id BETWEEN {low} AND {high}")
        these = f"FROM webhook_deliveries AS d {which}"
        their_attempts = f"FROM webhook_attempts AS t JOIN webhook_deliveries AS d USING (company_id, delivery_id) {which}"
        recorded = 0
        deadline = time.time() + (30 if finished else 0)
        while True:
            recorded = int(psql(self.url, f"SELECT count(*) {these} AND d.state = 'succeeded'"))
            if recorded >= count or time.time() > deadline:
                break
            time.sleep(0.1)
        attempts = int(psql(self.url, f"SELECT count(*) {their_attempts}"))
        result = {
            "label": label, "finished": finished, "received": len(entries), "unique": len(set(ids)),
            "expected_all": set(ids) == expected, "recorded": recorded, "attempts": attempts, "seconds": seconds,
            "rate": len(set(ids) & expected) / seconds,
            "steady": (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 and arrivals[-1] > arrivals[0] else 0.0,
            "first_ms": (arrivals[0] - started) * 1000 if arrivals else None,
            "claim_ms": claim_ms, "claim_scans": scans,
        }
        if hanging is not None:
            result["hanging_attempts"] = hanging.count("b") - hanging_base
            result["hanging_pending"] = int(psql(self.url, f"SELECT count(*) FROM webhook_deliveries WHERE company_id = {self.b.id} "
                                                           f"AND state = 'pending'"))
        cpu = ", ".join(f"{name} {after[name] - before[name]:.1f} s" for name in after
                        if after[name] is not None and before[name] is not None)
        if before["worker"] is None and after["worker"] is not None:
            cpu = f"worker {after['worker']:.1f} s, " + cpu
        result["cpu"] = cpu
        duplicates = len(ids) - len(set(ids))
        print(f"{label}: {len(set(ids)):,} of {count:,} events in {seconds:.2f} s = {result['rate']:,.0f}/s from the worker's "
              f"start ({result['steady']:,.0f}/s first to last arrival; first after {result['first_ms'] or 0:.0f} ms)"
              f"{'' if finished else ' — NOT FINISHED'}; {duplicates} duplicate posts; {recorded:,} recorded as succeeded, "
              f"{attempts:,} attempts; CPU during it: {cpu}; one claim before it: {claim_ms:.1f} ms"
              f"{f', one of its scans of webhook_deliveries returning {scans:,} rows' if scans > 1000 else ''}", file=sys.stderr)
        if hanging is not None:
            print(f"    B meanwhile: {result['hanging_attempts']} attempts at its hanging endpoint, "
                  f"{result['hanging_pending']:,} deliveries pending", file=sys.stderr)
            # Out of the way until the next drain that wants it (a disabled endpoint's deliveries are not claimed).
            self.b.patch({"enabled": False})
        if recorded < count:
            errors = psql(self.url, f"SELECT count(*), coalesce(t.error, 'HTTP ' || t.http_status) "
                                    f"{their_attempts} "
                                    f"AND (t.error IS NOT NULL OR t.http_status >= 300) GROUP BY 2")
            print("    A's failed attempts (count|error):\n" + "\n".join("    " + line for line in errors.splitlines()),
                  file=sys.stderr)
        if not finished:
            self.diagnose()
        return result

    def diagnose(self):
        """What the database and the machine were doing (printed when a drain did not finish)."""
        activity = psql(self.url, "SELECT application_name, state, wait_event_type, wait_event, left(query, 60) "
                                  "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        print("pg_stat_activity:\n" + activity, file=sys.stderr)
        print(bash("top -b -n1 | head -15"), file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000, help="events per drain (A's; B's too when hanging)")
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (A alone, A with B hanging); medians reported")
    parser.add_argument("--shared-host", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure B's hanging endpoint on A's receiver (same host and port)")
    parser.add_argument("--shared-host-seconds", type=float, default=60, help="cap of the shared-host drain")
    parser.add_argument("--concurrency", type=int, help="WEBHOOK_CONCURRENCY for the worker (product default if unset)")
    parser.add_argument("--endpoint-concurrency", type=int, help="WEBHOOK_ENDPOINT_CONCURRENCY (product default if unset)")
    parser.add_argument("--database-connections", type=int, help="WEBHOOK_DATABASE_CONNECTIONS (product default if unset)")
    args = parser.parse_args()
    command_line = "python3 bench/webhooks.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    load_before = os.getloadavg()[0]
    bench = Bench(args)
    alone, hanging, shared = [], [], None
    try:
        bench.set_up()
        latency = bench.latency()
        for number in range(1, args.rounds + 1):
            alone.append(bench.drain(f"round {number}, A alone"))
            hanging.append(bench.drain(f"round {number}, A with B hanging (another port)", hanging=bench.other_receiver))
        if args.shared_host:
            bench.stop_worker()
            bench.b.patch({"url": f"http://127.0.0.1:{bench.receiver.port}/b"})
            shared = bench.drain("A with B hanging on the same host and port", hanging=bench.receiver,
                                 limit=args.shared_host_seconds)
    finally:
        bench.stop_all()

    alone_rate = statistics.median(r["rate"] for r in alone)
    hanging_rate = statistics.median(r["rate"] for r in hanging)
    ratio = hanging_rate / alone_rate
    alone_steady = statistics.median(r["steady"] for r in alone)
    hanging_steady = statistics.median(r["steady"] for r in hanging)
    drains = alone + hanging + ([shared] if shared else [])
    checks_ok = all(r["unique"] == r["received"] and r["expected_all"] and r["recorded"] == args.events
                    for r in alone + hanging)

    def mark(ok):
        return "PASS" if ok else "MISS"

    print()
    print(f"{mark(alone_rate >= 2000)} A alone: {alone_rate:,.0f} deliveries/s (target ≥ 2,000/s)")
    print(f"{mark(latency['p50'] <= 100)} idle latency p50 {latency['p50']:.1f} ms (target ≤ 100 ms)")
    print(f"{mark(ratio >= 0.9)} A with B hanging / A alone: {ratio:.2f} (target ≥ 0.90)")
    print(f"{'PASS' if checks_ok else 'FAIL'} every event of A delivered exactly once and recorded as succeeded")

    cpu = bash("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    print()
    print(f"Command: `{command_line}`")
    print()
    print(f"Machine: {os.cpu_count()} cores ({cpu}), Linux {os.uname().release}, PostgreSQL {bench.server_version} with fsync "
          f"and synchronous_commit on; `surveyd serve`, one `surveyd worker` ({bench.knobs}, WEBHOOK_* otherwise the "
          f"defaults), two receivers (`scripts/webhook_receiver.py --quiet`) and the script on the same cores, over loopback. "
          f"Load average (1 min) before the run {load_before:.2f}, after it {os.getloadavg()[0]:.2f}.")
    print()

    def runs(results, key, form):
        return ", ".join(form(r[key]) for r in results) if len(results) > 1 else form(results[0][key])

    def drain_cell(results):
        cell = runs(results, "rate", lambda v: f"{v:,.0f}/s")
        if not all(r["finished"] for r in results):
            cell += " (not finished)"
        return cell

    print("| measure | result | target |")
    print("| --- | --- | --- |")
    print(f"| {args.events:,} events to one endpoint, A alone: deliveries/s from the worker's start | {drain_cell(alone)} "
          f"(first to last arrival: {runs(alone, 'steady', lambda v: f'{v:,.0f}/s')}) | ≥ 2,000/s |")
    print(f"| commit → receiver latency, idle worker, {latency['samples']} samples | p50 {latency['p50']:.1f} ms, "
          f"p99 {latency['p99']:.1f} ms | p50 ≤ 100 ms |")
    print(f"| the same drain with B's {args.events:,} events pending to a hanging endpoint (another port) | "
          f"{drain_cell(hanging)} (first to last: {runs(hanging, 'steady', lambda v: f'{v:,.0f}/s')}) | |")
    print(f"| ratio with B hanging / alone | {ratio:.2f} (first to last: {hanging_steady / alone_steady:.2f}) | ≥ 0.90 |")
    if shared:
        cell = f"{shared['rate']:,.0f}/s"
        if not shared["finished"]:
            cell += f" ({shared['received']:,} of {args.events:,} in {shared['seconds']:.0f} s, stopped there)"
        print(f"| the same with B's hanging endpoint on A's host and port | {cell}; ratio {shared['rate'] / alone_rate:.2f} | |")
    claims = ", ".join(f"{r['claim_ms']:.1f} ms" + (f" (reads {r['claim_scans']:,} deliveries)" if r["claim_scans"] > 1000 else "")
                       for r in drains)
    print(f"| one claim of 16 before each drain (EXPLAIN ANALYZE, rolled back) | {claims} | |")
    posts = sum(r["received"] for r in drains)
    unique = sum(r["unique"] for r in drains)
    print(f"| A's events delivered exactly once, recorded as succeeded | {'yes' if checks_ok else 'NO'} "
          f"({len(drains)} drains: {posts:,} posts, {unique:,} distinct webhook-ids) | all |")

if __name__ == "__main__":
    main()
