#!/usr/bin/env python3
"""Report benchmark: the report API against the straightforward aggregate SQL, on years of history.

    bench/reports.py [--rows 10000000] [--other-rows 5000000] [--samples 30] [--reuse] [--jit off]

Builds surveyd in release mode, starts the private PostgreSQL cluster `bench` with durable
commits (fsync and synchronous_commit on), recreates the database surveyd_reports_bench,
migrates it, creates one company with 20 surveys and 4 others with 5 surveys each (through
the API), then loads, as the superuser with COPY in chunks of 250,000 rows, `--rows`
survey requests for the main company and `--other-rows` for the others, interleaved in
created_at order over the two years ending 2026-11-01T00:00:00Z, with the rollup triggers
enabled (they are part of what the load costs). Then it compacts the rollups, runs
VACUUM ANALYZE, starts `surveyd serve` and times, variant by variant, the API call
(wall time over a keep-alive connection) and the reference SQL (a persistent psql
session, `\\timing`), alternately, after 3 warm-up calls each. Every API answer's counts
must equal the reference's exactly; a difference is printed and the script exits 1.

With --reuse, a database already loaded with the same --rows and --other-rows (a marker
table records them) is kept: no recreation, no load, no compaction. With --jit off, the
database's sessions run with jit = off (PostgreSQL's JIT compiles any plan whose estimated
cost passes jit_above_cost, which can cost more than the query itself).

The data is generated from random.Random(42): the same arguments give the same rows.
Prints a Markdown table for docs/BENCHMARKS.md.
"""
import argparse
import datetime
import http.client
import json
import os
import queue
import random
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

import benchlib
from benchlib import ROOT, cpu_model, percentile, private_database_url, psql, stop_all, wait_for
API_PORT = 18081
DATABASE = "surveyd_reports_bench"
HASH_KEY = "ab" * 32
AUTH_TOKEN = "bench-auth-token"
ACCOUNT = "AC" + "be" * 16
MAIN_COMPANY = "reports-bench-main"
OTHER_COMPANIES = [f"reports-bench-other-{n}" for n in range(1, 5)]
MAIN_SURVEYS = 20
OTHER_SURVEYS = 5
CHUNK_ROWS = 250_000
WARMUP = 3

# The history: two years ending here, uniformly spread.
HISTORY_END = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)
HISTORY_START = datetime.datetime(2024, 11, 1, tzinfo=datetime.timezone.utc)

# The periods the variants report on.
YEAR_START = "2025-03-14T10:23:00+01:00"
YEAR_END = "2026-03-14T10:23:00+01:00"
ALL_START = "2024-11-01T00:00:00+00:00"
ALL_END = "2026-11-01T00:00:00+00:00"
TREND_ZONE = "Europe/Brussels"

SEGMENT_POOL = [
    "region-north", "region-south", "region-east", "region-west",
    "tier-gold", "tier-silver", "tier-bronze",
    "store-7", "store-12", "store-33", "store-41",
    "channel-web", "channel-shop", "promo-spring", "vip",
]
SEGMENT_SETS = 50
INTERACTION_TYPES = ["purchase", "delivery", "support-call", "store-visit", "onboarding"]
COPY_COLUMNS = ("company_id, survey_id, question_id, channel, destination_hash, language, segments, "
                "created_at, sent_at, status, failure, score, responded_at, bad_replies")
COUNTERS = ["totalRequests", "failed", "goodResponses", "badResponses", "totalResponses", "promoters", "passives", "detractors"]


def database_url(recreate):
    return private_database_url(DATABASE, recreate)


class Client(benchlib.Client):
    """A keep-alive connection that waits long: a straightforward aggregate can take seconds."""

    def __init__(self, port, token=None):
        super().__init__(port, token, timeout=600)


# ---------------------------------------------------------------------------
# The data
# ---------------------------------------------------------------------------

def segment_sets():
    """50 distinct sorted sets of 1 to 3 segments, the empty set first; from their own seed."""
    rng = random.Random(42)
    sets = [()]
    while len(sets) < SEGMENT_SETS:
        candidate = tuple(sorted(rng.sample(SEGMENT_POOL, rng.randint(1, 3))))
        if candidate not in sets:
            sets.append(candidate)
    return sets


def filter_segments(sets):
    """The ALL pair (the two segments that occur together in most sets) and an ANY pair."""
    together = {}
    for s in sets:
        for a in s:
            for b in s:
                if a < b:
                    together[(a, b)] = together.get((a, b), 0) + 1
    all_pair = max(sorted(together), key=lambda pair: together[pair])
    any_pair = ("region-north", "tier-gold")
    return list(all_pair), list(any_pair), together[all_pair]


# Scores of the requests that have one: 50 % promoters, 25 % passives, 25 % detractors (NPS +25).
SCORE_TABLE = [10] * 30 + [9] * 20 + [8] * 13 + [7] * 12 + [6] * 8 + [5] * 6 + [4] * 3 + [3] * 3 + [2] * 2 + [1] * 1 + [0] * 2


def generate_chunks(main, others, rows, other_rows, chunk_rows=CHUNK_ROWS):
    """Yields (bytes of COPY text, row count) for all rows in created_at order.

    main: (company_id, [(survey_id, question_id)]); others: the same for each other company.
    Row i of the merged stream belongs to the main company when the main company's share
    (rows / total) steps up at i, so exactly `rows` rows are its, evenly interleaved.
    """
    rng = random.Random(42)
    rand = rng.random
    bits = rng.getrandbits
    total = rows + other_rows
    sets = ["{" + ",".join(s) + "}" for s in segment_sets()]
    main_prefixes = [f"{main[0]}\t{s}\t{q}\tSMS\t\\\\x" for s, q in main[1]]
    other_prefixes = [[f"{company}\t{s}\t{q}\tSMS\t\\\\x" for s, q in surveys] for company, surveys in others]
    start = HISTORY_START.timestamp()
    span = HISTORY_END.timestamp() - start
    day_cache = {}
    # What follows created_at: sent_at, status, failure, score, responded_at, bad_replies.
    failed_tail = "\t\\N\tfailed\tpermanent\t\\N\t\\N\t0\n"
    no_reply_tail = "\tdelivered\t\\N\t\\N\t\\N\t0\n"
    bad_tails = ["\tdelivered\t\\N\t\\N\t\\N\t1\n", "\tdelivered\t\\N\t\\N\t\\N\t2\n"]
    n_main = len(main_prefixes)
    n_other = len(other_prefixes)
    n_sets = len(sets)
    i = 0
    other_index = 0
    while i < total:
        lines = []
        append = lines.append
        stop = min(total, i + chunk_rows)
        for i in range(i, stop):
            if (i + 1) * rows // total > i * rows // total:
                prefix = main_prefixes[int(rand() * n_main)]
            else:
                company = other_prefixes[other_index % n_other]
                other_index += 1
                prefix = company[int(rand() * len(company))]
            t = start + span * (i + rand()) / total
            seconds = int(t)
            micro = int((t - seconds) * 1_000_000)
            day, sod = divmod(seconds, 86400)
            day_text = day_cache.get(day)
            if day_text is None:
                day_text = day_cache[day] = datetime.datetime.fromtimestamp(day * 86400, datetime.timezone.utc).strftime("%Y-%m-%d ")
            hour, rest = divmod(sod, 3600)
            minute, second = divmod(rest, 60)
            ts = "%s%02d:%02d:%02d.%06d+00" % (day_text, hour, minute, second, micro)
            u = rand()
            language = "en" if u < 0.70 else ("fr" if u < 0.95 else "nl")
            head = "%s%064x\t%s\t%s\t%s" % (prefix, bits(256), language, sets[int(rand() * n_sets)], ts)
            u = rand()
            if u < 0.03:
                append(head + failed_tail)
            elif u < 0.03 + 0.97 * 0.40:
                append("%s\t%s\tdelivered\t\\N\t%d\t%s\t0\n" % (head, ts, SCORE_TABLE[int(rand() * 100)], ts))
            elif u < 0.03 + 0.97 * 0.43:
                append(head + "\t" + ts + bad_tails[int(rand() * 2)])
            else:
                append(head + "\t" + ts + no_reply_tail)
        i = stop
        yield "".join(lines).encode(), len(lines)


def format_duration(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


def load(url, main, others, rows, other_rows):
    """COPYs the rows chunk by chunk; generation runs ahead of the server by one chunk.

    Returns (seconds, seconds spent generating)."""
    total = rows + other_rows
    chunks = queue.Queue(maxsize=2)
    failure = []
    loaded = [0]
    started = time.perf_counter()
    copy = f"COPY survey_requests ({COPY_COLUMNS}) FROM STDIN"

    def progress():
        done = loaded[0]
        elapsed = time.perf_counter() - started
        rate = done / elapsed if elapsed > 0 else 0
        eta = (total - done) / rate if rate > 0 else 0
        width = 30
        filled = int(width * done / total) if total else width
        sys.stderr.write(f"\rloading [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} rows  "
                         f"{rate:,.0f} rows/s  elapsed {format_duration(elapsed)}  ETA {format_duration(eta)}   ")
        sys.stderr.flush()

    def writer():
        while True:
            item = chunks.get()
            if item is None:
                return
            if failure:
                continue
            data, count = item
            process = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", copy],
                                       stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                _, error = process.communicate(data)
            except BaseException as exception:  # noqa: BLE001 - reported by the main thread
                process.kill()
                failure.append(str(exception))
                continue
            if process.returncode != 0:
                failure.append(error.decode(errors="replace"))
                continue
            # As the worker's compactor does every few seconds in production: fold the
            # rollup rows this chunk appended, so the table's free space is reused.
            psql(url, "SELECT compact_report_rollups(100000)")
            loaded[0] += count
            progress()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    generating = 0.0
    progress()
    try:
        generator = generate_chunks(main, others, rows, other_rows)
        while True:
            t = time.perf_counter()
            item = next(generator, None)
            generating += time.perf_counter() - t
            if item is None or failure:
                break
            chunks.put(item)
    finally:
        chunks.put(None)
        thread.join()
    sys.stderr.write("\n")
    if failure:
        raise SystemExit("COPY failed: " + failure[0])
    return time.perf_counter() - started, generating


# ---------------------------------------------------------------------------
# The reference
# ---------------------------------------------------------------------------

class Reference:
    """A persistent psql session, \\timing on: runs one statement at a time and returns its
    rows and psql's own time for it (no connection set-up in it)."""

    SENTINEL = "__reports_bench_done__"

    def __init__(self, url):
        self.process = subprocess.Popen(
            ["psql", "-X", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=0", url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.run("\\timing on", timed=False)

    def run(self, sql, timed=True):
        self.process.stdin.write(sql.strip().rstrip(";") + (";\n" if timed else "\n") + f"\\echo {self.SENTINEL}\n")
        self.process.stdin.flush()
        rows, milliseconds, errors = [], None, []
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise SystemExit("the reference psql session ended: " + " ".join(errors))
            line = line.rstrip("\n")
            if line == self.SENTINEL:
                break
            match = re.match(r"^Time: ([0-9.]+) ms", line)
            if match:
                milliseconds = float(match.group(1))
            elif line.startswith(("ERROR:", "FATAL:", "psql:")) or errors:
                errors.append(line)
            elif line and line != "Timing is on.":
                rows.append(line.split("|"))
        if errors:
            raise SystemExit("reference SQL failed: " + "\n".join(errors) + "\n" + sql)
        if timed and milliseconds is None:
            raise SystemExit("no timing for: " + sql)
        return rows, milliseconds

    def close(self):
        try:
            self.process.stdin.close()
            self.process.wait(timeout=10)
        except Exception:  # noqa: BLE001
            self.process.kill()


COUNT_COLUMNS = """count(*),
           count(*) FILTER (WHERE status = 'failed'),
           count(*) FILTER (WHERE score IS NOT NULL),
           count(*) FILTER (WHERE score IS NULL AND bad_replies > 0),
           count(*) FILTER (WHERE score IS NOT NULL OR bad_replies > 0),
           count(*) FILTER (WHERE score >= 9),
           count(*) FILTER (WHERE score BETWEEN 7 AND 8),
           count(*) FILTER (WHERE score <= 6)"""


def sql_text_array(values):
    return "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]::text[]"


def reference_sql(company, start, end, survey=None, segments=None, mode="ALL", trend_zone=None):
    where = f"company_id = {company} AND created_at >= '{start}'::timestamptz AND created_at < '{end}'::timestamptz"
    if survey is not None:
        where += f" AND survey_id = {survey}"
    if segments:
        where += f" AND segments {'@>' if mode == 'ALL' else '&&'} {sql_text_array(segments)}"
    if trend_zone:
        month = f"date_trunc('month', created_at AT TIME ZONE '{trend_zone}')"
        return (f"SELECT to_char({month}, 'YYYY-MM'), {COUNT_COLUMNS}\n  FROM survey_requests\n WHERE {where}\n"
                f" GROUP BY {month}\n ORDER BY {month}")
    return f"SELECT {COUNT_COLUMNS}\n  FROM survey_requests\n WHERE {where}"


def counts_from_row(values):
    return dict(zip(COUNTERS, (int(v) for v in values)))


def counts_from_api(part):
    statistics_ = part.get("responseStatistics") or {}
    nps = part.get("nps") or {}
    result = {}
    for name in COUNTERS:
        value = statistics_.get(name, nps.get(name))
        result[name] = value
    return result


def compare(api_body, reference_rows, trend):
    """Differences between an API answer and the reference's rows, as text lines."""
    differences = []
    if not isinstance(api_body, dict):
        return ["API answer is not a JSON object"]
    if not trend:
        expected = counts_from_row(reference_rows[0]) if reference_rows else dict.fromkeys(COUNTERS, 0)
        got = counts_from_api(api_body)
        for name in COUNTERS:
            if got[name] != expected[name]:
                differences.append(f"{name}: API {got[name]}, reference {expected[name]}")
        return differences
    expected = {row[0]: counts_from_row(row[1:]) for row in reference_rows}
    buckets = api_body.get("buckets")
    if not isinstance(buckets, list):
        return ["API answer has no buckets"]
    seen = set()
    total = dict.fromkeys(COUNTERS, 0)
    for bucket in buckets:
        month = str(bucket.get("from", ""))[:7]
        seen.add(month)
        want = expected.get(month, dict.fromkeys(COUNTERS, 0))
        got = counts_from_api(bucket)
        for name in COUNTERS:
            if got[name] != want[name]:
                differences.append(f"bucket {bucket.get('from')}..{bucket.get('to')} {name}: API {got[name]}, reference {want[name]}")
            if isinstance(got[name], int):
                total[name] += got[name]
    for month in sorted(set(expected) - seen):
        differences.append(f"month {month}: in the reference ({expected[month]['totalRequests']} requests), no API bucket")
    # The trend's own totals are the period's.
    whole = counts_from_api(api_body)
    for name in COUNTERS:
        want = sum(counts[name] for counts in expected.values())
        if whole[name] != want:
            differences.append(f"trend total {name}: API {whole[name]}, reference {want}")
    return differences


# ---------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="requests of the main company")
    parser.add_argument("--other-rows", type=int, default=5_000_000, help="requests of the 4 other companies together")
    parser.add_argument("--samples", type=int, default=30, help="timed calls per variant and side, after 3 warm-ups")
    parser.add_argument("--reuse", action="store_true", help="keep the database if it already holds these rows")
    parser.add_argument("--jit", choices=["default", "off"], default="default",
                        help="off: ALTER DATABASE ... SET jit = off for this run (the API and the reference alike)")
    args = parser.parse_args()
    command_line = "python3 bench/reports.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    print("building (release)...", file=sys.stderr)
    subprocess.run(["swift", "build", "-c", "release", "--product", "surveyd"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    bin_dir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    surveyd = os.path.join(bin_dir, "surveyd")

    marker = f"{args.rows}/{args.other_rows}"
    reuse = False
    if args.reuse:
        url = database_url(recreate=False)
        found = psql(url, "SELECT CASE WHEN to_regclass('public.bench_reports_marker') IS NULL THEN '' "
                          "ELSE (SELECT coalesce(max(loaded), '') FROM bench_reports_marker) END")
        reuse = found == marker
        print(f"--reuse: marker {found or 'none'}, wanted {marker}: {'reusing' if reuse else 'reloading'}", file=sys.stderr)
    if not reuse:
        url = database_url(recreate=True)
    env = dict(
        os.environ, DATABASE_URL=url, DESTINATION_HASH_KEY=HASH_KEY, PORT=str(API_PORT), HOST="127.0.0.1",
        LOG_LEVEL="error", SURVEYD_SQL_DIR=os.path.join(ROOT, "sql"), SURVEYD_OPENAPI=os.path.join(ROOT, "openapi.yaml"),
        TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT, DATABASE_MAX_CONNECTIONS="16",
        # Timed report requests come back to back: the per-token rate limit (50/s) is moved out of the way.
        RATE_LIMIT_PER_SECOND="1000000", RATE_LIMIT_BURST="2000000",
        COMPANY_RATE_LIMIT_PER_SECOND="1000000", COMPANY_RATE_LIMIT_BURST="2000000",
    )
    migrated = subprocess.run([surveyd, "migrate"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if migrated.returncode != 0 and reuse:
        # E.g. a migration edited since the load: the rollups may have been built differently.
        print(f"--reuse: migrate failed ({migrated.stderr.strip()}); reloading", file=sys.stderr)
        reuse = False
        url = database_url(recreate=True)
        migrated = subprocess.run([surveyd, "migrate"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if migrated.returncode != 0:
        raise SystemExit("surveyd migrate failed: " + migrated.stderr)
    # Before any session the measurements use (the server's pool, the reference's psql) opens.
    psql(url, f"ALTER DATABASE {DATABASE} " + ("SET jit = off" if args.jit == "off" else "RESET jit"))

    def create_company(name):
        output = subprocess.run([surveyd, "company", "create", "--name", name, "--quiet-hours", "off"], env=env, check=True, capture_output=True, text=True).stdout
        return int(re.search(r"Company (\d+)", output).group(1)), output.split()[-1]

    if reuse:
        company_ids = dict(line.split("|") for line in psql(url, "SELECT name, company_id FROM companies").splitlines())
        main_company = int(company_ids[MAIN_COMPANY])
        main_token = subprocess.run([surveyd, "token", "create", "--company", str(main_company)], env=env, check=True,
                                    capture_output=True, text=True).stdout.split()[-1]
    else:
        main_company, main_token = create_company(MAIN_COMPANY)
        others = [create_company(name) for name in OTHER_COMPANIES]

    processes = []
    reference = None
    failed_checks = []
    results = []
    try:
        serve_log = open(os.path.join(bin_dir, "reports-bench-serve.log"), "w")
        serve = subprocess.Popen([surveyd, "serve"], env=env, stdout=serve_log, stderr=subprocess.STDOUT)
        processes.append(serve)
        wait_for(API_PORT, "/survey/1.0.0/surveys")

        def create_surveys(token, count, label):
            client = Client(API_PORT, token)
            surveys = []
            for n in range(count):
                status, survey = client.request("POST", "/survey/1.0.0/surveys", {
                    "name": f"{label} {INTERACTION_TYPES[n % len(INTERACTION_TYPES)]} {n + 1}",
                    "interactionType": INTERACTION_TYPES[n % len(INTERACTION_TYPES)],
                    "questions": [{"body": "How likely are you to recommend us to a friend or colleague, 0-10?", "language": "en"}],
                })
                if status != 201:
                    raise SystemExit(f"creating a survey: {status} {survey}")
                surveys.append((survey["id"], survey["questions"][0]["id"]))
            return surveys

        if reuse:
            main_surveys = [tuple(map(int, line.split("|"))) for line in psql(
                url, f"SELECT survey_id, min(question_id) FROM questions WHERE company_id = {main_company} GROUP BY 1 ORDER BY 1").splitlines()]
        else:
            print("creating surveys...", file=sys.stderr)
            main_surveys = create_surveys(main_token, MAIN_SURVEYS, "Main")
            other_surveys = [(company, create_surveys(token, OTHER_SURVEYS, f"Other {company}")) for company, token in others]

            seconds, generating = load(url, (main_company, main_surveys), other_surveys, args.rows, args.other_rows)
            total = args.rows + args.other_rows
            print(f"load: {total:,} rows in {seconds:.1f} s = {total / seconds:,.0f} rows/s "
                  f"(Python generation {generating:.1f} s of it, overlapped with the server's work)", file=sys.stderr)
            load_line = f"{total:,} rows in {seconds:.1f} s = {total / seconds:,.0f} rows/s (COPY, {CHUNK_ROWS:,} rows per statement, triggers on)"

            started = time.perf_counter()
            cells = 0
            while True:
                folded = int(psql(url, "SELECT compact_report_rollups(500)"))
                cells += folded
                if folded == 0:
                    break
            compact_seconds = time.perf_counter() - started
            print(f"compaction: {cells:,} cells folded in {compact_seconds:.1f} s", file=sys.stderr)
            started = time.perf_counter()
            psql(url, "VACUUM ANALYZE")
            vacuum_seconds = time.perf_counter() - started
            print(f"VACUUM ANALYZE: {vacuum_seconds:.1f} s", file=sys.stderr)
            psql(url, "CREATE TABLE bench_reports_marker (loaded text NOT NULL, at timestamptz NOT NULL DEFAULT now())")
            psql(url, f"INSERT INTO bench_reports_marker (loaded) VALUES ('{marker}')")
            load_line += f"; compaction {cells:,} cells in {compact_seconds:.1f} s; VACUUM ANALYZE {vacuum_seconds:.1f} s"
        if reuse:
            load_line = "reused an already loaded database (--reuse)"

        sizes = psql(url, "SELECT pg_size_pretty(pg_total_relation_size('survey_requests')), "
                          "pg_size_pretty(pg_total_relation_size('report_rollups')), "
                          "(SELECT count(*) FROM survey_requests), (SELECT count(*) FROM report_rollups), "
                          "(SELECT count(*) FROM report_rollups WHERE NOT compacted)").split("|")
        print(f"survey_requests: {sizes[0]} ({int(sizes[2]):,} rows); report_rollups: {sizes[1]} ({int(sizes[3]):,} rows, "
              f"{int(sizes[4]):,} not compacted)", file=sys.stderr)

        sets = segment_sets()
        all_pair, any_pair, co_occurring = filter_segments(sets)
        survey = main_surveys[0][0]
        year = {"startDate": YEAR_START, "endDate": YEAR_END}
        variants = [
            ("company, 1 year, no filter", "/survey/1.0.0/report", dict(year),
             reference_sql(main_company, YEAR_START, YEAR_END), False),
            (f"company, 1 year, segments ALL {','.join(all_pair)}", "/survey/1.0.0/report",
             dict(year, segments=",".join(all_pair), segmentMode="ALL"),
             reference_sql(main_company, YEAR_START, YEAR_END, segments=all_pair, mode="ALL"), False),
            (f"company, 1 year, segments ANY {','.join(any_pair)}", "/survey/1.0.0/report",
             dict(year, segments=",".join(any_pair), segmentMode="ANY"),
             reference_sql(main_company, YEAR_START, YEAR_END, segments=any_pair, mode="ANY"), False),
            ("one survey, 1 year, no filter", f"/survey/1.0.0/surveys/{survey}/report", dict(year),
             reference_sql(main_company, YEAR_START, YEAR_END, survey=survey), False),
            (f"one survey, 1 year, segments ANY {','.join(any_pair)}", f"/survey/1.0.0/surveys/{survey}/report",
             dict(year, segments=",".join(any_pair), segmentMode="ANY"),
             reference_sql(main_company, YEAR_START, YEAR_END, survey=survey, segments=any_pair, mode="ANY"), False),
            ("company, 2 years (whole history)", "/survey/1.0.0/report", {"startDate": ALL_START, "endDate": ALL_END},
             reference_sql(main_company, ALL_START, ALL_END), False),
            (f"company, month trend, 1 year, {TREND_ZONE}", "/survey/1.0.0/report/trend",
             dict(year, interval="month", timezone=TREND_ZONE),
             reference_sql(main_company, YEAR_START, YEAR_END, trend_zone=TREND_ZONE), True),
        ]

        reference = Reference(url)
        api = Client(API_PORT, main_token)
        for name, path, parameters, sql, trend in variants:
            target = path + "?" + urllib.parse.urlencode(parameters, quote_via=urllib.parse.quote, safe=":,/")
            api_times, reference_times, problems, api_errors = [], [], [], []
            expected_rows = None
            for sample in range(WARMUP + args.samples):
                started = time.perf_counter()
                try:
                    status, body = api.request("GET", target)
                except (OSError, http.client.HTTPException) as error:
                    status, body = None, f"{type(error).__name__}: {error}"
                    api = Client(API_PORT, main_token)
                api_ms = (time.perf_counter() - started) * 1000
                rows, reference_ms = reference.run(sql)
                if expected_rows is None:
                    expected_rows = rows
                elif rows != expected_rows:
                    problems.append("the reference's own answer changed between runs")
                if status != 200:
                    api_errors.append(f"HTTP {status}: {json.dumps(body)[:500] if not isinstance(body, str) else body[:500]}")
                else:
                    for difference in compare(body, rows, trend):
                        if difference not in problems:
                            problems.append(difference)
                if sample >= WARMUP:
                    api_times.append(api_ms)
                    reference_times.append(reference_ms)
            equal = "yes" if not problems and not api_errors else ("API error" if api_errors and not problems else "NO")
            if api_errors:
                failed_checks.append((name, target, sql, [api_errors[0]] + ([f"({len(api_errors)} of {WARMUP + args.samples} calls failed)"])))
            if problems:
                failed_checks.append((name, target, sql, problems))
            api_p50 = statistics.median(api_times)
            reference_p50 = statistics.median(reference_times)
            results.append((name, api_p50, percentile(api_times, 0.99), reference_p50, percentile(reference_times, 0.99),
                            reference_p50 / api_p50 if api_p50 > 0 else float("nan"), equal, not api_errors))
            print(f"{name}: API p50 {api_p50:.1f} ms, reference p50 {reference_p50:.1f} ms, numbers equal: {equal}", file=sys.stderr)
            if expected_rows and not trend:
                counts = counts_from_row(expected_rows[0])
                print("    reference: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()), file=sys.stderr)
    finally:
        if reference:
            reference.close()
        stop_all(processes)

    cpu = cpu_model()
    postgres = psql(url, "SHOW server_version")
    workers = psql(url, "SHOW max_parallel_workers_per_gather")
    jit = psql(url, "SHOW jit")
    print()
    print(f"Command: `{command_line}`")
    print()
    print(f"Machine: {os.cpu_count()} cores ({cpu}), Linux {os.uname().release}, PostgreSQL {postgres} "
          f"(fsync and synchronous_commit on, shared_buffers 256MB, max_parallel_workers_per_gather {workers}, jit {jit}), all on loopback.")
    print(f"Data: main company {args.rows:,} requests over 2024-11-01..2026-11-01 in 20 surveys, 50 segment sets; "
          f"4 other companies {args.other_rows:,} requests. Load: {load_line}.")
    print(f"Table sizes: survey_requests {sizes[0]} ({int(sizes[2]):,} rows), report_rollups {sizes[1]} ({int(sizes[3]):,} rows).")
    print(f"1-year period: {YEAR_START} → {YEAR_END}. Segment filters: ALL {','.join(all_pair)} (together in {co_occurring} of the "
          f"50 sets), ANY {','.join(any_pair)}. {args.samples} samples per side after {WARMUP} warm-ups, API and reference alternating.")
    print()
    print("| variant | API p50 | API p99 | reference p50 | reference p99 | reference p50 / API p50 | numbers equal |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, api_p50, api_p99, reference_p50, reference_p99, ratio, equal, api_ok in results:
        api_cells = f"{api_p50:.1f} ms | {api_p99:.1f} ms" if api_ok else f"({api_p50:.1f} ms, failed) | ({api_p99:.1f} ms, failed)"
        ratio_cell = f"{ratio:,.1f}×" if api_ok else "–"
        print(f"| {name} | {api_cells} | {reference_p50:.1f} ms | {reference_p99:.1f} ms | {ratio_cell} | {equal} |")
    print()
    if failed_checks:
        print("FAILED checks:")
        for name, target, sql, problems in failed_checks:
            print(f"- {name}: GET {target}")
            for problem in problems[:30]:
                print(f"    {problem}")
            if len(problems) > 30:
                print(f"    ... {len(problems) - 30} more")
            print("    reference SQL: " + " ".join(sql.split()))
        sys.exit(1)
    print("OK: every API answer equals the reference SQL's counts.")


if __name__ == "__main__":
    main()
