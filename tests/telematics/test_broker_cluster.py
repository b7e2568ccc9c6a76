"""Issue 14 on a three-node RabbitMQ cluster run by the project's own code: the node a provider
publishes to killed mid-stream (the provider goes on on another node), and the whole cluster
restarted; every acknowledged reading is stored exactly once, and nothing published after the
restart is dropped for want of a consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import LiveService
from tests.telematics.conftest import ProjectBroker
from tests.telematics.test_faults import (
    Stream,
    logs_on_failure,
    mqtt_env,
    payloads_for,
    reach,
    setup_provider,
    stored_exactly_once,
    until_ready,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectBroker]:
    b = ProjectBroker.cluster(Path(tmp_path_factory.mktemp("cluster")), 3).start()
    yield b
    b.shutdown()


def test_the_cluster_replicates_the_readings_queue_on_every_node(cluster: ProjectBroker) -> None:
    assert cluster.admin.running_nodes() == sorted(s.name for s in cluster.layout.nodes)
    queue = cluster.admin.queue("carmileage.readings")
    assert queue["type"] == "quorum"
    assert sorted(queue["members"]) == sorted(s.name for s in cluster.layout.nodes)


async def test_the_publishers_node_killed_mid_stream(
    pool: asyncpg.Pool,
    database_url: str,
    cluster: ProjectBroker,
    live_service_factory: Callable[..., LiveService],
) -> None:
    """(b): the provider publishes to node 1; node 1 dies (SIGKILL) a quarter of the way; the
    provider publishes what was not acknowledged to node 2. The service, told every node,
    reconnects on its own."""
    cluster.purge()
    provider, cars = await setup_provider(pool, cluster)
    total = 30_000
    service = live_service_factory(database_url, **mqtt_env(cluster))
    stream = Stream(cluster, provider, cars, total=total, nodes=(0, 1, 2)).start()
    try:
        await reach(pool, provider.id, total // 4)
        cluster.kill(0)
        stream.join()
        assert stream.failovers >= 1
        with logs_on_failure(service):
            await stored_exactly_once(pool, provider, total)
        assert await until_ready(service)
    finally:
        await asyncio.to_thread(cluster.restart, 0)


async def test_the_whole_cluster_restarted(
    pool: asyncpg.Pool,
    database_url: str,
    cluster: ProjectBroker,
    live_service_factory: Callable[..., LiveService],
) -> None:
    """(d): every node killed and started again while the worker runs: readings acknowledged
    before are there, and those published after the restart, while the worker is still
    reconnecting, wait in the queue for it instead of being dropped."""
    cluster.purge()
    provider, cars = await setup_provider(pool, cluster)
    before, after = payloads_for(cars, 5_000), payloads_for(cars, 5_000, first=50)
    service = live_service_factory(database_url, **mqtt_env(cluster))
    Stream(cluster, provider, cars, payloads=before).start().join()
    for i in range(3):
        cluster.kill(i)
    await asyncio.to_thread(cluster.restart)
    Stream(cluster, provider, cars, payloads=after, nodes=(2, 1, 0)).start().join()
    with logs_on_failure(service):
        await stored_exactly_once(pool, provider, len(before) + len(after))
    assert await until_ready(service)
