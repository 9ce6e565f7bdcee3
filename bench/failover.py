#!/usr/bin/env python3
"""Failover of the primary under load: what the service sees when the primary's postmaster
is SIGKILLed in a pg_auto_failover formation.

    python3 bench/failover.py [--runs N] [--keep] [--rate 30] [--clients 8] [--warmup 5] [--after 10]
                              [--monitor-setting pgautofailover.NAME=VALUE ...]

Each run, on fresh clusters under /tmp/failover-bench-*:
- three local PostgreSQL 15 nodes from Debian's postgresql-15-auto-failover, each under
  its own `pg_autoctl` (run as the `postgres` user): a monitor, a primary and a
  synchronous standby (checked: `synchronous_standby_names` on the primary and the
  standby's `sync_state` in `pg_stat_replication`);
- `surveyd serve` and `surveyd worker` (release build, SMS through the fake Twilio gateway
  bench/FakeTwilioServer) on the multi-host URL
  `postgresql://postgres@127.0.0.1:P1,127.0.0.1:P2/surveyd?target_session_attrs=read-write&connect_timeout=2`;
- a steady load: `--clients` threads send one SMS survey each to a new number, `--rate`
  per second in all, each with its own `Idempotency-Key` (a send answered 5xx, 408, 429
  or not at all is retried with the same key and number after its `Retry-After`, at most
  1 s, jittered; another 4xx ends it, "abandoned"); and the customers' replies: every
  number that reaches the gateway answers with a score 2 s later, as a signed Twilio
  webhook (retried alike, with the same `MessageSid`);
- after `--warmup` seconds, SIGKILL of the primary's postmaster (the first line of its
  `postmaster.pid`); the load goes on until a send started after the kill is answered
  202, and `--after` seconds more; then the worker drains the queue (at most 60 s).

It reports, from every HTTP request's start, end and status:
- the time from the kill to the first successful write (the first 202 of a send started
  after the kill);
- the requests in flight at the kill or later answered 503 (and how many carried
  `Retry-After`), by half second;
- any other status or transport error (a defect), with its problem detail;
- accepted sends missing afterwards: every request id answered 202 looked up on the new
  primary (must be 0);
- SMS sent twice: the gateway's count against its distinct numbers (must be 0), and
  requests stored twice for one number;
- requests ended `uncertain`, the longest request in flight at or after the kill, and
  scored replies whose score is not stored;
- writes stored although a failure was answered (seen when the retry replays the 202 or
  the reply's retry is a duplicate), and `Idempotency-Key` claims left without a response.
And what pg_auto_failover did (its monitor's events from the kill on), the settings it ran
with, and the serve and worker log lines counted by message. Every request is written to
the run's requests.jsonl, times relative to the kill.

Exits non-zero when a check fails. Needs root (the clusters run as `postgres`), and five
free ports in 56000-56099 per run. The worker runs with SMS_LEASE_SECONDS=15 (`--lease`)
so that a stranded claim comes back within the drain. Everything started is stopped on
exit, Ctrl-C and SIGTERM included; `--keep` (with one run) leaves the clusters running
for debugging and prints how to stop them. The logs of pg_autoctl, serve, worker and
gateway stay in the run's folder either way.
"""
import argparse
import base64
import collections
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import migrate_and_create_company, psql, release_binaries, service_environment, stop_all  # noqa: E402

PG_BIN = "/usr/lib/postgresql/15/bin"
BASE_PORT = 56000
AUTH_TOKEN = "failover-bench-auth-token"
ACCOUNT = "AC" + "fa" * 16
SENDER = "+3288000"
DATABASE = "surveyd"
REPLY_DELAY = 2.0  # seconds between a message reaching the gateway and its reply
LEASE_SECONDS = 15  # the worker's claim: a stranded claim comes back within the drain


def log(message):
    print(message, file=sys.stderr, flush=True)


def port_is_free(port):
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_block(number):
    """The first of five free ports, in a block of ten in 56000-56099, starting with the run's
    own block (a port in the range may be busy for a moment as another connection's
    ephemeral source port: then the next block, or a second later)."""
    deadline = time.time() + 30
    while True:
        for step in range(10):
            base = BASE_PORT + 10 * ((number - 1 + step) % 10)
            if all(port_is_free(port) for port in range(base, base + 5)):
                return base
        if time.time() > deadline:
            raise RuntimeError("no five free ports in 56000-56099 (a --keep run left running? stop it first)")
        time.sleep(1)


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as file:
            return "".join(file.readlines()[-lines:])
    except OSError:
        return ""


# --- the pg_auto_failover formation ---------------------------------------------------

class Formation:
    """A monitor and two data nodes, each under its own `pg_autoctl` run as `postgres`."""

    def __init__(self, directory, base_port):
        self.directory = directory
        self.monitor_port = base_port
        self.node_ports = {"node1": base_port + 1, "node2": base_port + 2}
        self.processes = {}  # name -> Popen of `runuser ... pg_autoctl ... --run`
        for name in ("config", "share"):
            os.makedirs(os.path.join(directory, name), exist_ok=True)
        subprocess.run(["chown", "-R", "postgres:postgres", directory], check=True)

    def pgdata(self, name):
        return os.path.join(self.directory, name)

    def log_path(self, name):
        return os.path.join(self.directory, f"{name}.log")

    def command(self, *arguments):
        """`pg_autoctl` as postgres, with this formation's own config and state folders."""
        return ["runuser", "-u", "postgres", "--", "env", f"PATH={PG_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                f"HOME={self.directory}", f"XDG_CONFIG_HOME={self.directory}/config",
                f"XDG_DATA_HOME={self.directory}/share", f"PG_CONFIG={PG_BIN}/pg_config", "pg_autoctl", *arguments]

    def start(self, name, *arguments):
        output = open(self.log_path(name), "ab")
        self.processes[name] = subprocess.Popen(self.command(*arguments), cwd=self.directory, stdout=output,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        output.close()

    def monitor_url(self, user="postgres"):
        return f"postgresql://{user}@127.0.0.1:{self.monitor_port}/pg_auto_failover?connect_timeout=2"

    def node_url(self, name, database=DATABASE):
        return f"postgresql://postgres@127.0.0.1:{self.node_ports[name]}/{database}?connect_timeout=2"

    def service_url(self):
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.node_ports.values())
        return f"postgresql://postgres@{hosts}/{DATABASE}?target_session_attrs=read-write&connect_timeout=2"

    def query(self, url, sql):
        return psql(url, sql)

    def try_query(self, url, sql):
        try:
            return psql(url, sql)
        except subprocess.CalledProcessError:
            return None

    def check_running(self):
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"pg_autoctl for {name} exited ({process.returncode}):\n{tail(self.log_path(name))}")

    def wait(self, what, condition, timeout=120, nudge=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.check_running()
            if condition():
                return
            if nudge:
                nudge()
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}; logs in {self.directory}")

    def nodes(self):
        """The monitor's view: name -> (port, reported state, goal state)."""
        text = self.try_query(self.monitor_url(), "SELECT nodename, nodeport, reportedstate, goalstate FROM pgautofailover.node ORDER BY nodeid")
        nodes = {}
        for line in (text or "").splitlines():
            name, port, reported, goal = line.split("|")
            nodes[name] = (int(port), reported, goal)
        return nodes

    def state_text(self):
        return ", ".join(f"{name}@{port} {reported}/{goal}" for name, (port, reported, goal) in self.nodes().items())

    def primary(self):
        """(pgdata name, port) of the node both reported and assigned primary."""
        for port, reported, goal in self.nodes().values():
            if reported == goal and reported in ("primary", "wait_primary", "single"):
                for name, node_port in self.node_ports.items():
                    if node_port == port:
                        return name, port
        return None

    def create(self, monitor_settings):
        pm = self.monitor_port
        self.start("monitor", "create", "monitor", "--pgdata", self.pgdata("monitor"), "--pgport", str(pm),
                   "--auth", "trust", "--no-ssl", "--hostname", "127.0.0.1", "--run")
        self.wait("the monitor", lambda: self.try_query(self.monitor_url(), "SELECT count(*) FROM pgautofailover.formation") is not None)
        if monitor_settings:
            for setting in monitor_settings:
                name, value = setting.split("=", 1)
                self.query(self.monitor_url(), f"ALTER SYSTEM SET {name} = '{value}'")
            self.query(self.monitor_url(), "SELECT pg_reload_conf()")
        monitor = f"postgres://autoctl_node@127.0.0.1:{pm}/pg_auto_failover?sslmode=disable"
        for index, (name, port) in enumerate(self.node_ports.items()):
            self.start(name, "create", "postgres", "--pgdata", self.pgdata(name), "--pgport", str(port), "--monitor", monitor,
                       "--auth", "trust", "--no-ssl", "--hostname", "127.0.0.1", "--dbname", DATABASE, "--run")
            if index == 0:
                self.wait(f"{name} to run as the single node", lambda: any(
                    reported == goal == "single" for _, reported, goal in self.nodes().values()))

        def steady():
            states = sorted((reported, goal) for _, reported, goal in self.nodes().values())
            return states == [("primary", "primary"), ("secondary", "secondary")]

        # pg_basebackup (how pg_autoctl makes the standby) asks the primary for a spread
        # checkpoint, which on an idle cluster takes 0.9 × checkpoint_timeout (4.5 min):
        # an immediate CHECKPOINT on the primary finishes it at once.
        first = self.node_url("node1", "postgres")
        self.wait("a primary and a secondary in steady state", steady, timeout=180,
                  nudge=lambda: self.try_query(first, "CHECKPOINT"))

    def monitor_settings(self):
        text = self.try_query(self.monitor_url(), "SELECT name, setting || coalesce(unit, '') FROM pg_settings "
                              "WHERE name LIKE 'pgautofailover.%' ORDER BY name")
        return dict(line.split("|", 1) for line in (text or "").splitlines())

    def keeper_timeouts(self, name):
        path = os.path.join(self.directory, "config", "pg_autoctl", self.pgdata(name).lstrip("/"), "pg_autoctl.cfg")
        timeouts, section = {}, None
        try:
            with open(path) as file:
                for line in file:
                    line = line.strip()
                    if line.startswith("["):
                        section = line.strip("[]")
                    elif section == "timeout" and "=" in line:
                        key, value = (part.strip() for part in line.split("=", 1))
                        if key in ("network_partition_timeout", "postgresql_restart_failure_timeout",
                                   "postgresql_restart_failure_max_retries", "prepare_promotion_catchup",
                                   "prepare_promotion_walreceiver"):
                            timeouts[key] = value
        except OSError:
            pass
        return timeouts

    def replication(self, name):
        """`synchronous_standby_names` and each standby's sync_state on node `name`."""
        url = self.node_url(name, "postgres")
        names = self.try_query(url, "SHOW synchronous_standby_names")
        standbys = self.try_query(url, "SELECT application_name || ':' || state || ':' || sync_state FROM pg_stat_replication")
        return {"synchronous_standby_names": names, "standbys": (standbys or "").split()}

    def postmaster_pid(self, name):
        with open(os.path.join(self.pgdata(name), "postmaster.pid")) as file:
            return int(file.readline())

    def events_since(self, since):
        text = self.try_query(self.monitor_url(), "SELECT extract(epoch FROM eventtime), nodename, reportedstate, goalstate, "
                              "replace(description, E'\\n', ' ') FROM pgautofailover.event "
                              f"WHERE eventtime >= to_timestamp({since - 1}) ORDER BY eventid")
        events = []
        for line in (text or "").splitlines():
            at, node, reported, goal, description = line.split("|", 4)
            events.append((float(at) - since, node, reported, goal, description))
        return events

    def stop(self):
        """Stops every pg_autoctl (which stops its Postgres), then kills what is left."""
        for name in self.processes:
            if self.processes[name].poll() is None:
                subprocess.run(self.command("stop", "--pgdata", self.pgdata(name)), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=30, check=False)
        deadline = time.time() + 30
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
        # A postmaster that outlived its pg_autoctl (its pid file names it).
        for name in self.processes:
            try:
                pid = self.postmaster_pid(name)
            except (OSError, ValueError):
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as file:
                    ours = self.pgdata(name).encode() in file.read()
            except OSError:
                ours = False
            if ours and alive(pid):
                os.kill(pid, signal.SIGKILL)

    def remove_data(self):
        """Removes the clusters, keeping the logs."""
        for entry in os.listdir(self.directory):
            path = os.path.join(self.directory, entry)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)


# --- the load ---------------------------------------------------------------------------

class Record:
    __slots__ = ("kind", "start", "end", "status", "error", "retry_after", "request_id", "destination", "outcome", "detail",
                 "replayed")

    def __init__(self, kind, start, end, status, error=None, retry_after=None, request_id=None, destination=None, outcome=None,
                 detail=None, replayed=False):
        self.kind, self.start, self.end, self.status, self.error = kind, start, end, status, error
        self.retry_after, self.request_id, self.destination, self.outcome = retry_after, request_id, destination, outcome
        self.detail, self.replayed = detail, replayed

    @property
    def label(self):
        return str(self.status) if self.status is not None else f"error:{self.error}"

    @property
    def ok(self):
        return self.status is not None and 200 <= self.status < 300


class HTTP:
    """One keep-alive connection, reopened after an error or `Connection: close`."""

    def __init__(self, port, timeout):
        self.port, self.timeout, self.connection = port, timeout, None

    def close(self):
        if self.connection is not None:
            self.connection.close()
        self.connection = None

    def call(self, method, path, body=None, headers=None):
        """(status, headers, payload, error name)."""
        try:
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.connection.request(method, path, body=body, headers=headers or {})
            response = self.connection.getresponse()
            payload = response.read()
            if (response.getheader("Connection") or "").lower() == "close":
                self.close()
            return response.status, response.headers, payload, None
        except (OSError, http.client.HTTPException) as error:
            self.close()
            return None, None, None, type(error).__name__


def retry_delay(headers):
    """The response's Retry-After, at most 1 s (so the recovery is seen closely), 0.25 s
    without one; jittered down to half, as a client should (clients refused at the same
    moment would otherwise retry in lockstep)."""
    value = headers.get("Retry-After") if headers is not None else None
    try:
        delay = min(1.0, max(0.05, float(value)))
    except (TypeError, ValueError):
        delay = 0.25
    return delay * random.uniform(0.5, 1.0)


def failure_detail(status, payload):
    """A refusal's problem detail (kept with the request's record), else None."""
    if status is None or 200 <= status < 300 or not payload:
        return None
    try:
        problem = json.loads(payload)
        return f"{problem.get('type', '')} {problem.get('detail', '')}".strip()[:200]
    except (ValueError, AttributeError):
        return payload[:200].decode(errors="replace")


def twilio_signature(url, parameters):
    data = url + "".join(key + value for key, value in sorted(parameters))
    return base64.b64encode(hmac.new(AUTH_TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()


class Load:
    """Sends at a steady rate from several clients, and the customers' replies."""

    def __init__(self, api_port, gateway_port, token, survey_id, rate, clients, request_timeout):
        self.api_port, self.gateway_port, self.token = api_port, gateway_port, token
        self.send_path = f"/survey/1.0.0/surveys/{survey_id}/send"
        self.public_url = f"http://127.0.0.1:{api_port}/webhooks/twilio/sms"
        self.rate, self.clients, self.request_timeout = rate, clients, request_timeout
        self.lock = threading.Lock()
        self.records = []
        self.accepted = {}  # destination -> request id
        self.abandoned = []  # destinations whose send never got a 202
        self.stop_sending = threading.Event()  # no new sends
        self.give_up = threading.Event()  # no more retries
        self.stop_replying = threading.Event()
        self.replied = set()
        self.reply_queue = collections.deque()  # (due, destination)
        self.replies_pending = 0
        self.numbers = iter(range(random.randrange(10_000_000, 80_000_000), 10 ** 9))
        self.threads = []

    def record(self, record):
        with self.lock:
            self.records.append(record)

    def start(self):
        for index in range(self.clients):
            self.threads.append(threading.Thread(target=self.sender, args=(index,), daemon=True))
        self.threads.append(threading.Thread(target=self.gateway_poller, daemon=True))
        for _ in range(2):
            self.threads.append(threading.Thread(target=self.replier, daemon=True))
        for thread in self.threads:
            thread.start()

    def sender(self, index):
        client = HTTP(self.api_port, self.request_timeout)
        interval = self.clients / self.rate
        due = time.time() + random.uniform(0, interval)
        while not self.stop_sending.is_set():
            time.sleep(max(0.0, due - time.time()))
            due = max(due + interval, time.time() - interval)
            if self.stop_sending.is_set():
                break
            with self.lock:
                destination = "+324%08d" % next(self.numbers)
            key = str(uuid.uuid4())
            body = json.dumps({"requests": [{"channel": "SMS", "destination": destination, "segments": ["failover"]}]})
            headers = {"Content-Type": "application/json", "Authorization": "Bearer " + self.token, "Idempotency-Key": key}
            while True:
                started = time.time()
                status, response_headers, payload, error = client.call("POST", self.send_path, body, headers)
                ended = time.time()
                request_id = None
                if status == 202:
                    try:
                        request_id = json.loads(payload)["results"][0]["requestId"]
                    except (ValueError, KeyError, IndexError, TypeError):
                        pass
                self.record(Record("send", started, ended, status, error,
                                   response_headers.get("Retry-After") if response_headers is not None else None,
                                   request_id, destination, detail=failure_detail(status, payload),
                                   replayed=response_headers is not None and response_headers.get("Idempotent-Replayed") == "true"))
                if status == 202:
                    with self.lock:
                        self.accepted[destination] = request_id
                    break
                if (status is not None and 400 <= status < 500 and status not in (408, 429)) or self.give_up.is_set():
                    with self.lock:
                        self.abandoned.append(destination)
                    break
                time.sleep(retry_delay(response_headers))

    def gateway_poller(self):
        client = HTTP(self.gateway_port, 10)
        while not self.stop_replying.is_set():
            status, _, payload, _ = client.call("GET", "/received")
            if status == 200:
                arrivals = json.loads(payload)["arrivals"]
                with self.lock:
                    for destination, at in sorted(arrivals.items(), key=lambda item: item[1]):
                        if destination not in self.replied:
                            self.replied.add(destination)
                            self.reply_queue.append((at + REPLY_DELAY, destination))
                            self.replies_pending += 1
            time.sleep(0.25)

    def replier(self):
        client = HTTP(self.api_port, self.request_timeout)
        while not self.stop_replying.is_set():
            with self.lock:
                item = self.reply_queue.popleft() if self.reply_queue and self.reply_queue[0][0] <= time.time() else None
            if item is None:
                time.sleep(0.05)
                continue
            _, destination = item
            sid = "SM" + uuid.uuid4().hex
            parameters = [("MessageSid", sid), ("SmsSid", sid), ("AccountSid", ACCOUNT), ("From", destination),
                          ("To", SENDER), ("Body", str(random.randint(0, 10))), ("NumSegments", "1")]
            body = urllib.parse.urlencode(parameters)
            headers = {"Content-Type": "application/x-www-form-urlencoded",
                       "X-Twilio-Signature": twilio_signature(self.public_url, parameters)}
            while True:
                started = time.time()
                status, response_headers, payload, error = client.call("POST", "/webhooks/twilio/sms", body, headers)
                ended = time.time()
                outcome = response_headers.get("X-Reply-Outcome") if response_headers is not None else None
                self.record(Record("reply", started, ended, status, error,
                                   response_headers.get("Retry-After") if response_headers is not None else None,
                                   destination=destination, outcome=outcome, detail=failure_detail(status, payload)))
                if (status is not None and status < 500) or self.give_up.is_set():
                    break
                time.sleep(retry_delay(response_headers))
            with self.lock:
                self.replies_pending -= 1

    def first_write_after(self, moment):
        with self.lock:
            ends = [r.end for r in self.records if r.kind == "send" and r.status == 202 and r.start >= moment]
        return min(ends, default=None)

    def senders_done(self, timeout):
        deadline = time.time() + timeout
        for thread in self.threads[:self.clients]:
            thread.join(max(0.1, deadline - time.time()))
        return not any(thread.is_alive() for thread in self.threads[:self.clients])

    def replies_done(self):
        with self.lock:
            return self.replies_pending == 0


# --- one run ----------------------------------------------------------------------------

LOG_LINE = re.compile(r"^\S+ (\w+) [\w.]+: (.*?)(?= [\w.]+=|$)")


def log_summary(path):
    """How many times each (level, message) appears in a serve or worker log."""
    counts = collections.Counter()
    try:
        with open(path, errors="replace") as file:
            for line in file:
                match = LOG_LINE.match(line.rstrip("\n"))
                if match and not match.group(2).startswith("DATABASE_URL logs in as a privileged role"):
                    counts[f"{match.group(1)} {match.group(2)}"] += 1
    except OSError:
        pass
    return dict(counts.most_common())

def start_process(command, env, log_path):
    output = open(log_path, "ab")
    process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    output.close()
    return process


def start_listener(command, environment, port, spare_ports, log_path, path):
    """Starts `command(port)` and waits until it answers `path`; on a port it cannot bind,
    again on the next free spare port. (process, port)."""
    for _ in range(5):
        process = start_process(command(port), environment(port), log_path)
        deadline = time.time() + 30
        while process.poll() is None and time.time() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                connection.request("GET", path)
                connection.getresponse().read()
                connection.close()
                return process, port
            except OSError:
                time.sleep(0.1)
        if process.poll() is None:
            stop_all([process])
            raise RuntimeError(f"{command(port)[0]} does not answer on {port}: see {log_path}")
        log(f"  {os.path.basename(command(port)[0])} could not start on {port} (exit {process.returncode}); trying another port")
        port = next(port for port in spare_ports if port_is_free(port))
    raise RuntimeError(f"{command(port)[0]} could not start: see {log_path}")


def retrying(what, action, timeout=30):
    deadline = time.time() + timeout
    while True:
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - reported when the time is up
            if time.time() > deadline:
                raise RuntimeError(f"{what}: {error}") from error
            time.sleep(0.5)


def run_once(number, args, bin_dir, cleanups):
    base = free_block(number)
    directory = tempfile.mkdtemp(prefix="failover-bench-", dir="/tmp")
    os.chmod(directory, 0o755)
    formation = Formation(directory, base)
    api_port, gateway_port = base + 3, base + 4
    processes = []

    def cleanup():
        stop_all(processes)
        if args.keep:
            stop = (f"for node in node1 node2 monitor; do runuser -u postgres -- env PATH={PG_BIN}:$PATH "
                    f"XDG_CONFIG_HOME={directory}/config XDG_DATA_HOME={directory}/share "
                    f"pg_autoctl stop --pgdata {directory}/$node; done")
            log(f"kept: {directory}; the service's URL: {formation.service_url()}\n  stop it with: {stop}")
            return
        formation.stop()
        formation.remove_data()
    cleanups.append(cleanup)

    log(f"run {number}: formation in {directory} (monitor :{base}, nodes :{base + 1} :{base + 2})")
    started = time.time()
    formation.create(args.monitor_setting)
    setup_seconds = time.time() - started
    old_primary, old_port = formation.primary()
    sync = formation.replication(old_primary)
    log(f"  steady in {setup_seconds:.0f} s: {formation.state_text()}; on the primary {old_primary}: "
        f"synchronous_standby_names = {sync['synchronous_standby_names']!r}, standbys {sync['standbys']}")

    url = formation.service_url()
    env = service_environment(url, api_port, TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT,
                              PUBLIC_BASE_URL=f"http://127.0.0.1:{api_port}")
    env["LOG_LEVEL"] = args.log_level
    surveyd = os.path.join(bin_dir, "surveyd")
    token, company_id = migrate_and_create_company(surveyd, env, name="failover")

    # The listeners' ports are in the kernel's ephemeral range: one may be some other
    # connection's source port by now, so a listener that cannot bind moves on.
    spare = iter(range(BASE_PORT + 99, BASE_PORT - 1, -1))
    gateway, gateway_port = start_listener(lambda port: [os.path.join(bin_dir, "fake-twilio"), str(port)], lambda port: env,
                                           gateway_port, spare, os.path.join(directory, "gateway.log"), "/received")
    processes.append(gateway)
    serve, api_port = start_listener(lambda port: [surveyd, "serve"], lambda port: dict(env, PORT=str(port),
                                     PUBLIC_BASE_URL=f"http://127.0.0.1:{port}"), api_port, spare,
                                     os.path.join(directory, "serve.log"), "/health")
    processes.append(serve)
    worker_env = dict(env, PORT=str(api_port), PUBLIC_BASE_URL=f"http://127.0.0.1:{api_port}", SMS_PROVIDER="twilio",
                      SMS_RATE_LIMIT="100000", TWILIO_API_BASE_URL=f"http://127.0.0.1:{gateway_port}", SMS_SENDER=SENDER,
                      SMS_LEASE_SECONDS=str(args.lease), DATABASE_MAX_CONNECTIONS="4")
    processes.append(start_process([surveyd, "worker"], worker_env, os.path.join(directory, "worker.log")))

    def create_survey():
        client = HTTP(api_port, 10)
        status, _, payload, error = client.call("POST", "/survey/1.0.0/surveys", json.dumps({
            "name": "failover", "interactionType": "general",
            "questions": [{"body": "How likely are you to recommend us to a friend, 0-10?", "language": "en-GB"}]}),
            {"Content-Type": "application/json", "Authorization": "Bearer " + token})
        if status != 201:
            raise RuntimeError(f"survey creation: {status or error} {payload!r}")
        return json.loads(payload)["id"]
    survey_id = retrying("creating the survey", create_survey)

    load = Load(api_port, gateway_port, token, survey_id, args.rate, args.clients, args.request_timeout)
    cleanups.append(lambda: (load.stop_sending.set(), load.give_up.set(), load.stop_replying.set()))
    load.start()
    time.sleep(args.warmup)

    pid = formation.postmaster_pid(old_primary)
    killed = time.time()
    os.kill(pid, signal.SIGKILL)
    log(f"  SIGKILL to {old_primary}'s postmaster (pid {pid}) after {args.warmup:.0f} s of load")

    deadline = killed + args.max_outage
    while load.first_write_after(killed) is None and time.time() < deadline:
        time.sleep(0.05)
    first_write = load.first_write_after(killed)
    log(f"  first write after the kill: {'+%.2f s' % (first_write - killed) if first_write else 'none within %d s' % args.max_outage}")
    time.sleep(args.after)
    load.stop_sending.set()
    stopped = time.time()
    if not load.senders_done(args.retry_grace):
        load.give_up.set()
        load.senders_done(args.request_timeout + 5)
    load.give_up.set()

    # The drain: until the queue is empty (the superuser sees every company's jobs).
    drain_deadline = time.time() + args.drain_timeout
    queue_left = None
    while time.time() < drain_deadline:
        text = formation.try_query(url, "SELECT count(*) FROM sms_jobs")
        queue_left = int(text) if text is not None else None
        if queue_left == 0:
            break
        time.sleep(0.5)
    drained = time.time() - stopped
    # The last replies (each 2 s after its message reached the gateway).
    reply_deadline = time.time() + REPLY_DELAY + 10
    time.sleep(0.5)
    while not load.replies_done() and time.time() < reply_deadline:
        time.sleep(0.1)
    load.stop_replying.set()

    # --- what happened ---
    exited = {name: process.returncode for name, process in zip(("gateway", "serve", "worker"), processes)
              if process.poll() is not None}
    new = formation.primary()
    events = formation.events_since(killed)
    sync_after = formation.replication(new[0]) if new else None
    records = sorted(load.records, key=lambda r: r.start)
    sends = [r for r in records if r.kind == "send"]
    replies = [r for r in records if r.kind == "reply"]
    after_kill = [r for r in records if r.end >= killed]  # in flight at the kill, or started after it
    failures_after = [r for r in after_kill if not r.ok]

    def by_label(rows):
        return dict(sorted(collections.Counter(r.label for r in rows).items()))

    other = [r for r in records if not r.ok and r.status != 503]
    accepted = dict(load.accepted)
    ids = [request_id for request_id in accepted.values() if request_id is not None]
    found = int(formation.query(url, f"SELECT count(*) FROM survey_requests WHERE company_id = {company_id} "
                                     f"AND request_id = ANY('{{{','.join(map(str, ids)) or '0'}}}'::bigint[])"))
    stored = {}
    for line in formation.query(url, f"SELECT status || '/' || coalesce(failure, '-'), count(*) FROM survey_requests "
                                     f"WHERE company_id = {company_id} GROUP BY 1 ORDER BY 1").splitlines():
        state, count = line.split("|")
        stored[state] = int(count)
    uncertain = sum(count for state, count in stored.items() if state.endswith("/uncertain"))
    same_number = int(formation.query(url, f"SELECT count(*) FROM (SELECT destination_hash FROM survey_requests "
                                           f"WHERE company_id = {company_id} GROUP BY 1 HAVING count(*) > 1) AS twice"))
    _, _, payload, _ = HTTP(gateway_port, 10).call("GET", "/received")
    received = json.loads(payload)
    arrivals = received["arrivals"]
    sent_twice = received["count"] - len(arrivals)
    not_accepted_but_sent = sorted(set(arrivals) - set(accepted))
    scored = {r.destination for r in replies if r.outcome == "scored"}
    scored_ids = [accepted[d] for d in scored if accepted.get(d) is not None]
    scores_stored = int(formation.query(url, f"SELECT count(*) FROM survey_requests WHERE company_id = {company_id} AND score IS NOT NULL "
                                             f"AND request_id = ANY('{{{','.join(map(str, scored_ids)) or '0'}}}'::bigint[])"))
    retry_after = [r for r in after_kill if r.status == 503]
    stranded = int(formation.query(url, f"SELECT count(*) FROM idempotency_keys WHERE company_id = {company_id} AND status IS NULL"))
    refusals = collections.Counter(f"{r.label} {r.detail}" for r in other if r.detail)
    with open(os.path.join(directory, "requests.jsonl"), "w") as file:
        for r in records:
            file.write(json.dumps({"kind": r.kind, "start": round(r.start - killed, 4), "end": round(r.end - killed, 4),
                                   "status": r.status, "error": r.error, "retryAfter": r.retry_after,
                                   "requestId": r.request_id, "destination": r.destination, "outcome": r.outcome,
                                   "detail": r.detail, "replayed": r.replayed}) + "\n")
    # What the clients saw from the kill on, by half second (by when each request ended).
    timeline = collections.defaultdict(collections.Counter)
    horizon = (first_write - killed if first_write else args.max_outage) + 1
    for r in after_kill:
        if r.end - killed <= horizon:
            timeline[int((r.end - killed) / 0.5)][r.label] += 1
    result = {
        "run": number, "killed_at": round(killed, 3),
        "old_primary": f"{old_primary}:{old_port}", "new_primary": f"{new[0]}:{new[1]}" if new else None,
        "failed_over": bool(new) and new[0] != old_primary,
        "synchronous_standby_names": sync["synchronous_standby_names"], "standbys": sync["standbys"],
        "synchronous_after": sync_after["synchronous_standby_names"] if sync_after else None,
        "promoted_after_seconds": next((round(at, 2) for at, node, reported, _, _ in events
                                        if node != old_primary and reported in ("wait_primary", "primary")), None),
        "first_write_after_seconds": round(first_write - killed, 2) if first_write else None,
        "requests": len(records), "sends": len(sends), "replies": len(replies),
        "after_kill": by_label(after_kill),
        "answered_503_after_kill": len(retry_after),
        "answered_503_with_retry_after": sum(1 for r in retry_after if r.retry_after is not None),
        "other_statuses": by_label(other),
        "failures_started_after_first_write": len([r for r in failures_after if first_write and r.start >= first_write]),
        "last_failure_after_seconds": round(max((r.end for r in failures_after), default=killed) - killed, 2),
        "longest_request_after_kill_seconds": round(max((r.end - r.start for r in after_kill), default=0), 2),
        "accepted_sends": len(accepted), "accepted_sends_missing": len(ids) - found + sum(1 for v in accepted.values() if v is None),
        "sends_abandoned": len(load.abandoned),
        # Stored although a failure was answered: the retry with the same key replayed the 202,
        # or the reply's retry (same MessageSid) was a duplicate.
        "sends_replayed_after_a_failure": sum(1 for r in sends if r.replayed),
        "replies_recorded_though_refused": sum(1 for r in replies if r.outcome == "duplicate"),
        "idempotency_claims_stranded": stranded, "refusals": dict(refusals),
        "stored": stored, "uncertain": uncertain,
        "gateway_messages": received["count"], "gateway_numbers": len(arrivals), "sms_sent_twice": sent_twice,
        "numbers_stored_twice": same_number, "sent_without_a_202": len(not_accepted_but_sent),
        "reply_outcomes": dict(sorted(collections.Counter(r.outcome or r.label for r in replies if r.ok or r.outcome).items())),
        "scored_replies": len(scored_ids), "scored_replies_missing": len(scored_ids) - scores_stored,
        "exited": exited, "queue_left": queue_left, "drain_seconds": round(drained, 1),
        "timeline": [f"+{bucket * 0.5:.1f}s " + " ".join(f"{label}x{count}" for label, count in sorted(timeline[bucket].items()))
                     for bucket in sorted(timeline)],
        "logs_summary": {name: log_summary(os.path.join(directory, f"{name}.log")) for name in ("serve", "worker")},
        "monitor_events": [f"+{at:.2f}s {node} {reported}->{goal}" for at, node, reported, goal, _ in events],
        "logs": directory,
    }
    checks = {
        "synchronous standby before the kill": bool(sync["synchronous_standby_names"]) and any(s.endswith(":quorum") or s.endswith(":sync") for s in sync["standbys"]),
        "writes succeeded again after the kill": first_write is not None,
        "no status other than 2xx and 503, no transport error": not other,
        f"no request longer than {args.hang_seconds:.0f} s": result["longest_request_after_kill_seconds"] < args.hang_seconds,
        "every accepted send is stored (missing = 0)": result["accepted_sends_missing"] == 0,
        "no SMS sent twice": sent_twice == 0 and same_number == 0,
        "serve, worker and gateway stayed up": not exited,
        "the queue drained": queue_left == 0,
        "every scored reply is stored": result["scored_replies_missing"] == 0,
    }
    return result, checks, {"settings": formation.monitor_settings(), "keeper": formation.keeper_timeouts(old_primary)}


def describe(result, checks):
    r = result
    lines = [
        f"run {r['run']}: {r['old_primary']} killed; {'failed over to ' + str(r['new_primary']) if r['failed_over'] else 'no failover, primary now ' + str(r['new_primary'])}"
        f" (the monitor saw the new primary at +{r['promoted_after_seconds']} s)",
        f"  synchronous replication before the kill: synchronous_standby_names = {r['synchronous_standby_names']!r}, "
        f"standbys {r['standbys']}; after the run: {r['synchronous_after']!r}",
        f"  first successful write {('+%.2f s' % r['first_write_after_seconds']) if r['first_write_after_seconds'] is not None else 'NEVER'} after the kill; "
        f"last failure +{r['last_failure_after_seconds']} s; longest request in flight at or after the kill {r['longest_request_after_kill_seconds']} s",
        f"  {r['requests']} requests ({r['sends']} send attempts, {r['replies']} reply attempts); ended after the kill: {r['after_kill']}",
        f"  503 after the kill: {r['answered_503_after_kill']} ({r['answered_503_with_retry_after']} with Retry-After); "
        f"other statuses (whole run): {r['other_statuses'] or 'none'}; failures started after the first write: {r['failures_started_after_first_write']}",
        f"  accepted sends {r['accepted_sends']}, missing afterwards {r['accepted_sends_missing']}; abandoned (never 202) {r['sends_abandoned']}; "
        f"replayed after a failure {r['sends_replayed_after_a_failure']}; Idempotency-Key claims left without a response {r['idempotency_claims_stranded']}",
        *([f"  refusals: {r['refusals']}"] if r["refusals"] else []),
        f"  requests stored: {r['stored']}; uncertain {r['uncertain']}",
        f"  gateway: {r['gateway_messages']} messages to {r['gateway_numbers']} numbers, sent twice {r['sms_sent_twice']}; "
        f"numbers stored twice {r['numbers_stored_twice']}; sent without a 202 {r['sent_without_a_202']}",
        f"  replies: {r['reply_outcomes']}; scored {r['scored_replies']}, not stored {r['scored_replies_missing']}; "
        f"recorded though answered a failure (the retry was a duplicate) {r['replies_recorded_though_refused']}",
        f"  queue left {r['queue_left']} ({r['drain_seconds']} s after the load stopped); processes that exited: {r['exited'] or 'none'}",
        f"  what the clients saw, by half second after the kill: {'; '.join(r['timeline'])}",
        f"  monitor events: {'; '.join(r['monitor_events']) or 'none'}",
        *(f"  {name} log: {summary or 'nothing'}" for name, summary in r["logs_summary"].items()),
        f"  logs: {r['logs']}",
    ]
    lines += [f"  {'PASS' if passed else 'FAIL'}  {check}" for check, passed in checks.items()]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="how many times, each on fresh clusters")
    parser.add_argument("--keep", action="store_true", help="leave the last run's clusters running (for debugging)")
    parser.add_argument("--rate", type=float, default=30, help="new sends per second, all clients together")
    parser.add_argument("--clients", type=int, default=8, help="concurrent sending clients")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of load before the kill")
    parser.add_argument("--after", type=float, default=10, help="seconds of load after the first write succeeds again")
    parser.add_argument("--max-outage", type=float, default=120, help="give up waiting for a successful write after this long")
    parser.add_argument("--retry-grace", type=float, default=15, help="seconds a send may still be retried once the load stops")
    parser.add_argument("--drain-timeout", type=float, default=60)
    parser.add_argument("--request-timeout", type=float, default=30, help="the clients' timeout per request")
    parser.add_argument("--hang-seconds", type=float, default=10, help="a longer request fails the run")
    parser.add_argument("--lease", type=int, default=LEASE_SECONDS, help="the worker's SMS_LEASE_SECONDS")
    parser.add_argument("--log-level", default="warning", help="LOG_LEVEL of serve and worker (their logs are kept)")
    parser.add_argument("--monitor-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a pg_auto_failover monitor setting (ALTER SYSTEM), e.g. pgautofailover.health_check_period=1000")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the clusters run as the postgres user (runuser)")
    if not os.path.exists("/usr/bin/pg_autoctl") or not os.path.exists(f"{PG_BIN}/postgres"):
        raise SystemExit("needs postgresql-15 and postgresql-15-auto-failover (apt-get install postgresql-15-auto-failover)")
    if args.runs > 10:
        raise SystemExit("at most 10 runs (ports 56000-56099)")
    if args.keep and args.runs != 1:
        raise SystemExit("--keep keeps one run's clusters: use it with --runs 1")

    def terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)  # even where a shell started us with SIGINT ignored

    bin_dir = release_binaries("surveyd", "fake-twilio")
    results, failed, settings = [], False, None
    for number in range(1, args.runs + 1):
        cleanups = []
        try:
            result, checks, settings = run_once(number, args, bin_dir, cleanups)
        finally:
            # Not interrupted by a second Ctrl-C: the clusters must go.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_IGN)
            for cleanup in reversed(cleanups):
                try:
                    cleanup()
                except Exception as error:  # noqa: BLE001 - the other cleanups still run
                    log(f"cleanup: {error}")
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])
        results.append(result)
        failed |= not all(checks.values())
        print(describe(result, checks), flush=True)
        print(json.dumps({"failover": result, "checks": checks}), flush=True)

    print(f"\npg_auto_failover monitor settings: {settings['settings']}; keeper timeouts: {settings['keeper']}"
          f"{'; set by this run: ' + ', '.join(args.monitor_setting) if args.monitor_setting else ' (defaults, none changed)'}")
    if len(results) > 1:
        print("\n| run | first write after kill | 503 | other statuses | longest request | accepted | missing | sent twice | uncertain |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in results:
            first = f"{r['first_write_after_seconds']:.2f} s" if r["first_write_after_seconds"] is not None else "never"
            print(f"| {r['run']} | {first} | {r['answered_503_after_kill']} | {r['other_statuses'] or 'none'} | "
                  f"{r['longest_request_after_kill_seconds']} s | {r['accepted_sends']} | {r['accepted_sends_missing']} | "
                  f"{r['sms_sent_twice']} | {r['uncertain']} |")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as interruption:
        log(f"interrupted ({interruption or 'Ctrl-C'}); everything started was stopped")
        sys.exit(130)
