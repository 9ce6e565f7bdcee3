#!/usr/bin/env python3
"""Voice benchmark: a survey call's whole cycle through the fake gateway, over HTTP.

    bench/voice.py [--samples 200] [--ring-ms 50]

Builds surveyd and fake-twilio in release mode, starts a private PostgreSQL cluster with
durable commits, a fresh database, `surveyd serve` (PUBLIC_BASE_URL pointing at itself),
the fake gateway (which plays each call as Twilio would: our TwiML fetched and signed,
the `<Gather>` answered with 9, the status callback; after `--ring-ms` of ringing, as a
phone rings before it is answered) and one `surveyd worker` placing calls through it.
Sends single-request VOICE calls one at a time, an idle worker LISTENing, and times each
step:

- send → call placed (the API call, the queue, the worker, the Calls API);
- our TwiML request answered (the question, after the answering-machine check);
- the `<Gather>` action answered (the score recorded);
- send → call ended (the status callback handled; includes the ringing).

Prints a Markdown table for docs/BENCHMARKS.md.
"""
import argparse
import os
import random
import statistics
import subprocess
import sys
import time

from benchlib import (
    cpu_model, stop_all,
    Client, migrate_and_create_company, percentile, private_database_url, psql, release_binaries,
    service_environment, wait_for)

API_PORT = 18082
GATEWAY_PORT = 19098
AUTH_TOKEN = "bench-voice-auth-token"
ACCOUNT = "AC" + "cd" * 16


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--ring-ms", type=int, default=50, help="how long the fake phone rings before it answers")
    args = parser.parse_args()

    bin_dir = release_binaries("surveyd", "fake-twilio")
    surveyd = os.path.join(bin_dir, "surveyd")
    url = private_database_url("surveyd_voice_bench")
    env = service_environment(url, API_PORT, TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT,
                              PUBLIC_BASE_URL=f"http://127.0.0.1:{API_PORT}")
    token, _ = migrate_and_create_company(surveyd, env)
    psql(url, "UPDATE companies SET daily_voice_cap = 10000000")
    processes = []
    try:
        serve = subprocess.Popen([surveyd, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(serve)
        gateway = subprocess.Popen([os.path.join(bin_dir, "fake-twilio"), str(GATEWAY_PORT), AUTH_TOKEN, ACCOUNT, str(args.ring_ms)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(gateway)
        wait_for(API_PORT, "/survey/1.0.0/surveys")
        wait_for(GATEWAY_PORT, "/received")
        worker = subprocess.Popen(
            [surveyd, "worker"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=dict(env, SMS_PROVIDER="twilio", TWILIO_API_BASE_URL=f"http://127.0.0.1:{GATEWAY_PORT}", SMS_SENDER="+3288000",
                     VOICE_RATE_LIMIT="1000"))
        processes.append(worker)
        api = Client(API_PORT, token)
        status, survey = api.request("POST", "/survey/1.0.0/surveys", {
            "name": "bench", "interactionType": "general",
            "questions": [{"body": "How likely are you to recommend us to a friend?", "language": "en-GB"}]})
        assert status == 201, survey
        send_path = f"/survey/1.0.0/surveys/{survey['id']}/send"
        time.sleep(2)

        gateway_client = Client(GATEWAY_PORT)
        start = random.randrange(10_000_000, 80_000_000)
        sent_at = {}
        for i in range(args.samples):
            number = "+324%08d" % (start + i)
            sent_at[number] = time.time()
            status, result = api.request("POST", send_path, {"requests": [{"channel": "VOICE", "destination": number}]})
            assert status == 202 and result["results"][0]["status"] == "queued", result
            deadline = time.time() + 10
            while time.time() < deadline:
                _, calls = gateway_client.request("GET", "/calls")
                if "ended" in calls.get(number, {}):
                    break
                time.sleep(0.002)
            time.sleep(0.02)
        _, calls = gateway_client.request("GET", "/calls")
    finally:
        stop_all(processes)

    complete = {n: c for n, c in calls.items() if {"placed", "answering", "asked", "keyed", "scored", "ended"} <= c.keys()}
    scored = int(psql(url, "SELECT count(*) FROM survey_requests WHERE channel = 'VOICE' AND score = 9 AND call_seconds = 20"))
    print(f"{len(complete)} of {args.samples} calls played whole; {scored} requests scored 9 with their minutes", file=sys.stderr)

    def ms(values):
        return statistics.median(values) * 1000, percentile(values, 0.99) * 1000
    placed = ms([c["placed"] - sent_at[n] for n, c in complete.items()])
    asked = ms([c["asked"] - c["answering"] for c in complete.values()])
    recorded = ms([c["scored"] - c["keyed"] for c in complete.values()])
    ended = ms([c["ended"] - sent_at[n] for n, c in complete.items()])
    cpu = cpu_model()
    print()
    print(f"Machine: {os.cpu_count()} cores ({cpu}), PostgreSQL 15 with fsync and synchronous_commit on, all on loopback; "
          f"{len(complete)} calls one at a time, an idle worker, {args.ring_ms} ms of ringing.")
    print()
    print("| step | p50 | p99 |")
    print("| --- | --- | --- |")
    for name, (p50, p99) in [("send call → call placed at the gateway", placed), ("TwiML request → question (signed, routed, checked)", asked),
                             ("Gather action → thanks (score recorded)", recorded),
                             ("send call → call ended (status callback handled, ringing included)", ended)]:
        print(f"| {name} | {p50:.1f} ms | {p99:.1f} ms |")


if __name__ == "__main__":
    main()
