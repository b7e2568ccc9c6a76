#!/usr/bin/env bash
# Everything `make run` and `make test` need, installed and started when missing, idempotently:
#   1. Debian packages (PostgreSQL, Mosquitto, Tesseract with Korean; with --test also Chromium
#      and the fonts the synthetic photo fixtures are rendered with);
#   2. the virtualenv .venv with the project installed (re-installed when pyproject.toml changes);
#   3. PostgreSQL and Mosquitto: used where they answer at the configured addresses, otherwise a
#      project-local cluster / broker under .var/ is started (an instance that already runs is
#      never touched);
#   4. for the service (not --test): the database, its migrations and the providers' broker.
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
DATABASE_URL="${CARMILEAGE_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/carmileage}"
MQTT_URL="${CARMILEAGE_MQTT_URL:-mqtt://127.0.0.1:1883}"

# -- 1. Debian packages ------------------------------------------------------------------------
PACKAGES=(postgresql postgresql-client mosquitto mosquitto-clients tesseract-ocr tesseract-ocr-kor
          libgl1 libglib2.0-0 fonts-dseg fonts-nanum
          ca-certificates)
if (( TEST )); then
    PACKAGES+=(chromium fonts-noto-cjk fonts-dejavu-core)
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
read -r PG_HOST PG_PORT < <(.venv/bin/python - "$DATABASE_URL" <<'EOF'
import sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
print(u.hostname or "127.0.0.1", u.port or 5432)
EOF
)
read -r MQ_HOST MQ_PORT < <(.venv/bin/python - "$MQTT_URL" <<'EOF'
import sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
print(u.hostname or "127.0.0.1", u.port or 1883)
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

if answers "$PG_HOST" "$PG_PORT"; then
    say "PostgreSQL answers at $PG_HOST:$PG_PORT"
elif is_local "$PG_HOST"; then
    PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    PGHOME="$(service_dir postgres postgres)"
    PGDATA="$PGHOME/data"
    as_user postgres mkdir -p "$PGHOME/run"
    if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
        say "creating a project-local PostgreSQL cluster in $PGDATA"
        as_user postgres "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    say "starting the project-local PostgreSQL on $PG_HOST:$PG_PORT"
    as_user postgres "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGHOME/postgres.log" -w -t 60 \
        -o "-p $PG_PORT -c listen_addresses=$PG_HOST -k $PGHOME/run" start >/dev/null
else
    echo "setup: PostgreSQL does not answer at $PG_HOST:$PG_PORT (CARMILEAGE_DATABASE_URL)" >&2
    exit 1
fi

if answers "$MQ_HOST" "$MQ_PORT"; then
    say "Mosquitto answers at $MQ_HOST:$MQ_PORT"
elif is_local "$MQ_HOST"; then
    MQDIR="$(service_dir mosquitto mosquitto)"
    cat > "$MQDIR/mosquitto.conf" <<EOF
# Written by scripts/setup.sh: a project-local broker for development.
listener $MQ_PORT $MQ_HOST
allow_anonymous true
persistence true
persistence_location $MQDIR/
pid_file $MQDIR/mosquitto.pid
log_dest file $MQDIR/mosquitto.log
max_inflight_messages 1000
max_queued_messages 1000000
EOF
    [[ $(id -u) -eq 0 ]] && chown mosquitto "$MQDIR/mosquitto.conf"
    say "starting a project-local Mosquitto on $MQ_HOST:$MQ_PORT"
    mosquitto -c "$MQDIR/mosquitto.conf" -d
    for _ in $(seq 50); do answers "$MQ_HOST" "$MQ_PORT" && break; sleep 0.1; done
    answers "$MQ_HOST" "$MQ_PORT" || { echo "setup: Mosquitto did not start; see $MQDIR/mosquitto.log" >&2; exit 1; }
else
    echo "setup: no MQTT broker answers at $MQ_HOST:$MQ_PORT (CARMILEAGE_MQTT_URL)" >&2
    exit 1
fi

# -- 4. database, migrations and the providers' broker (for the service, not for the tests: each
#       test run makes databases and brokers of its own) -----------------------------------------
if (( ! TEST )); then
    .venv/bin/carmileage migrate >&2
    scripts/start-mosquitto.sh >&2  # the project's broker for providers (auth + ACL), docs/providers.md
fi
say "ready"
