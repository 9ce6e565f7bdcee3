"""What the benchmark scripts share: the private durable cluster, psql, a keep-alive HTTP
client, waiting for a port, percentiles."""
import http.client
import json
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bash(script, env=None):
    return subprocess.run(["bash", "-c", script], cwd=ROOT, check=True, capture_output=True, text=True, env=env).stdout.strip()


def private_database_url(database, recreate=True):
    """The URL of `database` on the private cluster `bench`, started with durable commits
    (fsync and synchronous_commit on); recreated empty unless `recreate` is false."""
    env = dict(os.environ, SURVEYD_PG_DURABLE="1")
    step = f"recreate_database {database}" if recreate else f"create_database_if_missing {database}"
    return bash(
        "source scripts/lib/database.sh && ensure_system_packages && start_private_postgres bench >&2 "
        f"&& {step} >&2 && private_database_url {database}",
        env=env,
    ).splitlines()[-1]


def psql(url, sql):
    return subprocess.run(["psql", "-X", url, "-v", "ON_ERROR_STOP=1", "-Atc", sql], check=True, capture_output=True, text=True).stdout.strip()


class Session:
    """One psql connection kept open for repeated queries: a poll every 50 ms through
    `psql(...)` starts a process and a backend each time, which took about 13 % of this
    2-core machine during a drain (perf, 2026-12-07) and skews what is measured."""

    def __init__(self, url):
        self.process = subprocess.Popen(
            ["psql", "-X", url, "-v", "ON_ERROR_STOP=1", "-At", "-q"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def query(self, sql):
        self.process.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo __end__\n")
        self.process.stdin.flush()
        lines = []
        while (line := self.process.stdout.readline().rstrip("\n")) != "__end__":
            if line == "" and self.process.poll() is not None:
                raise RuntimeError("psql exited")
            lines.append(line)
        return "\n".join(lines)

    def close(self):
        self.process.stdin.close()
        self.process.wait()


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, port, token=None, timeout=60):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.token = token

    def request(self, method, path, body=None):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        # Bodies may come pre-encoded, so the client's own JSON work stays out of the timing.
        data = body if isinstance(body, bytes) else (json.dumps(body) if body is not None else None)
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        payload = response.read()
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload.decode(errors="replace")
        return response.status, parsed


def wait_for(port, path="/", timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", path)
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listening on {port}")


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]
