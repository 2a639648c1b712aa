"""What the multi-process tests share: trip steps through a `taxi serve` process, who
listens on a Redis channel, and checks on the data of trip and location streams."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis import asyncio as aioredis

from taxi.core.cluster import cluster_client
from tests.helpers import REPORT_LOCATION, UPDATE_STATUS, Account, ok
from tests.metrics_scrape import Samples, scrape, value
from tests.procs import TaxiServer
from tests.wait import eventually

Data = dict[str, Any]


async def report(server: TaxiServer, driver: Account, trip_id: str, lat: float) -> Any:
    location = {"latitude": lat, "longitude": 13.4, "heading": 90.0}
    data = await ok(server.http, REPORT_LOCATION, {"tripId": trip_id, "location": location}, driver)
    return data["reportLocation"]


async def set_status(server: TaxiServer, driver: Account, trip_id: str, status: str) -> Any:
    data = await ok(server.http, UPDATE_STATUS, {"id": trip_id, "status": status}, driver)
    assert data["updateTripStatus"]["status"] == status
    return data["updateTripStatus"]


async def numsub(server: TaxiServer, channel: str) -> int:
    """How many connections listen to `channel` (on a cluster: on its shard)."""
    url = server.redis
    if server.sharded:
        cluster = cluster_client(url)
        try:
            await cluster.initialize()
            owner = cluster.get_node_from_key(channel)
            reply = await cluster.execute_command("PUBSUB SHARDNUMSUB", channel, target_nodes=owner)
        finally:
            await cluster.aclose()
        [(_, count)] = reply
        return int(count)
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        [(_, count)] = await client.pubsub_numsub(channel)
    finally:
        await client.aclose()
    return int(count)


async def pool_subscribed(server: TaxiServer) -> None:
    """Until `server` runs a tripRequested subscription. It sends nothing first, and a
    server counts a subscription only once its channels are live (taxi/transport/live/
    operations.py), so this is how a test knows. The count is the process's own: others
    on a shared Redis cannot move it (they can move PUBSUB NUMSUB)."""

    def live(samples: Samples) -> bool:
        return value(samples, "taxi_subscriptions_live", field="tripRequested") >= 1

    await eventually(lambda: scrape(server.http), live, what=f"tripRequested live on {server.name}")


def status_of(data: Data) -> str:
    status: str = data["tripUpdated"]["status"]
    return status


def latitude(data: Data) -> float:
    lat: float = data["driverLocation"]["latitude"]
    return lat


def never(_data: Data) -> bool:
    return False


def is_status(status: str) -> Callable[[Data], bool]:
    return lambda data: status_of(data) == status


def is_lat(lat: float) -> Callable[[Data], bool]:
    return lambda data: latitude(data) == lat
