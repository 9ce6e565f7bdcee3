#!/usr/bin/env python3
"""Requests benchmark: the whole-period CSV export, its memory, and one request by id.

    python3 bench/requests.py --requests 1000000 [--rounds 3] [--samples 2000]

The targets (issue: the request lifecycle for integrations):

- CSV export of 1,000,000 requests ≥ 100,000 rows/s, and `serve`'s resident memory grows
  by less than 20 MB during it;
- `GET /requests/{id}` p50 ≤ 5 ms under the idle benchmark conditions.

Sets up as bench/sending.py does (release build, a private PostgreSQL cluster with durable
commits, a fresh migrated database, a company without quiet hours, a survey made through
the API), then inserts `--requests` survey requests for that company in bulk with SQL as
the superuser (the API would take far too long): created over the last 365 days in id
order, as a live service writes them; most sent and past their response window, about a
third answered with a score, some delivered, 3 % failed (permanent); reference ids
`crm-N` on 90 %, segments on half. The insert fires the reports' rollup trigger; the
tables are then vacuumed, analysed and checkpointed. `surveyd serve` is started with the
rate limits out of the way and LOG_LEVEL=error, and measured on this machine:

1. CSV export: `GET /requests?format=csv&order=oldest&startDate=…&endDate=…` over a period
   covering every row, read with http.client 1 MiB at a time (bytes and CRLF rows counted,
   the body never kept), from the request to the last byte; rows/s = data rows / seconds.
   The header and the row count (= `--requests`) are checked. Meanwhile a thread samples
   serve's VmRSS (/proc/PID/status) every 50 ms: RSS before (after a warm-up request),
   peak during, growth = peak - before. CPU seconds of serve (/proc/PID/stat) and of the
   PostgreSQL cluster (the postmaster, its live children and the exited ones it reaped)
   during each export. `--rounds` rounds, each printed, and the median;
2. NDJSON export (`format=ndjson`) of the same period once, rows/s;
3. GET one request: `--samples` sequential `GET /requests/{id}` of random existing ids on
   one keep-alive connection, no other load; p50, p90, p99.

The bench cluster may be shared with another benchmark running at the same time: its
PostgreSQL CPU then includes theirs. Exit status 0 whatever the timings (they are timings
on a shared machine); each target is printed with PASS or MISS. Prints a Markdown table
for docs/BENCHMARKS.md. Uses its own database (surveyd_bench_requests) and API port, so it
cannot disturb another bench.
"""
import argparse
import datetime
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sending  # noqa: E402  (its helpers: Client, psql, wait_for, bash, ROOT, HASH_KEY, …)
from benchlib import migrate_and_create_company, percentile, private_database_url, release_binaries, service_environment  # noqa: E402

API_PORT = 18083
DATABASE = "surveyd_bench_requests"
BODY = "How likely are you to recommend us to a friend, 0-10?"
READ_SIZE = 1 << 20
RSS_INTERVAL = 0.05
INSERT_BATCH = 250_000
# RequestWire.fields, the CSV header.
CSV_HEADER = (b"id,surveyId,referenceId,channel,language,segments,status,failureReason,score,category,"
              b"badResponses,createdAt,scheduledFor,sentAt,deliveredAt,respondedAt,respondBy")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MB = 1_000_000  # the target's unit; /proc reports KiB, converted


# --- /proc ---

def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (field 3, the state, is [0])."""
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pid, children=False):
    """utime + stime of `pid` (and of its reaped children: cutime + cstime), in seconds."""
    fields = stat_fields(pid)
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime (fields 16, 17)
    return ticks / CLOCK_TICKS


def postgres_cpu_seconds(postmaster):
    """The cluster's CPU: the postmaster with its reaped children, and its live children."""
    if postmaster is None:
        return None
    total = cpu_seconds(postmaster, children=True)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = stat_fields(entry)
        except (OSError, ValueError):
            continue  # gone meanwhile
        if int(fields[1]) == postmaster:  # ppid (field 4)
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


class RSSSampler(threading.Thread):
    """Samples a process's VmRSS every RSS_INTERVAL until stopped; keeps the peak."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = rss_bytes(pid)
        self.samples = 1
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(RSS_INTERVAL):
            self.sample()

    def sample(self):
        self.peak = max(self.peak, rss_bytes(self.pid))
        self.samples += 1

    def stop(self):
        self.done.set()
        self.join()
        self.sample()
        return self.peak


# --- the bench ---

class Bench:
    def __init__(self, args):
        self.args = args
        self.processes = []
        self.serve = None
        self.postmaster = None

    def build(self):
        self.surveyd = os.path.join(release_binaries("surveyd"), "surveyd")

    def set_up(self):
        self.url = private_database_url(DATABASE)
        self.env = service_environment(self.url, API_PORT)
        self.token, self.company = migrate_and_create_company(self.surveyd, self.env)
        self.server_version = sending.psql(self.url, "SHOW server_version").split()[0]
        try:
            data = sending.psql(self.url, "SHOW data_directory")
            with open(os.path.join(data, "postmaster.pid")) as pidfile:
                self.postmaster = int(pidfile.readline())
            cpu_seconds(self.postmaster, children=True)
        except (OSError, ValueError, subprocess.CalledProcessError) as error:
            print(f"note: PostgreSQL CPU not measured ({error})", file=sys.stderr)
            self.postmaster = None

        self.serve = subprocess.Popen([self.surveyd, "serve"], env=self.env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        self.processes.append(self.serve)
        sending.wait_for(API_PORT, "/survey/1.0.0/surveys")
        status, survey = sending.Client(API_PORT, self.token).request("POST", "/survey/1.0.0/surveys", {
            "name": "bench", "interactionType": "general", "questions": [{"body": BODY, "language": "en-GB"}],
        })
        assert status == 201, survey
        self.survey = survey["id"]
        self.question = int(sending.psql(self.url, f"SELECT question_id FROM questions WHERE survey_id = {self.survey}"))

    def insert_requests(self):
        """`--requests` rows for the company, in batches (each one statement, one trigger run)."""
        total = self.args.requests
        started = time.perf_counter()
        for first in range(1, total + 1, INSERT_BATCH):
            last = min(total, first + INSERT_BATCH - 1)
            # k = i % 100 picks the outcome: 0-2 failed (permanent), 3-34 answered (delivered
            # with a score), 35-39 delivered without one, the rest sent. Created over the last
            # 365 days in id order; sent 5 s later; 72 hours to answer.
            sending.psql(self.url, f"""
                INSERT INTO survey_requests
                       (company_id, survey_id, question_id, channel, destination_hash, reference_id, language, segments,
                        created_at, status, failure, failed_at, sms_segments, sent_at, delivered_at, respond_by, score,
                        responded_at, bad_replies)
                SELECT {self.company}, {self.survey}, {self.question}, 'SMS', sha256(i::text::bytea),
                       CASE WHEN i % 10 <> 0 THEN 'crm-' || i END,
                       CASE WHEN i % 5 = 0 THEN 'nl-BE' WHEN i % 5 = 1 THEN 'en-GB' END,
                       CASE i % 4 WHEN 0 THEN ARRAY['gold', 'north'] WHEN 1 THEN ARRAY['silver'] ELSE '{{}}'::text[] END,
                       t.created_at,
                       CASE WHEN k < 3 THEN 'failed' WHEN k < 40 THEN 'delivered' ELSE 'sent' END,
                       CASE WHEN k < 3 THEN 'permanent' END,
                       CASE WHEN k < 3 THEN t.created_at + interval '2 seconds' END,
                       CASE WHEN k >= 3 THEN 1 END,
                       CASE WHEN k >= 3 THEN t.created_at + interval '5 seconds' END,
                       CASE WHEN k >= 3 AND k < 40 THEN t.created_at + interval '9 seconds' END,
                       CASE WHEN k >= 3 THEN t.created_at + interval '5 seconds' + interval '72 hours' END,
                       CASE WHEN k >= 3 AND k < 35 THEN (i * 7) % 11 END,
                       CASE WHEN k >= 3 AND k < 35 THEN t.created_at + interval '20 minutes' END,
                       CASE WHEN k = 34 THEN 1 ELSE 0 END
                  FROM generate_series({first}, {last}) AS i,
                       LATERAL (SELECT i % 100 AS k,
                                       now() - interval '365 days' - interval '1 minute'
                                             + interval '365 days' * (i::double precision / {total}) AS created_at) AS t""")
            print(f"inserted {last:,} / {total:,} requests ({time.perf_counter() - started:.1f} s)", file=sys.stderr)
        sending.psql(self.url, "VACUUM ANALYZE survey_requests")
        sending.psql(self.url, "VACUUM ANALYZE report_rollups")
        sending.psql(self.url, "CHECKPOINT")
        count, low, high = sending.psql(
            self.url, f"SELECT count(*), min(request_id), max(request_id) FROM survey_requests WHERE company_id = {self.company}"
        ).split("|")
        assert int(count) == total, count
        self.ids = (int(low), int(high))
        assert int(high) - int(low) + 1 == total, (low, high)  # contiguous: any id in the range exists
        print(f"setup done in {time.perf_counter() - started:.1f} s; ids {low}..{high}", file=sys.stderr)

    def settle(self):
        """Waits for autovacuum to finish, so it does not land on a measurement."""
        deadline = time.time() + 120
        while time.time() < deadline and int(sending.psql(
                self.url, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")) > 0:
            time.sleep(0.5)

    def stop(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()

    # --- the export ---

    def export_path(self, format, days=400):
        today = datetime.datetime.now(datetime.timezone.utc).date()
        # A plain endDate includes that whole day (UTC): every row, all created before now.
        start = today - datetime.timedelta(days=days)
        return f"/survey/1.0.0/requests?format={format}&order=oldest&startDate={start.isoformat()}&endDate={today.isoformat()}"

    def stream(self, path, headers=None, newline=b"\r\n"):
        """GETs `path` on a fresh connection and reads the body READ_SIZE at a time. Returns
        (lines, bytes, first line, seconds to first byte, seconds to last byte, content type)."""
        connection = http.client.HTTPConnection("127.0.0.1", API_PORT, timeout=300)
        lines = size = 0
        first_line = b""
        carry = b""  # the last byte of the previous read, for a CRLF split between two reads
        started = time.perf_counter()
        connection.request("GET", path, headers={"Authorization": "Bearer " + self.token, **(headers or {})})
        response = connection.getresponse()
        first_byte = None
        if response.status != 200:
            raise SystemExit(f"export {path}: {response.status} {response.read()[:2000]!r}")
        content_type = response.getheader("Content-Type")
        while True:
            data = response.read(READ_SIZE)
            if not data:
                break
            if first_byte is None:
                first_byte = time.perf_counter() - started
            if len(first_line) < 4096 and not first_line.endswith(newline):
                first_line += data[:4096]
            lines += data.count(newline)
            if len(newline) == 2 and carry == newline[:1] and data[:1] == newline[1:]:
                lines += 1
            carry = data[-1:]
            size += len(data)
        seconds = time.perf_counter() - started
        connection.close()
        first_line = first_line.split(newline, 1)[0]
        return lines, size, first_line, first_byte or seconds, seconds, content_type

    def warm_up(self):
        """A short export through Accept (the last 7 days) and a few GETs."""
        lines, _, header, _, _, content_type = self.stream(self.export_path("csv", days=7).replace("format=csv&", ""),
                                                           headers={"Accept": "text/csv"})
        assert content_type and content_type.startswith("text/csv"), content_type
        assert header == CSV_HEADER, header
        assert lines > 1, lines
        client = sending.Client(API_PORT, self.token)
        for _ in range(20):
            status, body = client.request("GET", f"/survey/1.0.0/requests/{random.randint(*self.ids)}")
            assert status == 200, body

    def export_csv(self, number):
        self.settle()
        before = rss_bytes(self.serve.pid)
        sampler = RSSSampler(self.serve.pid)
        serve_cpu, pg_cpu, client_cpu = cpu_seconds(self.serve.pid), postgres_cpu_seconds(self.postmaster), time.process_time()
        sampler.start()
        lines, size, header, first_byte, seconds, _ = self.stream(self.export_path("csv"))
        peak = sampler.stop()
        serve_cpu = cpu_seconds(self.serve.pid) - serve_cpu
        pg_cpu = None if pg_cpu is None else postgres_cpu_seconds(self.postmaster) - pg_cpu
        client_cpu = time.process_time() - client_cpu
        after = rss_bytes(self.serve.pid)
        rows = lines - 1
        assert header == CSV_HEADER, header
        assert rows == self.args.requests, f"CSV export: {rows:,} data rows, expected {self.args.requests:,}"
        result = dict(rows=rows, bytes=size, seconds=seconds, rate=rows / seconds, first_byte=first_byte, before=before,
                      peak=peak, after=after, growth=peak - before, serve_cpu=serve_cpu, pg_cpu=pg_cpu, client_cpu=client_cpu,
                      samples=sampler.samples)
        pg = "n/a" if pg_cpu is None else f"{pg_cpu:.2f} s"
        print(f"CSV round {number}: {rows:,} rows, {size / MB:,.1f} MB in {seconds:.2f} s = {rows / seconds:,.0f} rows/s "
              f"({size / MB / seconds:,.1f} MB/s, first byte {first_byte * 1000:.0f} ms); serve RSS before {before / MB:.1f} MB, "
              f"peak {peak / MB:.1f} MB ({sampler.samples} samples), growth {(peak - before) / MB:+.1f} MB, after {after / MB:.1f} MB; "
              f"CPU serve {serve_cpu:.2f} s, PostgreSQL {pg}, this client {client_cpu:.2f} s", file=sys.stderr)
        return result

    def export_ndjson(self):
        self.settle()
        before = rss_bytes(self.serve.pid)
        sampler = RSSSampler(self.serve.pid)
        sampler.start()
        lines, size, first, _, seconds, content_type = self.stream(self.export_path("ndjson"), newline=b"\n")
        peak = sampler.stop()
        assert content_type and content_type.startswith("application/x-ndjson"), content_type
        assert json.loads(first)["id"] == self.ids[0], first[:200]
        assert lines == self.args.requests, f"NDJSON export: {lines:,} lines, expected {self.args.requests:,}"
        print(f"NDJSON: {lines:,} rows, {size / MB:,.1f} MB in {seconds:.2f} s = {lines / seconds:,.0f} rows/s; "
              f"serve RSS growth {(peak - before) / MB:+.1f} MB", file=sys.stderr)
        return dict(rate=lines / seconds, seconds=seconds, bytes=size, growth=peak - before)

    # --- one request ---

    def get_latency(self):
        self.settle()
        connection = http.client.HTTPConnection("127.0.0.1", API_PORT, timeout=60)
        headers = {"Authorization": "Bearer " + self.token}
        times = []
        for _ in range(self.args.samples):
            id = random.randint(*self.ids)
            started = time.perf_counter()
            connection.request("GET", f"/survey/1.0.0/requests/{id}", headers=headers)
            response = connection.getresponse()
            body = response.read()
            times.append((time.perf_counter() - started) * 1000)
            assert response.status == 200, (response.status, body[:500])
            assert json.loads(body)["id"] == id, body[:500]
        connection.close()
        result = dict(p50=statistics.median(times), p90=percentile(times, 0.90), p99=percentile(times, 0.99), max=max(times))
        print(f"GET /requests/{{id}}: {len(times)} samples, p50 {result['p50']:.2f} ms, p90 {result['p90']:.2f} ms, "
              f"p99 {result['p99']:.2f} ms, max {result['max']:.2f} ms", file=sys.stderr)
        return result


def verdict(ok):
    return "PASS" if ok else "MISS"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000_000, help="survey requests inserted and exported")
    parser.add_argument("--rounds", type=int, default=3, help="CSV exports measured")
    parser.add_argument("--samples", type=int, default=2000, help="GET /requests/{id} calls timed")
    args = parser.parse_args()
    if args.requests < 1 or args.rounds < 1 or args.samples < 1:
        parser.error("--requests, --rounds and --samples must be positive")

    bench = Bench(args)
    bench.build()
    try:
        bench.set_up()
        bench.insert_requests()
        bench.warm_up()
        csv_rounds = [bench.export_csv(number) for number in range(1, args.rounds + 1)]
        ndjson = bench.export_ndjson()
        get = bench.get_latency()
        final_rss = rss_bytes(bench.serve.pid)
    except subprocess.CalledProcessError as error:
        # psql and surveyd failures: what they said, which the traceback leaves out.
        print(error.stderr, file=sys.stderr)
        raise
    finally:
        bench.stop()

    rate = statistics.median(r["rate"] for r in csv_rounds)
    worst = max(csv_rounds, key=lambda r: r["growth"])
    growth = worst["growth"]
    rate_ok, growth_ok, get_ok = rate >= 100_000, growth < 20 * MB, get["p50"] <= 5
    each = ", ".join(f"{r['rate']:,.0f}" for r in csv_rounds)
    median_round = sorted(csv_rounds, key=lambda r: r["rate"])[len(csv_rounds) // 2]
    pg = "n/a" if median_round["pg_cpu"] is None else f"{median_round['pg_cpu']:.1f} s"

    print()
    print(f"{verdict(rate_ok)} CSV export {rate:,.0f} rows/s (median of {each}; target ≥ 100,000 rows/s)")
    print(f"{verdict(growth_ok)} serve RSS growth during the CSV export {growth / MB:.1f} MB (max over rounds; target < 20 MB)")
    print(f"{verdict(get_ok)} GET /requests/{{id}} p50 {get['p50']:.2f} ms (target ≤ 5 ms)")
    print("(timings on a shared machine: not in the exit status)")
    if args.requests != 1_000_000:
        print(f"note: {args.requests:,} requests, not the issue's 1,000,000")

    cpu = sending.bash("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    print()
    print(f"Machine: {os.cpu_count()} cores ({cpu}), PostgreSQL {bench.server_version} with fsync and synchronous_commit on, "
          f"all on loopback; {args.requests:,} requests over 365 days, {args.rounds} CSV round(s), {args.samples:,} GETs.")
    print()
    print("| measure | result | target |")
    print("| --- | --- | --- |")
    print(f"| CSV export, {args.requests:,} requests (`format=csv`, whole period) | {rate:,.0f} rows/s (rounds: {each}); "
          f"{median_round['bytes'] / MB:,.0f} MB in {median_round['seconds']:.1f} s, first byte {median_round['first_byte'] * 1000:.0f} ms "
          f"| ≥ 100,000 rows/s {verdict(rate_ok)} |")
    print(f"| serve resident memory during the CSV export | +{growth / MB:.1f} MB at most ({worst['before'] / MB:.0f} → "
          f"{worst['peak'] / MB:.0f} MB; {final_rss / MB:.0f} MB at the end) | < 20 MB {verdict(growth_ok)} |")
    print(f"| CPU during one CSV export (median round) | serve {median_round['serve_cpu']:.1f} s, PostgreSQL {pg}, "
          f"client {median_round['client_cpu']:.1f} s | |")
    print(f"| NDJSON export, same period | {ndjson['rate']:,.0f} rows/s ({ndjson['bytes'] / MB:,.0f} MB in {ndjson['seconds']:.1f} s; "
          f"RSS {ndjson['growth'] / MB:+.1f} MB) | |")
    print(f"| `GET /requests/{{id}}`, idle, one keep-alive client | p50 {get['p50']:.2f} ms, p90 {get['p90']:.2f} ms, "
          f"p99 {get['p99']:.2f} ms | p50 ≤ 5 ms {verdict(get_ok)} |")


if __name__ == "__main__":
    main()
