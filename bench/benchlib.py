"""What the benchmark scripts share: the private durable cluster, psql, a keep-alive HTTP
client, waiting for a port, percentiles."""
import http.client
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The destination hash key of every bench database (its hashes are never compared across).
HASH_KEY = "ab" * 32


def release_binaries(*products):
    """Builds `products` (surveyd first) in release mode; returns the bin folder."""
    print("building (release)...", file=sys.stderr)
    for product in products:
        subprocess.run(["swift", "build", "-c", "release", "--product", product], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()


def service_environment(url, port, **extra):
    """What `surveyd` is run with in a bench: this database and port, quiet logs, and the
    limits a shared service puts on one company out of the way (a bench measures the
    pipeline, not the rate limits)."""
    return dict(
        os.environ, DATABASE_URL=url, DESTINATION_HASH_KEY=HASH_KEY, PORT=str(port), HOST="127.0.0.1",
        LOG_LEVEL="error", SURVEYD_SQL_DIR=os.path.join(ROOT, "sql"), SURVEYD_OPENAPI=os.path.join(ROOT, "openapi.yaml"),
        SURVEYD_DASHBOARD_DIR=os.path.join(ROOT, "dashboard"),
        DATABASE_MAX_CONNECTIONS="16",
        RATE_LIMIT_PER_SECOND="1000000", RATE_LIMIT_BURST="2000000",
        COMPANY_RATE_LIMIT_PER_SECOND="1000000", COMPANY_RATE_LIMIT_BURST="2000000",
        **extra)


def migrate_and_create_company(surveyd, env, name="bench"):
    """Migrates, creates a company with no SMS cap to speak of and without quiet hours
    (inside them every send would be scheduled for the morning; builds older than quiet
    hours do not know the option); returns its API token and id."""
    subprocess.run([surveyd, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    quiet = ["--quiet-hours", "off"] if "--quiet-hours" in subprocess.run(
        [surveyd, "company", "create", "--help"], capture_output=True, text=True).stdout else []
    output = subprocess.run([surveyd, "company", "create", "--name", name, *quiet], env=env, check=True,
                            capture_output=True, text=True).stdout
    url = env["DATABASE_URL"]
    psql(url, f"UPDATE companies SET daily_sms_cap = 10000000 WHERE name = '{name}'")
    # The e-mail cap, where the build has one (an older tree's bench runs this file too).
    if psql(url, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'companies' AND column_name = 'daily_email_cap'") == "1":
        psql(url, f"UPDATE companies SET daily_email_cap = 10000000 WHERE name = '{name}'")
    return output.split()[-1], int(psql(url, f"SELECT max(company_id) FROM companies WHERE name = '{name}'"))


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
        self.port, self.timeout = port, timeout
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.token = token

    def request(self, method, path, body=None):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        # Bodies may come pre-encoded, so the client's own JSON work stays out of the timing.
        data = body if isinstance(body, bytes) else (json.dumps(body) if body is not None else None)
        try:
            self.connection.request(method, path, body=data, headers=headers)
            response = self.connection.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # `serve` closes a keep-alive connection left idle (during a drain, say) before
            # reading anything more from it: once more, on a new connection.
            self.connection.close()
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
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


def stop_all(processes, timeout=15):
    """Terminates every process, then waits for each (killing what does not stop in time)."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()


def cpu_model():
    """This machine's processor, as /proc/cpuinfo names it."""
    return bash("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()


def cpu_seconds(pids):
    """User plus system CPU time of `pids` so far (processes that are gone count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / tick


def postgres_cpu_seconds(postmaster):
    """CPU time of the whole PostgreSQL cluster so far: its live processes, plus the backends
    that have exited, which the postmaster has reaped (its `cutime` and `cstime`)."""
    tick = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{postmaster}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return cpu_seconds(postgres_pids()) + (int(fields[13]) + int(fields[14])) / tick


def postmaster_pid(url):
    """The postmaster: the parent of the checkpointer, a process that lives as long as it."""
    checkpointer = psql(url, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
    with open(f"/proc/{checkpointer}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def postgres_pids():
    found = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found]
