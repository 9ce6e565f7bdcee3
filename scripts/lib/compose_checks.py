"""The checks of scripts/compose-test (which installs what they need and starts the
private PostgreSQL they use): the Compose deployment, without a Docker engine.

- docker-compose.yml, through `docker-compose config` with .env files that
  scripts/compose-init writes: logins, secrets per service, every setting the binary
  reads, health checks (run against a stub server), the start order;
- scripts/compose-init: mode 600, idempotent, never changes a value;
- deploy/compose/roles.sql on PostgreSQL: the logins, their memberships, the
  migrations applied by the non-superuser login, a database migrated by the superuser
  handed over.

Prints one line per check and closes with `N passed, N failed`.
"""

import http.server
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import traceback
import urllib.parse

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COMPOSE_INIT = os.path.join(ROOT, "scripts", "compose-init")
SECRETS = ["POSTGRES_PASSWORD", "SURVEYD_MIGRATE_DB_PASSWORD", "SURVEYD_API_DB_PASSWORD",
           "SURVEYD_WORKER_DB_PASSWORD", "ADMIN_TOKEN", "DESTINATION_HASH_KEY"]
SURVEYD_SERVICES = ["migrate", "api", "worker"]
LOGIN = {"migrate": "surveyd_migrate", "api": "surveyd_api", "worker": "surveyd_worker"}

# Every variable the binary reads, and where the deployment sets it: per service, the
# .env variable it comes from, FIXED (docker-compose.yml sets it), or IMAGE (the
# Dockerfile's default serves). A variable the sources read that is missing here fails
# the check: decide where it comes from, then add it.
FIXED, IMAGE = "<fixed>", "<image>"
BINARY_VARIABLES = {
    "DATABASE_URL": {"api": FIXED, "worker": FIXED},
    "MIGRATION_DATABASE_URL": {"migrate": FIXED},
    "HOST": {"api": FIXED, "worker": FIXED},
    "PORT": {"api": FIXED},
    "METRICS_PORT": {"worker": FIXED},
    "SURVEYD_SQL_DIR": IMAGE,
    "SURVEYD_OPENAPI": IMAGE,
    "SURVEYD_DASHBOARD_DIR": IMAGE,
    "ADMIN_TOKEN": {"api": "ADMIN_TOKEN"},
    "DESTINATION_HASH_KEY": {"api": "DESTINATION_HASH_KEY", "worker": "DESTINATION_HASH_KEY"},
    "LOG_LEVEL": {"migrate": "LOG_LEVEL", "api": "LOG_LEVEL", "worker": "LOG_LEVEL"},
    "LOG_FORMAT": {"migrate": "LOG_FORMAT", "api": "LOG_FORMAT", "worker": "LOG_FORMAT"},
    "RESPONSE_WINDOW_HOURS": {"api": "RESPONSE_WINDOW_HOURS", "worker": "RESPONSE_WINDOW_HOURS"},
    "DATABASE_MAX_CONNECTIONS": {"api": "API_DATABASE_MAX_CONNECTIONS", "worker": "WORKER_DATABASE_MAX_CONNECTIONS"},
    "DATABASE_POOL_MAX_WAITERS": {"api": "DATABASE_POOL_MAX_WAITERS"},
    "DATABASE_POOL_WAIT_TIMEOUT_MS": {"api": "DATABASE_POOL_WAIT_TIMEOUT_MS"},
    "RATE_LIMIT_PER_SECOND": {"api": "RATE_LIMIT_PER_SECOND"},
    "RATE_LIMIT_BURST": {"api": "RATE_LIMIT_BURST"},
    "AUTH_FAILURES_PER_MINUTE": {"api": "AUTH_FAILURES_PER_MINUTE"},
    "AUTH_FAILURE_BURST": {"api": "AUTH_FAILURE_BURST"},
    "TRUST_X_FORWARDED_FOR": {"api": "TRUST_X_FORWARDED_FOR"},
    "REQUEST_TIMEOUT_SECONDS": {"api": "REQUEST_TIMEOUT_SECONDS"},
    "IDLE_TIMEOUT_SECONDS": {"api": "IDLE_TIMEOUT_SECONDS"},
    "COMPANY_RATE_LIMIT_PER_SECOND": {"api": "COMPANY_RATE_LIMIT_PER_SECOND"},
    "COMPANY_RATE_LIMIT_BURST": {"api": "COMPANY_RATE_LIMIT_BURST"},
    "REQUEST_RECEIVE_TIMEOUT_SECONDS": {"api": "REQUEST_RECEIVE_TIMEOUT_SECONDS"},
    "SHUTDOWN_GRACE_SECONDS": {"api": "SHUTDOWN_GRACE_SECONDS", "worker": "SHUTDOWN_GRACE_SECONDS"},
    "MAX_CONNECTIONS": {"api": "MAX_CONNECTIONS"},
    "MAX_CONNECTIONS_PER_ADDRESS": {"api": "MAX_CONNECTIONS_PER_ADDRESS"},
    # The provider: the worker sends; the API checks the webhooks' signatures (and its
    # container runs `surveyd sms reply`).
    "SMS_PROVIDER": {"worker": "SMS_PROVIDER"},
    "TWILIO_ACCOUNT_SID": {"api": "TWILIO_ACCOUNT_SID", "worker": "TWILIO_ACCOUNT_SID"},
    "TWILIO_AUTH_TOKEN": {"api": "TWILIO_AUTH_TOKEN", "worker": "TWILIO_AUTH_TOKEN"},
    "SMS_SENDER": {"api": "SMS_SENDER", "worker": "SMS_SENDER"},
    "TWILIO_API_BASE_URL": {"worker": "TWILIO_API_BASE_URL"},
    "PUBLIC_BASE_URL": {"api": "PUBLIC_BASE_URL", "worker": "PUBLIC_BASE_URL"},
    "SMS_RATE_LIMIT": {"worker": "SMS_RATE_LIMIT"},
    "SMS_BATCH_SIZE": {"worker": "SMS_BATCH_SIZE"},
    "SMS_CONCURRENCY": {"worker": "SMS_CONCURRENCY"},
    "SMS_LEASE_SECONDS": {"worker": "SMS_LEASE_SECONDS"},
    "SMS_LANES": {"worker": "SMS_LANES"},
    "VOICE_RATE_LIMIT": {"worker": "VOICE_RATE_LIMIT"},
    "VOICE_CONCURRENCY": {"worker": "VOICE_CONCURRENCY"},
    "REPORTS_DATABASE_URL": {"api": "REPORTS_DATABASE_URL"},
    "REPORTS_REPLICA_MAX_LAG_SECONDS": {"api": "REPORTS_REPLICA_MAX_LAG_SECONDS"},
    "REPORTS_DATABASE_MAX_CONNECTIONS": {"api": "REPORTS_DATABASE_MAX_CONNECTIONS"},
    "SMTP_URL": {"worker": "SMTP_URL"},
    "SMTP_CA_FILE": {"worker": "SMTP_CA_FILE"},
    "MAIL_FROM": {"worker": "MAIL_FROM"},
    "EMAIL_RATE_LIMIT": {"worker": "EMAIL_RATE_LIMIT"},
    "EMAIL_CONCURRENCY": {"worker": "EMAIL_CONCURRENCY"},
    "WEBHOOK_ALLOW_PRIVATE_URLS": {"api": "WEBHOOK_ALLOW_PRIVATE_URLS", "worker": "WEBHOOK_ALLOW_PRIVATE_URLS"},
    "WEBHOOK_CONCURRENCY": {"worker": "WEBHOOK_CONCURRENCY"},
    "WEBHOOK_ENDPOINT_CONCURRENCY": {"worker": "WEBHOOK_ENDPOINT_CONCURRENCY"},
    "WEBHOOK_COMPANY_CONCURRENCY": {"worker": "WEBHOOK_COMPANY_CONCURRENCY"},
    "WEBHOOK_LEASE_SECONDS": {"worker": "WEBHOOK_LEASE_SECONDS"},
    "WEBHOOK_DATABASE_CONNECTIONS": {"worker": "WEBHOOK_DATABASE_CONNECTIONS"},
}
PROVIDER_VARIABLES = ["SMS_PROVIDER", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "SMS_SENDER",
                      "TWILIO_API_BASE_URL", "PUBLIC_BASE_URL"]

passed = 0
failed = 0
scratch = tempfile.mkdtemp(prefix="surveyd-compose-test-")


def check(name):
    """Runs the decorated function at once as one check: passes unless it raises."""
    def run(function):
        global passed, failed
        try:
            function()
        except Exception as error:  # noqa: BLE001 - every failure is reported the same way
            failed += 1
            detail = str(error) if isinstance(error, AssertionError) else traceback.format_exc(limit=3)
            print(f"FAIL  {name}: {detail.strip()}", flush=True)
        else:
            passed += 1
            print(f"ok    {name}", flush=True)
        return function
    return run


def clean_environment(**extra):
    """The environment Compose and compose-init see: nothing of ours leaks in."""
    environment = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "LC_ALL": "C"}
    environment.update(extra)
    return environment


def compose_init(env_file, **given):
    return subprocess.run([COMPOSE_INIT, env_file], env=clean_environment(**given),
                          capture_output=True, text=True, timeout=60)


def new_env_file(name, **given):
    directory = os.path.join(scratch, name)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, ".env")
    result = compose_init(path, **given)
    assert result.returncode == 0, f"compose-init failed: {result.stderr}{result.stdout}"
    return path


def read_env(path):
    values = {}
    with open(path) as file:
        for line in file:
            match = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line.rstrip("\n"))
            if match:
                values[match.group(1)] = match.group(2)
    return values


def set_in_env(path, **values):
    """Sets keys in an .env file by hand, as a user editing it would."""
    with open(path) as file:
        lines = file.read().splitlines()
    for key, value in values.items():
        lines = [line for line in lines if not re.match(rf"^\s*{key}=", line)]
        lines.append(f"{key}={value}")
    with open(path, "w") as file:
        file.write("\n".join(lines) + "\n")


def compose_config(env_file):
    """`docker-compose config` of the repository's file with ENV_FILE as its .env."""
    return subprocess.run(
        ["docker-compose", "--project-directory", ROOT, "-f", os.path.join(ROOT, "docker-compose.yml"),
         "--env-file", env_file, "config"],
        env=clean_environment(), capture_output=True, text=True, timeout=120)


def config_of(env_file):
    result = compose_config(env_file)
    assert result.returncode == 0, f"docker-compose config failed: {result.stderr}"
    return yaml.safe_load(result.stdout)


def environment_of(service):
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
    return {key: ("" if value is None else str(value)) for key, value in environment.items()}


def login_of(service):
    """The PostgreSQL user a service logs in as, from its URLs or PGUSER (None: none)."""
    environment = environment_of(service)
    users = set()
    for key in ("DATABASE_URL", "MIGRATION_DATABASE_URL"):
        if environment.get(key):
            users.add(urllib.parse.urlsplit(environment[key]).username)
    if environment.get("PGUSER"):
        users.add(environment["PGUSER"])
    assert len(users) <= 1, f"logs in as several users: {users}"
    return users.pop() if users else None


def binary_variables():
    """The environment variables the sources read, by the Environment helpers or directly."""
    names = set()
    pattern = re.compile(
        r'\b(?:value|integer|double|optionalPort|required|Missing\(name:)\(?\s*"([A-Z][A-Z0-9_]+)"'
        r'|environment\[\s*"([A-Z][A-Z0-9_]+)"\s*\]')
    for directory, _, files in os.walk(os.path.join(ROOT, "Sources")):
        for name in files:
            if name.endswith(".swift"):
                with open(os.path.join(directory, name), encoding="utf-8") as file:
                    for match in pattern.finditer(file.read()):
                        names.add(match.group(1) or match.group(2))
    return names


# --- A stub of /health, for running the health checks --------------------------------

class StubHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    status = 200

    def do_GET(self):  # noqa: N802 - the standard library's name
        code = self.server.status if self.path == "/health" else 404
        body = b'{"status":"ok"}' if code == 200 else b"{}"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *arguments):
        pass


class StubServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A health check hangs up once it has the status line: not an error.
        pass


def stub_server(status):
    server = StubServer(("127.0.0.1", 0), StubHandler)
    server.status = status
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_healthcheck(test, **environment):
    """Runs a Compose health check's command (CMD form) as Docker would, here."""
    assert test and test[0] == "CMD", f"not a CMD health check: {test}"
    # `docker-compose config` writes a literal $ as $$, as the file does.
    command = [part.replace("$$", "$") for part in test[1:]]
    return subprocess.run(command, env=clean_environment(**environment), capture_output=True, text=True, timeout=30)


# --- PostgreSQL (the private cluster scripts/compose-test started) ---------------------

def psql(database, user, *arguments, environment=None, check_result=True):
    command = [os.path.join(os.environ["PRIVATE_PG_BIN"], "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
               "-h", os.environ["PGHOST"], "-p", os.environ["PGPORT"], "-U", user, "-d", database, *arguments]
    result = subprocess.run(command, env=clean_environment(**(environment or {})), capture_output=True, text=True,
                            timeout=300)
    if check_result:
        assert result.returncode == 0, f"psql {' '.join(arguments)[:200]} as {user}: {result.stderr.strip()}"
    return result


def recreate_database(name):
    psql("postgres", "postgres", "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql("postgres", "postgres", "-c", f"CREATE DATABASE {name}")


def migrate(database, user):
    """The migrations as `surveyd migrate` applies them: all in one transaction, after
    creating schema_migrations (Migrator.swift)."""
    files = sorted(name for name in os.listdir(os.path.join(ROOT, "sql")) if name.endswith(".sql"))
    arguments = ["-1", "-c", "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                 "name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"]
    for name in files:
        arguments += ["-f", os.path.join(ROOT, "sql", name),
                      "-c", f"INSERT INTO schema_migrations (version, name, checksum) "
                            f"VALUES ({int(name[:4])}, '{name[:-4]}', 'compose-test')"]
    return psql(database, user, *arguments, check_result=False)


ROLE_PASSWORDS = {"SURVEYD_MIGRATE_DB_PASSWORD": "m" * 16, "SURVEYD_API_DB_PASSWORD": "a" * 16,
                  "SURVEYD_WORKER_DB_PASSWORD": "w" * 16}


def apply_roles(database, **passwords):
    return psql(database, "postgres", "-f", os.path.join(ROOT, "deploy", "compose", "roles.sql"),
                environment=passwords, check_result=False)


def can(database, user, *statements):
    arguments = []
    for statement in statements:
        arguments += ["-c", statement]
    return psql(database, user, *arguments, check_result=False).returncode == 0


def main():
    # ---- scripts/compose-init ---------------------------------------------------------
    @check("compose-init writes .env with mode 600, every secret generated (hash key: 64 hex digits)")
    def _():
        path = new_env_file("fresh")
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o600, f"mode {oct(mode)}"
        values = read_env(path)
        for key in SECRETS:
            assert re.fullmatch(r"[0-9a-f]{64}", values.get(key, "")), f"{key}={values.get(key)!r}"
        assert len({values[key] for key in SECRETS}) == len(SECRETS), "two secrets are equal"
        for key in PROVIDER_VARIABLES:
            if key != "TWILIO_API_BASE_URL":
                assert key in values, f"{key} is not in .env"
        assert values["SMS_PROVIDER"] == "", "SMS_PROVIDER was chosen for the user"

    @check("compose-init is idempotent: run twice, the file (and so the hash key) is unchanged")
    def _():
        path = new_env_file("twice")
        with open(path, "rb") as file:
            first = file.read()
        result = compose_init(path)
        assert result.returncode == 0, result.stderr
        with open(path, "rb") as file:
            assert file.read() == first, "the second run changed .env"

    @check("compose-init never changes a value already set, whatever the environment says")
    def _():
        path = new_env_file("keep", SMS_PROVIDER="console")
        before = read_env(path)
        result = compose_init(path, DESTINATION_HASH_KEY="b" * 64, ADMIN_TOKEN="other", POSTGRES_PASSWORD="other",
                              SMS_PROVIDER="twilio")
        assert result.returncode == 0, result.stderr
        after = read_env(path)
        for key in SECRETS + ["SMS_PROVIDER"]:
            assert after[key] == before[key], f"{key} changed"
        assert "Kept the DESTINATION_HASH_KEY" in result.stdout, result.stdout

    @check("compose-init takes secrets of an earlier deployment from the environment")
    def _():
        key = "0123456789abcdef" * 4
        path = new_env_file("adopt", DESTINATION_HASH_KEY=key, POSTGRES_PASSWORD="surveyd", ADMIN_TOKEN="t0ken")
        values = read_env(path)
        assert (values["DESTINATION_HASH_KEY"], values["POSTGRES_PASSWORD"], values["ADMIN_TOKEN"]) == (
            key, "surveyd", "t0ken"), values

    @check("compose-init fills empty provider settings from the environment, refuses a bad hash key")
    def _():
        path = new_env_file("fill")
        result = compose_init(path, SMS_PROVIDER="twilio", TWILIO_ACCOUNT_SID="AC0123",
                              PUBLIC_BASE_URL="https://nps.example.com")
        assert result.returncode == 0, result.stderr
        values = read_env(path)
        assert (values["SMS_PROVIDER"], values["TWILIO_ACCOUNT_SID"], values["PUBLIC_BASE_URL"]) == (
            "twilio", "AC0123", "https://nps.example.com"), values
        assert "TWILIO_AUTH_TOKEN SMS_SENDER" in result.stdout, result.stdout
        bad = os.path.join(scratch, "bad", ".env")
        os.makedirs(os.path.dirname(bad))
        result = compose_init(bad, DESTINATION_HASH_KEY="not-hex")
        assert result.returncode != 0 and not os.path.exists(bad), "a malformed key was accepted"
        assert not [name for name in os.listdir(os.path.dirname(bad)) if name.startswith(".env")], \
            "left a temporary file"

    @check("compose-init makes an existing .env private again and tells how to read the admin token")
    def _():
        path = new_env_file("mode")
        os.chmod(path, 0o644)
        result = compose_init(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, "mode not restored"
        assert "ADMIN_TOKEN" in result.stdout and f"sed -n 's/^ADMIN_TOKEN=//p' {path}" in result.stdout, result.stdout
        assert read_env(path)["ADMIN_TOKEN"] not in result.stdout, "printed the token itself"

    @check(".env is git-ignored and docker-ignored")
    def _():
        result = subprocess.run(["git", "-C", ROOT, "check-ignore", "-q", ".env"])
        assert result.returncode == 0, ".env is not git-ignored"
        with open(os.path.join(ROOT, ".dockerignore")) as file:
            assert ".env" in [line.strip() for line in file], ".env is not in .dockerignore"

    # ---- docker-compose.yml -------------------------------------------------------------
    @check("docker-compose config refuses to run without .env, naming scripts/compose-init")
    def _():
        empty = os.path.join(scratch, "empty.env")
        open(empty, "w").close()
        result = compose_config(empty)
        assert result.returncode != 0, "config passed without secrets"
        assert "scripts/compose-init" in result.stderr, result.stderr

    @check("docker-compose config refuses an empty SMS_PROVIDER (no silent console)")
    def _():
        result = compose_config(new_env_file("no-provider"))
        assert result.returncode != 0, "config passed without SMS_PROVIDER"
        assert "SMS_PROVIDER" in result.stderr, result.stderr

    trial = new_env_file("trial", SMS_PROVIDER="console")
    config = {}

    @check("docker-compose config accepts the .env of compose-init (SMS_PROVIDER=console)")
    def _():
        config.update(config_of(trial))
        assert config["services"]["worker"]["environment"]["SMS_PROVIDER"] == "console"

    services = config.get("services", {})
    secrets = read_env(trial)

    @check("no service logs in as a superuser but postgres and db-roles; each surveyd service has its own login")
    def _():
        for name, service in services.items():
            user = login_of(service)
            if name in LOGIN:
                assert user == LOGIN[name], f"{name} logs in as {user}"
            elif name == "db-roles":
                assert user == "postgres", f"db-roles logs in as {user}"
            else:
                # The database itself, and the mail catcher, which has no database at all.
                assert name in ("postgres", "mailpit") and user is None, f"{name} logs in as {user}"
        assert set(LOGIN) | {"postgres", "db-roles", "mailpit"} == set(services), f"services: {sorted(services)}"

    @check("each secret reaches only the services that need it")
    def _():
        allowed = {
            "POSTGRES_PASSWORD": {"postgres", "db-roles"},
            "SURVEYD_MIGRATE_DB_PASSWORD": {"db-roles", "migrate"},
            "SURVEYD_API_DB_PASSWORD": {"db-roles", "api"},
            "SURVEYD_WORKER_DB_PASSWORD": {"db-roles", "worker"},
            "ADMIN_TOKEN": {"api"},
            "DESTINATION_HASH_KEY": {"api", "worker"},
        }
        for key, services_allowed in allowed.items():
            holders = {name for name, service in services.items()
                       if any(secrets[key] in value for value in environment_of(service).values())}
            assert holders == services_allowed, f"{key} is in {sorted(holders)}, should be in {sorted(services_allowed)}"

    @check("every variable the binary reads is accounted for, and each .env setting reaches its service")
    def _():
        unknown = sorted(binary_variables() - set(BINARY_VARIABLES))
        assert not unknown, f"the binary reads {unknown}: add them to docker-compose.yml and BINARY_VARIABLES"
        # Every .env-level setting at once, each with its own value.
        path = new_env_file("every-setting", SMS_PROVIDER="console")
        settings = sorted({source for where in BINARY_VARIABLES.values() if where != IMAGE
                           for source in where.values() if source != FIXED and source not in SECRETS})
        set_in_env(path, **{key: f"sentinel-{key.lower()}" for key in settings},
                   SURVEYD_PUBLISH="127.0.0.1:18080")
        every = config_of(path)["services"]
        secrets_here = read_env(path)
        problems = []
        for variable, where in BINARY_VARIABLES.items():
            if where == IMAGE:
                continue
            for service, source in where.items():
                value = environment_of(every[service]).get(variable)
                if source == FIXED:
                    expected_ok = bool(value)
                elif source in SECRETS:
                    expected_ok = value == secrets_here[source]
                else:
                    expected_ok = value == f"sentinel-{source.lower()}"
                if not expected_ok:
                    problems.append(f"{service}.{variable}={value!r} (from {source})")
        ports = str(every["api"].get("ports"))
        if "18080" not in ports or "127.0.0.1" not in ports:
            problems.append(f"SURVEYD_PUBLISH does not set the API's published port: {ports}")
        assert not problems, "; ".join(problems)

    @check("every provider setting the binary reads is passable to the worker (and the API's webhook ones)")
    def _():
        read = binary_variables()
        for variable in PROVIDER_VARIABLES:
            assert variable in read, f"the binary no longer reads {variable}: update PROVIDER_VARIABLES"
            assert "worker" in BINARY_VARIABLES[variable], f"{variable} does not reach the worker"
        for variable in ("TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID", "PUBLIC_BASE_URL"):
            assert "api" in BINARY_VARIABLES[variable], f"{variable} does not reach the API"

    @check("variables left to the image are set by the Dockerfile")
    def _():
        with open(os.path.join(ROOT, "Dockerfile")) as file:
            dockerfile = file.read()
        assert "SURVEYD_SQL_DIR=" in dockerfile, "SURVEYD_SQL_DIR"
        assert "/usr/local/share/surveyd/openapi.yaml" in dockerfile, "openapi.yaml next to the binary"

    @check("a fresh .env lists every setting docker-compose.yml reads (set, or commented out)")
    def _():
        with open(os.path.join(ROOT, "docker-compose.yml")) as file:
            referenced = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", file.read()))
        with open(trial) as file:
            text = file.read()
        missing = sorted(name for name in referenced if not re.search(rf"^(# )?{name}=", text, re.M))
        assert not missing, f"not in .env: {missing}"

    @check("health checks on api and worker ask /health on the port the service listens on")
    def _():
        for name, port_variable in (("api", "PORT"), ("worker", "METRICS_PORT")):
            health = services[name].get("healthcheck")
            assert health and health.get("test"), f"{name} has no health check"
            command = " ".join(health["test"])
            assert "/health " in command and f"$${{{port_variable}}}" in command, f"{name}: {command}"
            assert environment_of(services[name]).get(port_variable), f"{name} does not set {port_variable}"

    @check("the health checks pass on a 200 from /health, fail on a 503 and on a closed port")
    def _():
        healthy, unhealthy = stub_server(200), stub_server(503)
        try:
            for name, port_variable in (("api", "PORT"), ("worker", "METRICS_PORT")):
                test = services[name]["healthcheck"]["test"]
                for server, expected in ((healthy, 0), (unhealthy, 1)):
                    result = run_healthcheck(test, **{port_variable: str(server.server_address[1])})
                    assert (result.returncode == 0) == (expected == 0), \
                        f"{name} against {server.status}: exit {result.returncode} {result.stderr}"
                result = run_healthcheck(test, **{port_variable: str(free_port())})
                assert result.returncode != 0, f"{name} passed with nothing listening"
        finally:
            healthy.shutdown()
            unhealthy.shutdown()

    @check("start order: postgres healthy, then db-roles, then migrate, then api and worker")
    def _():
        def condition(service, dependency):
            return (services[service].get("depends_on") or {}).get(dependency, {}).get("condition")
        assert condition("db-roles", "postgres") == "service_healthy"
        assert condition("migrate", "db-roles") == "service_completed_successfully"
        assert condition("api", "migrate") == "service_completed_successfully"
        assert condition("worker", "migrate") == "service_completed_successfully"
        volumes = str(services["db-roles"].get("volumes"))
        assert "deploy/compose/roles.sql" in volumes, volumes

    @check("PostgreSQL is not published on the host")
    def _():
        assert not services["postgres"].get("ports"), services["postgres"].get("ports")

    # ---- deploy/compose/roles.sql on PostgreSQL ----------------------------------------
    @check("roles.sql refuses to run without the login passwords")
    def _():
        recreate_database("surveyd_compose_fresh")
        result = apply_roles("surveyd_compose_fresh", SURVEYD_MIGRATE_DB_PASSWORD="x")
        assert result.returncode != 0 and "compose-init" in result.stderr, result.stderr

    @check("roles.sql, then every migration applied by surveyd_migrate (not a superuser), then roles.sql again")
    def _():
        result = apply_roles("surveyd_compose_fresh", **ROLE_PASSWORDS)
        assert result.returncode == 0, result.stderr
        result = migrate("surveyd_compose_fresh", "surveyd_migrate")
        assert result.returncode == 0, result.stderr
        result = apply_roles("surveyd_compose_fresh", **ROLE_PASSWORDS)
        assert result.returncode == 0, result.stderr

    @check("the logins: none superuser or BYPASSRLS, only surveyd_migrate CREATEROLE, all with a password")
    def _():
        rows = psql("postgres", "postgres", "-c",
                    "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolcanlogin, "
                    "rolpassword IS NOT NULL FROM pg_authid WHERE rolname LIKE 'surveyd\\_%' ORDER BY 1").stdout
        table = {line.split("|")[0]: line.split("|")[1:] for line in rows.splitlines()}
        assert set(table) == {"surveyd_api", "surveyd_migrate", "surveyd_worker"}, table
        for name, (superuser, bypass, createrole, createdb, login, password) in table.items():
            assert (superuser, bypass, createdb, login, password) == ("f", "f", "f", "t", "t"), f"{name}: {table[name]}"
            assert createrole == ("t" if name == "surveyd_migrate" else "f"), f"{name} CREATEROLE={createrole}"

    @check("surveyd_api may act as survey_app and survey_admin only; surveyd_worker as survey_worker only")
    def _():
        db = "surveyd_compose_fresh"
        # A membership granted by hand is taken back by the next `up`.
        psql(db, "postgres", "-c", "GRANT survey_app TO surveyd_worker", "-c", "GRANT survey_worker TO surveyd_api")
        result = apply_roles(db, **ROLE_PASSWORDS)
        assert result.returncode == 0, result.stderr
        assert can(db, "surveyd_api", "SET ROLE survey_app", "SELECT count(*) FROM schema_migrations")
        assert can(db, "surveyd_api", "SET ROLE survey_admin", "SELECT api_token_company(1)")
        assert not can(db, "surveyd_api", "SET ROLE survey_worker"), "surveyd_api can be survey_worker"
        assert can(db, "surveyd_worker", "SET ROLE survey_worker", "SELECT count(*) FROM schema_migrations")
        for role in ("survey_app", "survey_admin", "survey_reports", "survey_auth"):
            assert not can(db, "surveyd_worker", f"SET ROLE {role}"), f"surveyd_worker can be {role}"
        owner = psql(db, "postgres", "-c", "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class "
                     "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')").stdout.split()
        assert owner == ["surveyd_migrate"], f"tables owned by {owner}"

    @check("a database migrated by the old superuser login is handed to surveyd_migrate, which migrates on")
    def _():
        db = "surveyd_compose_upgrade"
        recreate_database(db)
        result = migrate(db, "postgres")
        assert result.returncode == 0, result.stderr
        result = apply_roles(db, **ROLE_PASSWORDS)
        assert result.returncode == 0, result.stderr
        superuser_owned = psql(db, "postgres", "-c", """
            SELECT count(*) FROM (
                SELECT relowner AS owner FROM pg_class WHERE relnamespace = 'public'::regnamespace
                UNION ALL SELECT proowner FROM pg_proc WHERE pronamespace = 'public'::regnamespace
                UNION ALL SELECT typowner FROM pg_type WHERE typnamespace = 'public'::regnamespace
            ) o JOIN pg_roles r ON r.oid = o.owner WHERE r.rolsuper""").stdout.strip()
        assert superuser_owned == "0", f"{superuser_owned} objects still owned by a superuser"
        # A later migration, by the migrating login: alter tables, replace a function, record it.
        result = psql(db, "surveyd_migrate", "-1",
                      "-c", "ALTER TABLE companies ADD COLUMN compose_test integer",
                      "-c", "ALTER TABLE survey_requests ADD COLUMN compose_test integer",
                      "-c", "ALTER FUNCTION enable_tenant_isolation(regclass) SET work_mem = '4MB'",
                      "-c", "CREATE FUNCTION compose_test() RETURNS integer LANGUAGE sql AS 'SELECT 1'",
                      "-c", "INSERT INTO schema_migrations VALUES (9999, '9999_compose_test', 'x')",
                      check_result=False)
        assert result.returncode == 0, result.stderr
        grants = psql(db, "postgres", "-c",
                      "SELECT has_table_privilege('survey_app', 'companies', 'INSERT'), "
                      "has_table_privilege('survey_worker', 'sms_jobs', 'DELETE'), "
                      "has_table_privilege('survey_worker', 'companies', 'SELECT')").stdout.strip()
        assert grants == "t|t|f", f"privileges after the hand-over: {grants}"


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
