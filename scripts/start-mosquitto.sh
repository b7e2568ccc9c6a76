#!/usr/bin/env bash
# The project's own Mosquitto: each provider authenticates (password file) and may publish only
# to its own topic (ACL); sessions and queued messages persist. Started on 127.0.0.1:1884 under
# .var/broker/ unless something answers there; the service's own credentials are generated once
# and written to .var/broker/service.env, which the settings read (CARMILEAGE_MQTT_URL).
# Idempotent; scripts/setup.sh calls it after the migrations, so that the password file holds
# every provider already in the database. See docs/providers.md.
# Usage: scripts/start-mosquitto.sh [--host H] [--port P]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec .venv/bin/carmileage broker start "$@"
