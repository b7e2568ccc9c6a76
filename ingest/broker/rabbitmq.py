"""Project-local RabbitMQ nodes (one, or a three-node cluster on one machine) and the management
API that gives providers and the service their users and permissions.

Why RabbitMQ (docs/scaling.md has the measurements): its MQTT plugin answers a QoS 1 PUBLISH with
PUBACK only after the publisher confirm, and a quorum queue confirms a message only once a
majority of its replicas has written it to its log and synced that to disk. "Acknowledged to the
provider" then means "stored durably", on one node or on a cluster that loses a node.

A node is an ordinary `rabbitmq-server` (Debian package) run from a directory of its own: its
configuration, enabled plugins, Erlang cookie, data and logs all live there, so several nodes
(a test session's, a benchmark's, the cluster's three) run beside a system RabbitMQ without
touching it. Nodes of a cluster find each other by the classic peer-discovery configuration.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
#: The queue every worker consumes, bound to every provider's topic.
QUEUE = "carmileage.readings"
#: MQTT topic `carmileage/v1/providers/+/readings` as the plugin routes it on `amq.topic`.
BINDING_KEY = "carmileage.v1.providers.*.readings"
EXCHANGE = "amq.topic"
#: Tags the broker users this module manages, so that a sync removes only its own.
PROVIDER_TAG = "carmileage-provider"
SERVICE_TAG = "carmileage-service"

_CONF = """\
# Rendered by carmileage (ingest/broker/rabbitmq.py); edits are overwritten.
listeners.tcp.1 = {host}:{amqp_port}
mqtt.listeners.tcp.1 = {mqtt_host}:{mqtt_port}
mqtt.allow_anonymous = false
mqtt.vhost = /
mqtt.exchange = amq.topic
management.tcp.ip = {host}
management.tcp.port = {management_port}
# Users, permissions and queues only: no per-object statistics (they cost CPU on every message).
management_agent.disable_metrics_collector = true
collect_statistics = none
default_user = {admin_user}
default_pass = {admin_password}
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
loopback_users = none
disk_free_limit.absolute = 100MB
log.console = false
log.file.level = info
{cluster}"""

_CLUSTER = """\
# A node cut off from the majority pauses (and rejoins when it can): quorum queues stay
# consistent and a restarted node never runs as a partition of its own.
cluster_partition_handling = pause_minority
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.randomized_startup_delay_range.min = 0
cluster_formation.randomized_startup_delay_range.max = 2
{peers}
"""


def rabbit_hash(password: str, *, salt: bytes | None = None) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt + SHA-256(salt + password))."""
    salt = salt if salt is not None else secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def is_rabbit_hash(hashed: str) -> bool:
    try:
        return len(base64.b64decode(hashed, validate=True)) == 36
    except ValueError:
        return False


def answering(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def secret_in(directory: Path, name: str) -> str:
    """A random secret generated once and kept, owner-readable only, in the directory."""
    path = directory / name
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        _write_private(path, secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


# -- one node -------------------------------------------------------------------------------------


class NodeExited(RuntimeError):
    """The node's process ended while it was starting."""


@dataclass(frozen=True)
class NodeSpec:
    """Where one node lives and listens. `peers` names every node of its cluster (itself too)."""

    name: str
    host: str
    amqp_port: int
    mqtt_port: int
    management_port: int
    dist_port: int
    mqtt_host: str = "127.0.0.1"
    peers: tuple[str, ...] = ()

    @property
    def short(self) -> str:
        return self.name.split("@", 1)[0]


class Node:
    """A RabbitMQ node run from `broker_dir/nodes/<name>/` (see the module docstring)."""

    def __init__(self, broker_dir: Path, spec: NodeSpec) -> None:
        self.broker_dir = broker_dir.resolve()
        self.spec = spec
        self.dir = self.broker_dir / "nodes" / spec.short
        self.proc: subprocess.Popen[bytes] | None = None

    # -- files --

    def render(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "log").mkdir(exist_ok=True)
        cookie = self.broker_dir / ".erlang.cookie"
        if not cookie.exists():
            _write_private(cookie, secrets.token_hex(20))
            cookie.chmod(0o400)
        home_cookie = self.dir / ".erlang.cookie"
        if not home_cookie.exists():
            _write_private(home_cookie, cookie.read_text())
            home_cookie.chmod(0o400)
        peers = "\n".join(f"cluster_formation.classic_config.nodes.{i} = {p}" for i, p in enumerate(self.spec.peers, 1))
        conf = _CONF.format(
            **asdict(self.spec),
            admin_user=ADMIN_USER,
            admin_password=secret_in(self.broker_dir, "admin.password"),
            cluster=_CLUSTER.format(peers=peers) if self.spec.peers else "",
        )
        _write_private(self.dir / "rabbitmq.conf", conf)
        (self.dir / "enabled_plugins").write_text("[rabbitmq_mqtt,rabbitmq_management].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")

    def env(self) -> dict[str, str]:
        d = self.dir
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(d),
            "RABBITMQ_NODENAME": self.spec.name,
            "RABBITMQ_DIST_PORT": str(self.spec.dist_port),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_MNESIA_BASE": str(d / "data"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(d / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    # -- process --

    def pid(self) -> int | None:
        """The node's beam process, if it runs."""
        try:
            pid = int((self.dir / "pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        # The node runs with HOME set to its own directory (beam shows it as `-home DIR`).
        return pid if b"beam" in cmdline and b"-home\0" + bytes(self.dir) + b"\0" in cmdline else None

    def start(self) -> None:
        """Start the node in the background (see `wait_ready`); a running node is left alone."""
        if self.pid() is not None:
            return
        self.render()
        (self.dir / "pid").unlink(missing_ok=True)
        log = (self.dir / "log" / "server.out").open("ab")
        self.proc = subprocess.Popen(
            [str(RABBITMQ_BIN / "rabbitmq-server")],
            env=self.env(),
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # a Ctrl-C of the command that started it does not stop it
        )
        log.close()

    def wait_ready(self, timeout: float = 180) -> None:
        """Until the node runs its applications and its AMQP, MQTT and management ports answer."""
        deadline = time.monotonic() + timeout
        s = self.spec
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise NodeExited(f"RabbitMQ node {s.name} exited: {self.log_tail()}")
            if (
                answering(s.host, s.amqp_port)
                and answering(s.mqtt_host, s.mqtt_port)
                and answering(s.host, s.management_port)
            ):
                try:
                    Admin.for_node(self).get("/api/overview")
                    return
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"RabbitMQ node {s.name} did not start in {timeout:.0f} s: {self.log_tail()}")

    def stop(self, timeout: float = 60) -> bool:
        """Graceful stop (SIGTERM: the node closes its queues' logs); True if it was running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        self._wait_gone(pid, timeout)
        return True

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed that was not already on disk."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, 30)

    def _wait_gone(self, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None:
                self.proc.poll()
            try:
                os.kill(pid, 0)
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    return
            except (OSError, IndexError):
                return
            time.sleep(0.05)
        raise RuntimeError(f"RabbitMQ node {self.spec.name} (pid {pid}) did not stop")

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """`rabbitmqctl` against this node."""
        out = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.spec.name, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
        return out.stdout

    def log_tail(self, chars: int = 3000) -> str:
        text = ""
        for path in sorted((self.dir / "log").glob("*")):
            try:
                text += f"\n--- {path.name}\n" + path.read_text(errors="replace")[-chars:]
            except OSError:
                continue
        return text[-chars * 2 :]


# -- the broker directory: its nodes, URLs and credentials ------------------------------------------

ADMIN_USER = "carmileage-admin"
#: Not a valid provider name (those start with a letter or digit), so no provider can take it.
SERVICE_USER = "_carmileage_service"


@dataclass
class Layout:
    """The nodes a broker directory runs, kept in `broker.json` so every command finds them."""

    nodes: list[NodeSpec] = field(default_factory=list)

    @classmethod
    def load(cls, broker_dir: Path) -> Layout | None:
        try:
            data = json.loads((broker_dir / "broker.json").read_text())
        except (OSError, ValueError):
            return None
        return cls([NodeSpec(**{**n, "peers": tuple(n.get("peers", ()))}) for n in data["nodes"]])

    def save(self, broker_dir: Path) -> None:
        broker_dir.mkdir(parents=True, exist_ok=True)
        _write_private(broker_dir / "broker.json", json.dumps({"nodes": [asdict(n) for n in self.nodes]}, indent=2))

    @classmethod
    def single(
        cls, name: str, *, host: str = "127.0.0.1", amqp_port: int, mqtt_port: int, management_port: int, dist_port: int
    ) -> Layout:
        return cls([NodeSpec(name, host, amqp_port, mqtt_port, management_port, dist_port)])

    @classmethod
    def cluster(cls, prefix: str, size: int = 3, *, host: str = "127.0.0.1", base_port: int | None = None) -> Layout:
        """`size` nodes on this machine: distinct names and ports (consecutive from `base_port`,
        or free ports), each knowing the others."""
        names = tuple(f"{prefix}-{i}@localhost" for i in range(1, size + 1))
        nodes = []
        for i, name in enumerate(names):
            ports = (
                [base_port + 10 * i + k for k in range(4)] if base_port else [free_port(host) for _ in range(4)]
            )
            nodes.append(NodeSpec(name, host, ports[0], ports[1], ports[2], ports[3], peers=names))
        return cls(nodes)

    def amqp_urls(self, user: str, password: str) -> list[str]:
        return [f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{n.host}:{n.amqp_port}/" for n in self.nodes]

    def mqtt_urls(self) -> list[str]:
        return [f"mqtt://{n.mqtt_host}:{n.mqtt_port}" for n in self.nodes]


def service_env(broker_dir: Path, layout: Layout) -> Path:
    """Write `service.env`: the service's AMQP URLs (every node) and the management API's."""
    service = secret_in(broker_dir, "service.password")
    admin = secret_in(broker_dir, "admin.password")
    first = layout.nodes[0]
    lines = [
        f"CARMILEAGE_BROKER_URL={','.join(layout.amqp_urls(SERVICE_USER, service))}",
        f"CARMILEAGE_BROKER_ADMIN_URL=http://{ADMIN_USER}:{quote(admin, safe='')}@{first.host}:{first.management_port}",
        f"CARMILEAGE_BROKER_MQTT_URL={','.join(layout.mqtt_urls())}",
    ]
    path = broker_dir / "service.env"
    _write_private(path, "\n".join(lines) + "\n")
    return path


# -- the management API -----------------------------------------------------------------------------


class Admin:
    """The management HTTP API of one node (any node of a cluster serves the whole cluster)."""

    def __init__(self, base_url: str, user: str, password: str, timeout: float = 10) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.timeout = timeout

    @classmethod
    def from_url(cls, url: str) -> Admin:
        """`http://user:password@host:port` (CARMILEAGE_BROKER_ADMIN_URL)."""
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}"
        return cls(base, unquote(parts.username or ""), unquote(parts.password or ""))

    @classmethod
    def for_node(cls, node: Node) -> Admin:
        s = node.spec
        return cls(f"http://{s.host}:{s.management_port}", ADMIN_USER, secret_in(node.broker_dir, "admin.password"))

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Authorization", self.auth)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    # -- users and permissions --

    def put_user(self, name: str, password_hash: str, tags: str) -> None:
        self.request(
            "PUT",
            f"/api/users/{quote(name, safe='')}",
            {"password_hash": password_hash, "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": tags},
        )

    def delete_user(self, name: str) -> None:
        try:
            self.request("DELETE", f"/api/users/{quote(name, safe='')}")
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise

    def users(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get("/api/users")
        return found

    def set_permissions(self, user: str, configure: str, write: str, read: str) -> None:
        self.request(
            "PUT",
            f"/api/permissions/%2F/{quote(user, safe='')}",
            {"configure": configure, "write": write, "read": read},
        )

    def set_topic_permissions(self, user: str, write: str, read: str) -> None:
        self.request(
            "PUT",
            f"/api/topic-permissions/%2F/{quote(user, safe='')}",
            {"exchange": EXCHANGE, "write": write, "read": read},
        )

    # -- queues --

    def declare_queue(self, name: str, replicas: int | None = None) -> None:
        arguments: dict[str, Any] = {"x-queue-type": "quorum"}
        if replicas:
            arguments["x-quorum-initial-group-size"] = replicas
        self.request("PUT", f"/api/queues/%2F/{quote(name, safe='')}", {"durable": True, "arguments": arguments})

    def bind(self, queue: str, routing_key: str) -> None:
        self.request(
            "POST",
            f"/api/bindings/%2F/e/{quote(EXCHANGE, safe='')}/q/{quote(queue, safe='')}",
            {"routing_key": routing_key},
        )

    def queue(self, name: str) -> dict[str, Any]:
        info: dict[str, Any] = self.get(f"/api/queues/%2F/{quote(name, safe='')}")
        return info

    def purge(self, name: str) -> None:
        self.request("DELETE", f"/api/queues/%2F/{quote(name, safe='')}/contents")

    def running_nodes(self) -> list[str]:
        return sorted(n["name"] for n in self.get("/api/nodes") if n.get("running"))


def provider_topic_key(provider: str) -> str:
    return f"carmileage.v1.providers.{provider}.readings"


def _literal(text: str) -> str:
    """A regular expression matching exactly `text` (RabbitMQ permissions are regexes)."""
    out = "".join("\\" + c if c in ".^$*+?()[]{}|\\" else c for c in text)
    return f"^{out}$"


def ensure_topology(admin: Admin, broker_dir: Path, *, replicas: int | None = None, queue: str = QUEUE) -> None:
    """The durable queue every reading lands in, its binding, and the service's user: may be
    run any number of times. The queue exists before any provider can publish, so no reading is
    ever acknowledged unroutable."""
    admin.declare_queue(queue, replicas)
    admin.bind(queue, BINDING_KEY)
    admin.put_user(SERVICE_USER, rabbit_hash(secret_in(broker_dir, "service.password")), SERVICE_TAG)
    # Consume (and passively declare) the readings queue; publish nowhere.
    admin.set_permissions(SERVICE_USER, _literal(queue), "^$", _literal(queue))


def put_provider(admin: Admin, name: str, password_hash: str) -> None:
    """A provider's broker user: it may publish to its own topic and do nothing else (no queue
    of its own, so no subscription; no read on any topic)."""
    admin.put_user(name, password_hash, PROVIDER_TAG)
    admin.set_permissions(name, "^$", _literal(EXCHANGE), "^$")
    admin.set_topic_permissions(name, _literal(provider_topic_key(name)), "^$")


def sync_providers(admin: Admin, providers: Iterable[tuple[str, str]]) -> tuple[int, list[str]]:
    """Make the broker's provider users exactly `providers` ((name, RabbitMQ hash) of the active
    ones): (how many are now present, names whose stored hash is of another broker's format)."""
    wanted = dict(providers)
    unusable = sorted(n for n, h in wanted.items() if not is_rabbit_hash(h))
    for name in unusable:
        del wanted[name]
    for name, hashed in sorted(wanted.items()):
        put_provider(admin, name, hashed)
    for user in admin.users():
        tags = user.get("tags")
        tag_list = tags if isinstance(tags, list) else str(tags or "").split(",")
        if PROVIDER_TAG in tag_list and user["name"] not in wanted:
            admin.delete_user(user["name"])
    return len(wanted), unusable


def start_nodes(broker_dir: Path, layout: Layout, timeout: float = 180, attempts: int = 3) -> list[Node]:
    """Start every node of the layout that is not running and wait until each is ready.

    A cluster's nodes start together, a second apart: after a whole-cluster stop each waits for
    the others' tables, so one at a time would never finish; and RabbitMQ 3.10 may fail a node
    whose feature flags it synchronised with a peer that was itself starting — such a node is
    started again (as a service manager would), up to `attempts` times.
    """
    nodes = [Node(broker_dir, spec) for spec in layout.nodes]
    return run_nodes(nodes, timeout, attempts, wait_cluster=len(nodes) > 1)


def run_nodes(nodes: Sequence[Node], timeout: float = 180, attempts: int = 3, wait_cluster: bool = False) -> list[Node]:
    """Start these nodes (see `start_nodes`) and wait until each is ready."""
    for i, node in enumerate(nodes):
        if i:
            time.sleep(1)
        node.start()
    for node in nodes:
        for attempt in range(attempts):
            try:
                node.wait_ready(timeout)
                break
            except NodeExited:
                if attempt == attempts - 1:
                    raise
                node.start()
    if wait_cluster:
        admin = Admin.for_node(nodes[0])
        deadline = time.monotonic() + timeout
        want = sorted(n.spec.name for n in nodes)
        while admin.running_nodes() != want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster did not form: {admin.running_nodes()} of {want}")
            time.sleep(0.5)
    return list(nodes)


def nodes_of(broker_dir: Path) -> Sequence[Node]:
    layout = Layout.load(broker_dir)
    return [] if layout is None else [Node(broker_dir, s) for s in layout.nodes]
