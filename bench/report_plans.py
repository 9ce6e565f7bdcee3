#!/usr/bin/env python3
"""The query plans of the report variants, as PostgreSQL ran them for the API.

    bench/report_plans.py

Needs the database bench/reports.py loaded (run that first; this reuses it as it is).
Turns on auto_explain (ANALYZE, BUFFERS) for the database, starts `surveyd serve`, makes
each report variant of bench/reports.py twice (the second, warm, call is kept), and
prints each statement's plan from the cluster's log as Markdown, for docs/REPORTS.md.
auto_explain is turned off again at the end.
"""
import os
import re
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reports  # noqa: E402

LOG = os.path.join(reports.ROOT, ".local/pg/bench/log/postgresql.log")


def main():
    url = reports.database_url(recreate=False)
    bin_dir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=reports.ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
    surveyd = os.path.join(bin_dir, "surveyd")
    settings = {
        "session_preload_libraries": "auto_explain", "auto_explain.log_min_duration": "0",
        "auto_explain.log_analyze": "on", "auto_explain.log_buffers": "on", "auto_explain.log_timing": "on",
        "auto_explain.log_nested_statements": "off",
    }
    for name, value in settings.items():
        reports.psql(url, f"ALTER DATABASE {reports.DATABASE} SET {name} = '{value}'")
    token = subprocess.run([surveyd, "token", "create", "--company", reports.psql(
        url, f"SELECT company_id FROM companies WHERE name = '{reports.MAIN_COMPANY}'")],
        env=dict(os.environ, DATABASE_URL=url), check=True, capture_output=True, text=True).stdout.split()[-1]
    survey = reports.psql(url, f"SELECT min(survey_id) FROM surveys s JOIN companies c USING (company_id) WHERE c.name = '{reports.MAIN_COMPANY}'")
    env = dict(os.environ, DATABASE_URL=url, DESTINATION_HASH_KEY=reports.HASH_KEY, PORT=str(reports.API_PORT),
               HOST="127.0.0.1", LOG_LEVEL="error", SURVEYD_SQL_DIR=os.path.join(reports.ROOT, "sql"),
               SURVEYD_OPENAPI=os.path.join(reports.ROOT, "openapi.yaml"), RATE_LIMIT_PER_SECOND="1000000", RATE_LIMIT_BURST="2000000",
               COMPANY_RATE_LIMIT_PER_SECOND="1000000", COMPANY_RATE_LIMIT_BURST="2000000")
    server = subprocess.Popen([surveyd, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        reports.wait_for(reports.API_PORT)
        sets = reports.segment_sets()
        all_pair, any_pair, _ = reports.filter_segments(sets)
        year = {"startDate": reports.YEAR_START, "endDate": reports.YEAR_END}
        variants = [
            ("company, 1 year, no filter", "/survey/1.0.0/report", dict(year)),
            ("company, 1 year, segments ALL", "/survey/1.0.0/report", dict(year, segments=",".join(all_pair), segmentMode="ALL")),
            ("company, 1 year, segments ANY", "/survey/1.0.0/report", dict(year, segments=",".join(any_pair), segmentMode="ANY")),
            ("one survey, 1 year, no filter", f"/survey/1.0.0/surveys/{survey}/report", dict(year)),
            ("one survey, 1 year, segments ANY", f"/survey/1.0.0/surveys/{survey}/report", dict(year, segments=",".join(any_pair), segmentMode="ANY")),
            ("company, 2 years", "/survey/1.0.0/report", {"startDate": reports.ALL_START, "endDate": reports.ALL_END}),
            ("company, month trend, 1 year, Europe/Brussels", "/survey/1.0.0/report/trend", dict(year, interval="month", timezone="Europe/Brussels")),
            ("company, 1 year, groupBy=segment", "/survey/1.0.0/report", dict(year, groupBy="segment")),
        ]
        client = reports.Client(reports.API_PORT, token)
        shown_text = False
        print("Captured with `python3 bench/report_plans.py` on the data of `bench/reports.py` "
              "(warm: each plan is the second call's).\n")
        for name, path, parameters in variants:
            target = path + "?" + urllib.parse.urlencode(parameters, quote_via=urllib.parse.quote, safe=":,/")
            client.request("GET", target)
            time.sleep(0.3)
            offset = os.path.getsize(LOG)
            status, _ = client.request("GET", target)
            time.sleep(0.5)
            with open(LOG, encoding="utf-8", errors="replace") as log:
                log.seek(offset)
                text = log.read()
            plans = [p for p in re.split(r"\n(?=\S.*LOG:  duration: )", text) if "WITH piece AS" in p]
            print(f"### {name}\n\n`GET {target}` → {status}\n")
            for plan in plans:
                body = re.sub(r"^.*?LOG:  ", "", plan.strip(), count=1)
                # The statement's text once (the first); after that, only its plan.
                lines = body.strip().split("\n")
                text_end = next((i for i, line in enumerate(lines) if re.match(r"^\s*(Limit|Sort|GroupAggregate|HashAggregate|Aggregate)\b", line)), 1)
                if shown_text:
                    lines = lines[:1] + lines[text_end:]
                shown_text = True
                print("```\n" + "\n".join(line.replace("\t", "    ", 1) for line in lines) + "\n```\n")
    finally:
        server.terminate()
        server.wait(timeout=15)
        for name in settings:
            reports.psql(url, f"ALTER DATABASE {reports.DATABASE} RESET {name}")


if __name__ == "__main__":
    main()
