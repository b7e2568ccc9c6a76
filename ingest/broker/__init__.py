"""The project's own Mosquitto instance: configuration, credentials, start and reload.

A broker directory (default `.var/broker/`, apart from `.var/mosquitto/` where scripts/setup.sh
may run an anonymous development broker) holds the rendered `mosquitto.conf`, the ACL, the
password file, the persistence database, the pid file and the service's own credentials
(`service.password`, and `service.env` with `CARMILEAGE_MQTT_URL`, which the settings read). The
database is the source of truth for providers' MQTT credentials: the password file is rewritten
from it (`write_password_file`) and the running broker reloads it on SIGHUP.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

TEMPLATES = Path(__file__).parent
#: Not a valid provider name (those start with a letter or digit), so no provider can take it.
SERVICE_USERNAME = "_carmileage_service"
TOPIC_FILTER = "carmileage/v1/providers/+/readings"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1884
#: mosquitto_passwd's default. Passwords are random 256-bit tokens, so the count does not matter
#: for their strength; a low one keeps each CONNECT cheap.
PBKDF2_ITERATIONS = 101


def topic_for(provider: str) -> str:
    return f"carmileage/v1/providers/{provider}/readings"


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """Mosquitto 2's password-file hash: `$7$<iterations>$<salt>$<PBKDF2-SHA512>` (base64)."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    _, kind, iterations, salt, digest = hashed.split("$")
    if kind != "7":
        return False
    expected = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations))
    return secrets.compare_digest(expected, base64.b64decode(digest))


def new_password() -> str:
    return secrets.token_urlsafe(32)


def _write_private(path: Path, text: str) -> None:
    """Write atomically, readable by the owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def service_password(broker_dir: Path) -> str:
    """The service user's password, generated once and kept in the broker directory."""
    path = broker_dir / "service.password"
    if not path.exists():
        broker_dir.mkdir(parents=True, exist_ok=True)
        _write_private(path, new_password() + "\n")
    return path.read_text().strip()


def service_url(broker_dir: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    return f"mqtt://{SERVICE_USERNAME}:{service_password(broker_dir)}@{host}:{port}"


def render(broker_dir: Path, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> Path:
    """Write mosquitto.conf, the ACL and service.env into the broker directory; return the conf."""
    broker_dir = broker_dir.resolve()
    broker_dir.mkdir(parents=True, exist_ok=True)
    values = {"dir": str(broker_dir), "host": host, "port": str(port), "user": getpass.getuser()}
    conf = (TEMPLATES / "mosquitto.conf").read_text().format(**values)
    _write_private(broker_dir / "mosquitto.conf", conf)
    acl = (TEMPLATES / "acl.conf").read_text().format(service_user=SERVICE_USERNAME)
    _write_private(broker_dir / "acl", acl)
    _write_private(
        broker_dir / "service.env", f"CARMILEAGE_MQTT_URL={service_url(broker_dir, host, port)}\n"
    )
    if not (broker_dir / "passwd").exists():
        write_password_file(broker_dir, ())
    return broker_dir / "mosquitto.conf"


def write_password_file(broker_dir: Path, providers: Iterable[tuple[str, str]]) -> None:
    """The service user plus every (username, hash) given; replaces the file atomically."""
    lines = [f"{SERVICE_USERNAME}:{hash_password(service_password(broker_dir))}"]
    lines += [f"{username}:{hashed}" for username, hashed in sorted(providers)]
    _write_private(broker_dir / "passwd", "\n".join(lines) + "\n")


def running_pid(broker_dir: Path) -> int | None:
    """The broker's pid from its pid file, if that process is alive and is a mosquitto."""
    try:
        pid = int((broker_dir / "mosquitto.pid").read_text().strip())
        if "mosquitto" not in Path(f"/proc/{pid}/comm").read_text():
            return None
        return pid
    except (OSError, ValueError):
        return None


def reload(broker_dir: Path) -> bool:
    """Make the running broker re-read its password and ACL files (SIGHUP); False if not running."""
    pid = running_pid(broker_dir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGHUP)
    return True


def answering(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        raise FileNotFoundError("mosquitto is not installed (Debian package: mosquitto)")
    return found


def start(
    broker_dir: Path, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, timeout: float = 10
) -> bool:
    """Start the broker as a daemon unless something answers on the port; True if started now."""
    conf = render(broker_dir, host=host, port=port)
    if answering(host, port):
        return False
    subprocess.run([mosquitto_binary(), "-c", str(conf), "-d"], check=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answering(host, port):
            return True
        time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not start on {host}:{port}; see {broker_dir / 'mosquitto.log'}")


def stop(broker_dir: Path, timeout: float = 10) -> bool:
    pid = running_pid(broker_dir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running_pid(broker_dir) is not None:
        time.sleep(0.05)
    return True
