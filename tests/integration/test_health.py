"""``/healthz`` (alive) and ``/readyz`` (ready: started, not shutting down, broker
connected and subscribed) on the standalone server and under ASGI, for load balancers
and Kubernetes probes."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from pondsocket import PondOptions, PondSocket
from pondsocket.pubsub import BusState
from pondsocket.transports.standalone import StandaloneServer


def app(options: PondOptions | None = None) -> PondSocket:
    pond = PondSocket(options)
    pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    return pond


async def test_standalone_health_and_readiness() -> None:
    pond = app()
    async with StandaloneServer(pond, "127.0.0.1", 0) as server:
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient() as http:
            alive = await http.get(f"{base}/healthz")
            assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
            assert alive.headers["content-type"] == "application/json"
            for _ in range(100):  # the node subscribes to the cluster's heartbeats at start
                ready = await http.get(f"{base}/readyz")
                if ready.status_code == 200:
                    break
                await asyncio.sleep(0.02)
            assert ready.json() == {"status": "ready"}
            pond.cluster._bus_state_changed(BusState.DISCONNECTED)  # the broker is gone
            down = await http.get(f"{base}/readyz")
            assert (down.status_code, down.json()["reason"]) == (503, "broker disconnected")
            assert (await http.get(f"{base}/healthz")).status_code == 200  # alive still
            pond.cluster._bus_state_changed(BusState.RECONNECTED)
            assert (await http.get(f"{base}/readyz")).status_code == 200


async def test_not_ready_while_shutting_down_and_paths_are_options() -> None:
    pond = app(PondOptions(health_path="/live", ready_path=None))
    assert pond.health("/healthz") is None and pond.health("/readyz") is None
    assert pond.health("/live") == (200, b'{"status":"ok"}')
    pond = app()
    assert pond.health("/readyz") == (503, b'{"status":"not ready","reason":"starting"}')
    await pond.startup()
    await asyncio.sleep(0.05)
    assert pond.health("/readyz") == (200, b'{"status":"ready"}')
    await pond.shutdown(timeout=1)
    assert pond.health("/readyz") == (503, b'{"status":"not ready","reason":"shutting down"}')


async def test_asgi_health_and_readiness() -> None:
    pond = app()
    transport = httpx.ASGITransport(app=pond.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).status_code == 503  # no lifespan startup yet
        await pond.startup()
        await asyncio.sleep(0.05)
        assert (await http.get("/readyz")).json() == {"status": "ready"}
        assert (await http.post("/healthz")).status_code != 200  # GETs only
    await pond.shutdown(timeout=1)


def test_health_paths_must_be_paths() -> None:
    from pondsocket import UsageError

    with pytest.raises(UsageError, match="health_path"):
        PondOptions(health_path="healthz")


async def test_shutdown_drains_first_and_only_once() -> None:
    pond = app(PondOptions(drain_grace=0.3))
    await pond.startup()
    await asyncio.sleep(0.05)
    stopping = asyncio.ensure_future(pond.shutdown(timeout=1))
    await asyncio.sleep(0.1)
    assert pond.health("/readyz") == (503, b'{"status":"not ready","reason":"draining"}')
    assert not stopping.done()
    await stopping
    assert pond.health("/readyz") == (503, b'{"status":"not ready","reason":"shutting down"}')
    await pond.drain()  # done already: returns at once


def test_drain_grace_is_bounded() -> None:
    from pondsocket import UsageError

    with pytest.raises(UsageError, match="drain_grace"):
        PondOptions(drain_grace=-1)
