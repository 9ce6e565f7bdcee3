# shellcheck shell=bash
# Shared helpers for scripts/test and scripts/dev: system packages, the Swift
# toolchain, and a private PostgreSQL cluster per purpose ("test", "dev").
#
# Source it from bash; it is safe under `set -euo pipefail`:
#   source "$(dirname "$0")/lib/database.sh"
#
# The private cluster listens only on a Unix socket in a directory of its own,
# with trust authentication, so it never clashes with a system PostgreSQL or
# with another checkout, and needs no password.

# The repository root: two levels above this file (scripts/lib/database.sh).
SURVEYD_PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"

# Fixed port: the socket directory is private, so 5432 never clashes; it only
# forms the socket's file name (.s.PGSQL.5432).
SURVEYD_PG_PORT=5432

_surveyd_log() { printf '%s\n' "$*" >&2; }
_surveyd_die() { printf 'error: %s\n' "$*" >&2; return 1; }

_surveyd_is_root() { [[ "$(id -u)" == 0 ]]; }

# Runs a command as root: directly when we are root, through sudo otherwise.
_surveyd_as_root() {
    if _surveyd_is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        _surveyd_die "need root (or sudo) to run: $*"
    fi
}

# ---------------------------------------------------------------------------
# System packages
# ---------------------------------------------------------------------------

_SURVEYD_APT_UPDATED=""

_surveyd_dpkg_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == installed ]]
}

# Newest PostgreSQL server bin directory (Debian layout), or the directory of
# an initdb on PATH (other layouts); empty when there is none.
surveyd_postgres_bin_dir() {
    local dir
    dir="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    if [[ -n "$dir" && -x "$dir/initdb" ]]; then
        printf '%s\n' "$dir"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

# Runs an apt-get command as root, showing its output only when it fails.
_surveyd_quiet_as_root() {
    local log status=0
    log="$(mktemp)"
    _surveyd_as_root env DEBIAN_FRONTEND=noninteractive "$@" >"$log" 2>&1 </dev/null || status=$?
    if ((status != 0)); then
        cat "$log" >&2
        _surveyd_log "error: '$*' failed (exit $status)"
    fi
    rm -f "$log"
    return "$status"
}

# Installs what is missing of libpq-dev, pkg-config and the PostgreSQL server.
# Prints nothing when everything is already there.
ensure_system_packages() {
    local missing=()
    if command -v dpkg-query >/dev/null 2>&1; then
        _surveyd_dpkg_installed libpq-dev || missing+=(libpq-dev)
    elif ! pkg-config --exists libpq 2>/dev/null; then
        missing+=(libpq-dev)
    fi
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    [[ -n "$(surveyd_postgres_bin_dir)" ]] || missing+=(postgresql)
    ((${#missing[@]} == 0)) && return 0

    if ! command -v apt-get >/dev/null 2>&1; then
        _surveyd_die "missing ${missing[*]} and no apt-get here; install them by hand"
        return 1
    fi
    _surveyd_log "Installing ${missing[*]} (apt-get)..."
    # The Debian package would create and start a system cluster ("main") that
    # this project never uses (it runs private clusters); skip it, but only
    # when we are the ones installing PostgreSQL.
    if [[ " ${missing[*]} " == *" postgresql "* && ! -e /etc/postgresql-common/createcluster.d/surveyd.conf ]]; then
        _surveyd_as_root mkdir -p /etc/postgresql-common/createcluster.d
        printf '# Written by surveyd scripts/lib/database.sh: no system cluster needed.\ncreate_main_cluster = false\n' |
            _surveyd_as_root tee /etc/postgresql-common/createcluster.d/surveyd.conf >/dev/null
    fi
    if [[ -z "$_SURVEYD_APT_UPDATED" ]]; then
        _surveyd_quiet_as_root apt-get update || return 1
        _SURVEYD_APT_UPDATED=1
    fi
    _surveyd_quiet_as_root apt-get install -y --no-install-recommends "${missing[@]}" || return 1
    [[ -n "$(surveyd_postgres_bin_dir)" ]] || _surveyd_die "PostgreSQL server binaries still not found after install"
}

# Installs the named Debian packages (apt-get), for tools only some scripts need
# (python3-venv for schemathesis, wrk for the HTTP benchmark).
ensure_apt_packages() {
    command -v apt-get >/dev/null 2>&1 || { _surveyd_die "missing $*; install it by hand"; return 1; }
    if [[ -z "$_SURVEYD_APT_UPDATED" ]]; then
        _surveyd_quiet_as_root apt-get update || return 1
        _SURVEYD_APT_UPDATED=1
    fi
    _surveyd_log "Installing $* (apt-get)..."
    _surveyd_quiet_as_root apt-get install -y --no-install-recommends "$@"
}

# The project's virtualenv (.venv) with what its Python helpers import: the Standard
# Webhooks reference library (the tests' webhook receiver) and aiosmtpd (the SMTP sink of
# the tests, the benchmarks and scripts/dev's local mail catcher). Pinned versions.
ensure_project_python() {
    local standardwebhooks=1.3.0 aiosmtpd=1.4.6
    if ! "$SURVEYD_PROJECT_ROOT/.venv/bin/python" -c "import standardwebhooks, aiosmtpd" 2>/dev/null; then
        python3 -m venv "$SURVEYD_PROJECT_ROOT/.venv" 2>/dev/null \
            || { ensure_apt_packages python3-venv && python3 -m venv "$SURVEYD_PROJECT_ROOT/.venv"; } || return 1
        "$SURVEYD_PROJECT_ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check \
            "standardwebhooks==$standardwebhooks" "aiosmtpd==$aiosmtpd" || return 1
    fi
}

# Puts the Swift toolchain on PATH when it is installed but not on PATH.
ensure_swift_toolchain() {
    command -v swift >/dev/null 2>&1 && return 0
    if [[ -x /opt/swift/usr/bin/swift ]]; then
        export PATH="/opt/swift/usr/bin:$PATH"
    else
        _surveyd_die "swift not found (neither on PATH nor in /opt/swift/usr/bin)"
    fi
}

# ---------------------------------------------------------------------------
# Private PostgreSQL cluster
# ---------------------------------------------------------------------------

# The OS user that owns and runs the private clusters.
_surveyd_pg_owner() {
    if _surveyd_is_root; then echo postgres; else id -un; fi
}

# Runs a PostgreSQL server tool as the cluster's owner: the `postgres` OS user
# when we are root (the server refuses to run as root), ourselves otherwise.
# From / so that an unreadable current directory causes no warnings.
_surveyd_pg_as_owner() {
    if _surveyd_is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

# Percent-encodes everything but RFC 3986 unreserved characters (byte-wise).
_surveyd_urlencode() {
    local LC_ALL=C s="$1" out="" c i
    for ((i = 0; i < ${#s}; i++)); do
        c="${s:i:1}"
        case "$c" in
            [A-Za-z0-9._~-]) out+="$c" ;;
            *) out+="$(printf '%%%02X' "'$c")" ;;
        esac
    done
    printf '%s\n' "$out"
}

_surveyd_short_hash() {
    if command -v sha256sum >/dev/null 2>&1; then
        printf '%s' "$1" | sha256sum | cut -c1-10
    else
        printf '%s' "$1" | cksum | cut -d' ' -f1
    fi
}

# The two places a cluster NAME may live: in the project, or under /tmp when
# the project is not usable (see _surveyd_pg_choose_dir).
_surveyd_pg_project_dir() { printf '%s\n' "$SURVEYD_PROJECT_ROOT/.local/pg/$1"; }
_surveyd_pg_tmp_dir() {
    printf '/tmp/surveyd-pg-%s-%s\n' "$(_surveyd_short_hash "$SURVEYD_PROJECT_ROOT")" "$1"
}

# Sets the PRIVATE_PG_* variables for a base directory.
_surveyd_pg_set_paths() {
    PRIVATE_PG_DIR="$1"
    PRIVATE_PG_DATA="$1/data"
    PRIVATE_PG_SOCKET_DIR="$1/run"
    PRIVATE_PG_LOG="$1/log/postgresql.log"
}

# Creates BASE/{data,run,log}, owned by the cluster owner.
_surveyd_pg_make_dirs() {
    local base="$1"
    mkdir -p "$base/data" "$base/run" "$base/log"
    chmod 700 "$base/data"
    if _surveyd_is_root; then
        chown -R postgres: "$base"
    fi
}

# True when the cluster owner can reach and write BASE (every parent must be
# traversable: a `mktemp -d` parent of mode 700 owned by root is not).
_surveyd_pg_dir_usable() {
    local base="$1"
    _surveyd_pg_as_owner test -w "$base/data" -a -w "$base/run" -a -w "$base/log" 2>/dev/null
}

# Picks the base directory for cluster NAME and sets PRIVATE_PG_* for it.
# Prefers <project>/.local/pg/NAME; falls back to /tmp when the postgres user
# cannot reach the project, or when the socket path would be too long (Unix
# socket paths are limited to 107 bytes).
_surveyd_pg_choose_dir() {
    local name="$1" base reason=""
    base="$(_surveyd_pg_project_dir "$name")"
    local socket_bytes
    socket_bytes="$(printf '%s' "$base/run/.s.PGSQL.$SURVEYD_PG_PORT" | wc -c)"
    if ((socket_bytes > 100)); then
        reason="its socket path would be too long ($socket_bytes bytes)"
    else
        _surveyd_pg_make_dirs "$base"
        if ! _surveyd_pg_dir_usable "$base"; then
            reason="the $(_surveyd_pg_owner) user cannot reach $SURVEYD_PROJECT_ROOT"
            # Remove only the empty directories just made; keep any data.
            rmdir "$base/data" "$base/run" "$base/log" "$base" 2>/dev/null || true
        fi
    fi
    if [[ -n "$reason" ]]; then
        base="$(_surveyd_pg_tmp_dir "$name")"
        _surveyd_log "note: private PostgreSQL '$name' lives in $base: $reason"
        # Refuse a /tmp path that is a symlink or belongs to another user.
        if [[ -L "$base" ]]; then
            _surveyd_die "$base is a symlink; refusing to use it"
            return 1
        fi
        if [[ -e "$base" ]]; then
            local owner want
            owner="$(stat -c %U "$base")"
            want="$(_surveyd_pg_owner)"
            if [[ "$owner" != "$want" && "$owner" != root ]]; then
                _surveyd_die "$base belongs to $owner, not $want; refusing to use it"
                return 1
            fi
        fi
        (umask 077 && mkdir -p "$base")
        _surveyd_pg_make_dirs "$base"
        _surveyd_pg_dir_usable "$base" || { _surveyd_die "cannot use $base either"; return 1; }
    fi
    _surveyd_pg_set_paths "$base"
}

# The bin dir matching the data directory's major version when it is installed
# (an existing cluster must be run by its own version), else the newest.
_surveyd_pg_bin_for_data() {
    local data="$1" version
    if [[ -f "$data/PG_VERSION" ]]; then
        version="$(cat "$data/PG_VERSION")"
        if [[ -x "/usr/lib/postgresql/$version/bin/pg_ctl" ]]; then
            printf '%s\n' "/usr/lib/postgresql/$version/bin"
            return 0
        fi
    fi
    surveyd_postgres_bin_dir
}

_surveyd_pg_isready() {
    "$PRIVATE_PG_BIN/pg_isready" -q -h "$PRIVATE_PG_SOCKET_DIR" -p "$SURVEYD_PG_PORT" -U postgres -d postgres
}

# True when postmaster.pid names a live postgres process serving this data
# directory (a pid reused by an unrelated process after a crash does not count).
_surveyd_pg_pid_alive() {
    local pidfile="$PRIVATE_PG_DATA/postmaster.pid" pid
    [[ -f "$pidfile" ]] || return 1
    pid="$(head -1 "$pidfile" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || [[ -d "/proc/$pid" ]] || return 1
    if [[ -r "/proc/$pid/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$PRIVATE_PG_DATA"
    fi
}

_surveyd_pg_fail_with_log() {
    _surveyd_log "error: $1"
    if [[ -f "$PRIVATE_PG_LOG" ]]; then
        _surveyd_log "--- last lines of $PRIVATE_PG_LOG ---"
        tail -n 30 "$PRIVATE_PG_LOG" >&2 || true
    fi
    return 1
}

# Rewrites the settings we own in surveyd.conf (included from postgresql.conf),
# so a changed socket directory or setting applies at the next start.
_surveyd_pg_write_conf() {
    local conf="$PRIVATE_PG_DATA/surveyd.conf" socket_dir="${PRIVATE_PG_SOCKET_DIR//\'/\'\'}"
    # Throwaway clusters (tests, local runs) skip durability for speed; benchmarks set
    # SURVEYD_PG_DURABLE=1 so commits cost what they cost in production.
    local durable=off
    if [[ "${SURVEYD_PG_DURABLE:-0}" == 1 ]]; then durable=on; fi
    _surveyd_pg_as_owner tee "$conf" >/dev/null <<EOF
# Written by scripts/lib/database.sh on every start; edits are lost.
listen_addresses = ''
port = $SURVEYD_PG_PORT
unix_socket_directories = '$socket_dir'
# Owner (and root) only: authentication is trust.
unix_socket_permissions = 0700
fsync = $durable
synchronous_commit = $durable
full_page_writes = $durable
# The test suite runs its suites at once, many with a database, pools and workers of
# their own: room for all of them.
max_connections = 500
shared_buffers = 256MB
EOF
    if ! grep -q "^include_if_exists = 'surveyd.conf'" "$PRIVATE_PG_DATA/postgresql.conf"; then
        printf "\ninclude_if_exists = 'surveyd.conf'\n" |
            _surveyd_pg_as_owner tee -a "$PRIVATE_PG_DATA/postgresql.conf" >/dev/null
    fi
}

_surveyd_pg_initdb() {
    local locale=C
    # C.UTF-8 ships with glibc on Debian; fall back to C where it is missing.
    if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then locale=C.UTF-8; fi
    _surveyd_log "Creating private PostgreSQL cluster in $PRIVATE_PG_DATA..."
    _surveyd_pg_as_owner "$PRIVATE_PG_BIN/initdb" -D "$PRIVATE_PG_DATA" \
        --auth=trust --username=postgres --encoding=UTF8 --locale="$locale" \
        >"$PRIVATE_PG_DIR/log/initdb.log" 2>&1 || {
        cat "$PRIVATE_PG_DIR/log/initdb.log" >&2
        _surveyd_die "initdb failed"
        return 1
    }
}

# pg_ctl start, in a subshell that first closes every inherited descriptor
# above stderr: the server outlives the script and must not hold, say, a CI
# runner's pipe open (pg_ctl itself sends the server's output to the log).
_surveyd_pg_start_server() {
    (
        local fd
        for fd in /proc/self/fd/*; do
            fd="${fd##*/}"
            if [[ "$fd" =~ ^[0-9]+$ ]] && ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        _surveyd_pg_as_owner "$PRIVATE_PG_BIN/pg_ctl" -D "$PRIVATE_PG_DATA" -l "$PRIVATE_PG_LOG" -w -t 30 start
    )
}

# Starts (or reuses) the private cluster NAME and exports PGHOST, PGPORT and
# PGUSER for it. Idempotent; recovers from a stale postmaster.pid.
start_private_postgres() {
    local name="${1:?usage: start_private_postgres NAME}"
    if _surveyd_is_root && ! id postgres >/dev/null 2>&1; then
        _surveyd_die "running as root but there is no 'postgres' OS user to run the server"
        return 1
    fi
    _surveyd_pg_choose_dir "$name" || return 1
    PRIVATE_PG_BIN="$(_surveyd_pg_bin_for_data "$PRIVATE_PG_DATA")"
    [[ -n "$PRIVATE_PG_BIN" ]] || { _surveyd_die "PostgreSQL server binaries not found (run ensure_system_packages)"; return 1; }

    if ! _surveyd_pg_isready; then
        if _surveyd_pg_pid_alive; then
            # Our postmaster is still starting up (or recovering): wait below.
            :
        else
            # Leftovers of a killed server; their pid may now belong to some
            # other process, which would make the new postmaster refuse to start.
            rm -f "$PRIVATE_PG_DATA/postmaster.pid" \
                "$PRIVATE_PG_SOCKET_DIR/.s.PGSQL.$SURVEYD_PG_PORT" \
                "$PRIVATE_PG_SOCKET_DIR/.s.PGSQL.$SURVEYD_PG_PORT.lock"
            [[ -f "$PRIVATE_PG_DATA/PG_VERSION" ]] || _surveyd_pg_initdb || return 1
            _surveyd_pg_write_conf
            _surveyd_pg_start_server >/dev/null 2>&1 </dev/null ||
                _surveyd_pg_fail_with_log "could not start private PostgreSQL '$name'" || return 1
        fi
        local waited=0
        until _surveyd_pg_isready; do
            ((waited++ < 60)) || { _surveyd_pg_fail_with_log "private PostgreSQL '$name' did not answer within 30 s"; return 1; }
            sleep 0.5
        done
    fi

    export PGHOST="$PRIVATE_PG_SOCKET_DIR" PGPORT="$SURVEYD_PG_PORT" PGUSER=postgres
    export PRIVATE_PG_DIR PRIVATE_PG_DATA PRIVATE_PG_SOCKET_DIR PRIVATE_PG_LOG PRIVATE_PG_BIN
}

# Stops the private cluster NAME wherever it lives (project or /tmp fallback).
stop_private_postgres() {
    local name="${1:?usage: stop_private_postgres NAME}" base bin
    for base in "$(_surveyd_pg_project_dir "$name")" "$(_surveyd_pg_tmp_dir "$name")"; do
        [[ -f "$base/data/postmaster.pid" ]] || continue
        bin="$(_surveyd_pg_bin_for_data "$base/data")"
        _surveyd_pg_as_owner "$bin/pg_ctl" -D "$base/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
            _surveyd_log "note: pg_ctl stop for $base/data failed (server not running?)"
    done
}

# libpq URI for DBNAME as superuser postgres over the private socket; the
# socket directory goes in the host= parameter, percent-encoded.
private_database_url() {
    local db="${1:?usage: private_database_url DBNAME}"
    [[ -n "${PRIVATE_PG_SOCKET_DIR:-}" ]] || { _surveyd_die "start_private_postgres first"; return 1; }
    printf 'postgresql://postgres@/%s?host=%s&port=%s\n' \
        "$(_surveyd_urlencode "$db")" "$(_surveyd_urlencode "$PRIVATE_PG_SOCKET_DIR")" "$SURVEYD_PG_PORT"
}

# psql as postgres to the private cluster's maintenance database; SQL on stdin.
_surveyd_private_psql() {
    [[ -n "${PRIVATE_PG_SOCKET_DIR:-}" ]] || { _surveyd_die "start_private_postgres first"; return 1; }
    "$PRIVATE_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
        -h "$PRIVATE_PG_SOCKET_DIR" -p "$SURVEYD_PG_PORT" -U postgres -d postgres "$@"
}

create_database_if_missing() {
    local db="${1:?usage: create_database_if_missing DBNAME}"
    _surveyd_private_psql -v db="$db" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
}

# Drops DBNAME (disconnecting any session still on it) and creates it empty.
recreate_database() {
    local db="${1:?usage: recreate_database DBNAME}"
    _surveyd_private_psql -v db="$db" <<'SQL'
SET client_min_messages = warning;
DROP DATABASE IF EXISTS :"db" WITH (FORCE);
CREATE DATABASE :"db";
SQL
}

# Starts (or reuses) "PRIMARY-replica": a hot standby of the private cluster PRIMARY
# (started first), streaming from it over its socket, and prints two libpq URLs to their
# `postgres` databases on one line: PRIMARY's, then the standby's. Copied afresh (pg_basebackup) when missing, or when PRIMARY is not the
# cluster it was copied from (a recreated one). In a subshell: the caller's PRIVATE_PG_* and
# PG* variables stay those of its own cluster.
start_private_replica_postgres() (
    primary="${1:?usage: start_private_replica_postgres PRIMARY}"
    start_private_postgres "$primary" >/dev/null || exit 1
    primary_socket="$PRIVATE_PG_SOCKET_DIR"
    primary_url="$(private_database_url postgres)"
    bin="$PRIVATE_PG_BIN"
    system_id() { _surveyd_pg_as_owner "$bin/pg_controldata" -D "$1" 2>/dev/null | sed -n 's/^Database system identifier: *//p'; }
    primary_id="$(system_id "$PRIVATE_PG_DATA")"
    _surveyd_pg_choose_dir "$primary-replica" || exit 1
    PRIVATE_PG_BIN="$bin"
    if [[ "$(system_id "$PRIVATE_PG_DATA")" != "$primary_id" ]] || ! _surveyd_pg_as_owner test -f "$PRIVATE_PG_DATA/standby.signal"; then
        if _surveyd_pg_pid_alive; then
            _surveyd_pg_as_owner "$bin/pg_ctl" -D "$PRIVATE_PG_DATA" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
        fi
        _surveyd_pg_as_owner find "$PRIVATE_PG_DATA" -mindepth 1 -delete
        _surveyd_log "Copying private PostgreSQL '$primary' into a standby in $PRIVATE_PG_DATA..."
        _surveyd_pg_as_owner "$bin/pg_basebackup" -D "$PRIVATE_PG_DATA" -R -X stream -c fast \
            -h "$primary_socket" -p "$SURVEYD_PG_PORT" -U postgres >"$PRIVATE_PG_DIR/log/basebackup.log" 2>&1 ||
            _surveyd_pg_fail_with_log "pg_basebackup of '$primary' failed" || exit 1
    fi
    if ! _surveyd_pg_isready; then
        rm -f "$PRIVATE_PG_DATA/postmaster.pid" "$PRIVATE_PG_SOCKET_DIR/.s.PGSQL.$SURVEYD_PG_PORT" \
            "$PRIVATE_PG_SOCKET_DIR/.s.PGSQL.$SURVEYD_PG_PORT.lock"
        _surveyd_pg_write_conf
        _surveyd_pg_start_server >/dev/null 2>&1 </dev/null ||
            _surveyd_pg_fail_with_log "could not start the standby of '$primary'" || exit 1
        waited=0
        until _surveyd_pg_isready; do
            ((waited++ < 60)) || { _surveyd_pg_fail_with_log "the standby of '$primary' did not answer within 30 s"; exit 1; }
            sleep 0.5
        done
    fi
    printf '%s %s\n' "$primary_url" "$(private_database_url postgres)"
)

# Starts (or reuses) the private cluster "tls", which also accepts TLS connections on
# 127.0.0.1 with a self-signed certificate made on its first start, and prints a libpq URL
# to it with sslmode=require. The TCP port is SURVEYD_TLS_PG_PORT, else one from 40000 to
# 59999 derived from the project's path, so two checkouts on one machine do not collide.
# In a subshell: the caller's PRIVATE_PG_* and PG* variables stay those of its own cluster.
start_private_tls_postgres() (
    SURVEYD_PG_PORT="${SURVEYD_TLS_PG_PORT:-$((40000 + $(printf '%s' "$SURVEYD_PROJECT_ROOT" | cksum | cut -d' ' -f1) % 20000))}"
    start_private_postgres tls >/dev/null || exit 1
    data="$PRIVATE_PG_DATA"
    command -v openssl >/dev/null 2>&1 || ensure_apt_packages openssl >&2 || exit 1
    if ! _surveyd_pg_as_owner test -s "$data/server.key"; then
        _surveyd_pg_as_owner openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localhost" \
            -keyout "$data/server.key" -out "$data/server.crt" >/dev/null 2>&1 || _surveyd_die "openssl could not make a certificate" || exit 1
        _surveyd_pg_as_owner chmod 600 "$data/server.key"
    fi
    _surveyd_pg_as_owner tee "$data/surveyd-tls.conf" >/dev/null <<CONF
# Written by scripts/lib/database.sh (start_private_tls_postgres); edits are lost.
listen_addresses = '127.0.0.1'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
CONF
    if ! grep -q "^include_if_exists = 'surveyd-tls.conf'" "$data/postgresql.conf"; then
        printf "\ninclude_if_exists = 'surveyd-tls.conf'\n" | _surveyd_pg_as_owner tee -a "$data/postgresql.conf" >/dev/null
    fi
    if ! "$PRIVATE_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$SURVEYD_PG_PORT" >/dev/null 2>&1; then
        _surveyd_pg_as_owner "$PRIVATE_PG_BIN/pg_ctl" -D "$data" -l "$PRIVATE_PG_LOG" -w -t 30 restart >/dev/null 2>&1 ||
            _surveyd_pg_fail_with_log "could not restart the private PostgreSQL 'tls' with TLS" || exit 1
    fi
    printf 'postgresql://postgres@127.0.0.1:%s/postgres?sslmode=require\n' "$SURVEYD_PG_PORT"
)
