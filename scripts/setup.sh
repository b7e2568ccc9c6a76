#!/usr/bin/env bash
# Everything `make run` and `make test` need, installed and started when missing, idempotently:
#   1. Debian packages (PostgreSQL, RabbitMQ, Tesseract with Korean; with --test also Chromium,
#      the fonts the synthetic photo fixtures are rendered with, and Prometheus for promtool);
#   2. the virtualenv .venv with the project installed (re-installed when pyproject.toml changes);
#   3. PostgreSQL: used where it answers at the configured address, otherwise a project-local
#      cluster under .var/ is started (an instance that already runs is never touched);
#   4. for the service (not --test): the database owned by a role of its own (`carmileage_owner`,
#      which runs the migrations) and a least-privilege role the service connects as
#      (`carmileage_service`), their URLs in .var/db/service.env; the migrations; the providers'
#      broker. A project-local PostgreSQL cluster asks for passwords (SCRAM) on every connection;
#      its superuser's is in .var/db/admin.env (the tests' administrator). The providers' broker:
#      the one CARMILEAGE_BROKER_URL names, else the project's own durable RabbitMQ node under
#      .var/broker (`carmileage broker start`; the tests start nodes of their own).
# Usage: scripts/setup.sh [--test]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VAR="$ROOT/.var"
mkdir -p "$VAR"
TEST=0
[[ "${1:-}" == "--test" ]] && TEST=1

say() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# Settings the service reads (environment, then .env, then defaults), for the addresses to check.
if [[ -f "$ROOT/.env" ]]; then set -a; . "$ROOT/.env"; set +a; fi
USER_DATABASE_URL="${CARMILEAGE_DATABASE_URL:-}"  # configured: the user's roles, left as they are
DBSECRETS="$VAR/db"
mkdir -p "$DBSECRETS"; chmod 700 "$DBSECRETS"
DATABASE_URL="${CARMILEAGE_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/carmileage}"
BROKER_URL="${CARMILEAGE_BROKER_URL:-}"  # configured: the operator's broker (cluster), used as it is

# -- 1. Debian packages ------------------------------------------------------------------------
PACKAGES=(postgresql postgresql-client rabbitmq-server tesseract-ocr tesseract-ocr-kor
          libgl1 libglib2.0-0 fonts-dseg fonts-nanum
          ca-certificates)
if (( TEST )); then
    # prometheus: its promtool checks and unit-tests docs/ops/alerts.yml (tests/foundation/test_ops_rules.py)
    PACKAGES+=(chromium fonts-noto-cjk fonts-dejavu-core prometheus)
fi
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    for candidate in python3.11 python3.12 python3.13 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then PYTHON="$candidate"; break; fi
    done
fi
[[ -n "$PYTHON" ]] || { echo "setup: Python 3.11 or newer is required" >&2; exit 1; }
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "setup: $PYTHON is older than 3.11" >&2; exit 1; }
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    PACKAGES+=(python3-venv)
fi
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
    say "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# -- 2. virtualenv -----------------------------------------------------------------------------
if [[ ! -x .venv/bin/python ]]; then
    say "creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
fi
STAMP=".venv/.carmileage-installed"
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
    say "installing the project into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    echo "$WANT" > "$STAMP"
fi

# -- 3. services -------------------------------------------------------------------------------
read -r PG_HOST PG_PORT PG_DB < <(.venv/bin/python - "$DATABASE_URL" <<'EOF'
import sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
print(u.hostname or "127.0.0.1", u.port or 5432, u.path.lstrip("/") or "carmileage")
EOF
)
is_local() { [[ "$1" == "127.0.0.1" || "$1" == "localhost" || "$1" == "::1" ]]; }
answers() { .venv/bin/python -c "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 2)" "$1" "$2" 2>/dev/null; }

# A directory the service user may own: under .var when the user can reach it, otherwise under
# /var/lib/carmileage (a repository under /root is not reachable by the postgres user), linked
# from .var so that everything the project started is found in one place.
service_dir() {  # service_dir NAME USER
    local dir="$VAR/$1" user="$2"
    if [[ $(id -u) -ne 0 ]]; then mkdir -p "$dir"; echo "$dir"; return; fi
    if [[ -L "$dir" ]]; then readlink -f "$dir"; return; fi
    mkdir -p "$dir"; chown "$user" "$dir"
    if runuser -u "$user" -- test -w "$dir" 2>/dev/null; then echo "$dir"; return; fi
    rmdir "$dir"
    local alt="/var/lib/carmileage/$(echo "$ROOT" | sha256sum | cut -c1-12)/$1"
    mkdir -p "$alt"; chown "$user" "$alt"; chmod 700 "$alt"
    ln -sfn "$alt" "$dir"
    echo "$alt"
}
as_user() {  # as_user USER CMD...: run as the service user when we are root
    local user="$1"; shift
    if [[ $(id -u) -eq 0 ]]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

# The project-local cluster's superuser password, generated once into .var/db (with the URL the
# tests administer databases with, admin.env) and copied to FILE for initdb (postgres may read it).
superuser_password_file() {  # superuser_password_file FILE
    if [[ ! -s "$DBSECRETS/superuser.pw" ]]; then
        (umask 077; .venv/bin/python -c "import secrets; print(secrets.token_urlsafe(24))" > "$DBSECRETS/superuser.pw")
    fi
    (umask 077; printf 'CARMILEAGE_TEST_DATABASE_URL=postgresql://postgres:%s@%s:%s/postgres\n' \
        "$(cat "$DBSECRETS/superuser.pw")" "$PG_HOST" "$PG_PORT" > "$DBSECRETS/admin.env")
    install -m 600 "$DBSECRETS/superuser.pw" "$1"
    if [[ $(id -u) -eq 0 ]]; then chown postgres "$1"; fi
}

# A project-local cluster made by an earlier set-up trusted every local connection: give its
# superuser a password and ask for passwords from now on.
secure_local_cluster() {  # secure_local_cluster PGDATA
    local data="$1"
    grep -Eq '^[[:space:]]*(local|host)[^#]*[[:space:]]trust([[:space:]]|$)' "$data/pg_hba.conf" || return 0
    say "the project-local PostgreSQL trusted every connection: switching it to passwords (SCRAM)"
    superuser_password_file "$DBSECRETS/superuser.pw.tmp"
    .venv/bin/python scripts/db_roles.py superuser-password \
        --admin-url "postgresql://postgres@$PG_HOST:$PG_PORT/postgres" --password-file "$DBSECRETS/superuser.pw.tmp"
    rm -f "$DBSECRETS/superuser.pw.tmp"
    as_user postgres sed -i -E 's/([[:space:]])trust([[:space:]]|$)/\1scram-sha-256\2/' "$data/pg_hba.conf"
    as_user postgres "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/pg_ctl" -D "$data" reload >/dev/null
}

if answers "$PG_HOST" "$PG_PORT"; then
    say "PostgreSQL answers at $PG_HOST:$PG_PORT"
elif is_local "$PG_HOST"; then
    PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    PGHOME="$(service_dir postgres postgres)"
    PGDATA="$PGHOME/data"
    as_user postgres mkdir -p "$PGHOME/run"
    if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
        say "creating a project-local PostgreSQL cluster in $PGDATA (passwords: SCRAM)"
        superuser_password_file "$PGHOME/initdb.pw"
        as_user postgres "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth-local=scram-sha-256 \
            --auth-host=scram-sha-256 --pwfile="$PGHOME/initdb.pw" -E UTF8 --locale=C.UTF-8 >/dev/null
        rm -f "$PGHOME/initdb.pw"
    fi
    say "starting the project-local PostgreSQL on $PG_HOST:$PG_PORT"
    as_user postgres "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGHOME/postgres.log" -w -t 60 \
        -o "-p $PG_PORT -c listen_addresses=$PG_HOST -k $PGHOME/run" start >/dev/null
else
    echo "setup: PostgreSQL does not answer at $PG_HOST:$PG_PORT (CARMILEAGE_DATABASE_URL)" >&2
    exit 1
fi
# The project-local cluster is the one answering when its postmaster runs on our port.
LOCAL_PGDATA="$(readlink -f "$VAR/postgres" 2>/dev/null || echo "$VAR/postgres")/data"
if [[ -f "$LOCAL_PGDATA/postmaster.pid" && "$(sed -n 4p "$LOCAL_PGDATA/postmaster.pid")" == "$PG_PORT" ]] \
        && kill -0 "$(sed -n 1p "$LOCAL_PGDATA/postmaster.pid")" 2>/dev/null; then
    secure_local_cluster "$LOCAL_PGDATA"
fi

# -- 4. database, migrations and the providers' broker (for the service, not for the tests: each
#       test run makes databases and brokers of its own) -----------------------------------------
if (( ! TEST )); then
    if [[ -n "$USER_DATABASE_URL" ]]; then
        say "CARMILEAGE_DATABASE_URL is configured: its roles are left as they are (README, Configuration)"
    else
        ADMIN_URL="postgresql://postgres@$PG_HOST:$PG_PORT/postgres"
        if [[ -f "$DBSECRETS/admin.env" ]]; then
            ADMIN_URL="$(sed -n 's/^CARMILEAGE_TEST_DATABASE_URL=//p' "$DBSECRETS/admin.env")"
        fi
        say "database $PG_DB: owned by carmileage_owner; the service connects as carmileage_service"
        .venv/bin/python scripts/db_roles.py service-roles --admin-url "$ADMIN_URL" --database "$PG_DB" \
            --host "$PG_HOST" --port "$PG_PORT" --env-file "$DBSECRETS/service.env"
    fi
    .venv/bin/carmileage migrate >&2
    if [[ -n "$BROKER_URL" ]]; then
        say "CARMILEAGE_BROKER_URL is configured: the service consumes from that broker (docs/scaling.md)"
    else
        # The project's durable RabbitMQ node for providers (users, permissions, the readings queue).
        .venv/bin/carmileage broker start >&2
    fi
fi
say "ready"
