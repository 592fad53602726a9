"""Prometheus metrics over real sockets: ``/metrics`` on the standalone server, under
uvicorn (directly and mounted in FastAPI), on a port of its own, and across two nodes of
a cluster; parsed with ``prometheus_client``'s own parser."""

from __future__ import annotations

import sys

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.integration.helpers_standalone import Client
from tests.support import eventually
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from pondsocket import EventContext, JoinContext, PondOptions, PondSocket
from pondsocket.pubsub.memory import InMemoryPubSub
from pondsocket.transports.standalone import StandaloneServer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tests.integration.conftest import AsgiServe

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def app(**options: object) -> PondSocket:
    pond = PondSocket(
        PondOptions(
            metrics_path="/metrics",
            allowed_origins=["https://good.example"],
            rate_limit=1.0,
            rate_burst=3,
            **options,  # type: ignore[arg-type]
        )
    )
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())

    def join(ctx: JoinContext) -> None:
        ctx.accept()
        ctx.track({"status": "here"})

    lobby = endpoint.create_channel("/room/:id", join)

    @lobby.on_message("say")
    def say(ctx: EventContext) -> None:
        ctx.broadcast("said", {"text": "hi"})

    return pond


async def traffic(ws_url: str) -> None:
    """Two members, a broadcast, a refused origin and a rate-limited message."""
    first, second = await Client.connect(ws_url), await Client.connect(ws_url)
    try:
        assert (await first.join("/room/1"))["event"] == "ACKNOWLEDGE"
        assert (await second.join("/room/1"))["event"] == "ACKNOWLEDGE"
        await first.send("/room/1", "say")
        await second.expect(lambda f: f["event"] == "said")
        for _ in range(3):  # the burst is 3 messages: the last ones get 429
            await first.send("/room/1", "say")
        await first.expect(lambda f: f.get("payload", {}).get("status") == 429)
        with pytest.raises(InvalidStatus):
            await connect(ws_url, origin="https://evil.example")  # type: ignore[arg-type]
    finally:
        await first.close()
        await second.close()


def check_traffic(samples: Samples) -> None:
    assert value(samples, "pondsocket_connections_accepted_total") >= 2
    assert value(samples, "pondsocket_refusals_total", reason="origin") == 1
    assert value(samples, "pondsocket_refusals_total", reason="rate_limit") >= 1
    assert value(samples, "pondsocket_messages_received_total", kind="join") >= 2
    assert value(samples, "pondsocket_messages_received_total", kind="broadcast") >= 2
    assert value(samples, "pondsocket_fanout_frames_total", kind="broadcast") >= 2
    assert value(samples, "pondsocket_fanout_bytes_total", kind="broadcast") > 100
    assert value(samples, "pondsocket_fanout_frames_total", kind="presence") >= 3
    assert value(samples, "pondsocket_handler_duration_seconds_count") >= 1
    assert value(samples, "pondsocket_handler_duration_seconds_bucket", le="+Inf") >= 1


async def test_standalone_serves_metrics_after_traffic() -> None:
    pond = app()
    async with StandaloneServer(pond, "127.0.0.1", 0) as server:
        base = f"127.0.0.1:{server.port}"
        async with httpx.AsyncClient() as http:
            before = parse((await http.get(f"http://{base}/metrics")).text)
            assert value(before, "pondsocket_connections") == 0
            first = await Client.connect(f"ws://{base}/socket")
            await first.join("/room/1")
            during = await http.get(f"http://{base}/metrics")
            assert during.status_code == 200
            assert during.headers["content-type"].startswith("text/plain")
            samples = parse(during.text)
            assert value(samples, "pondsocket_connections") == 1
            assert value(samples, "pondsocket_channels") == 1
            assert value(samples, "pondsocket_channel_members", scope="local") == 1
            assert value(samples, "pondsocket_presence_entries") == 1
            assert value(samples, "pondsocket_outbox_bytes_bucket", le="+Inf") == 1
            await first.close()
            await traffic(f"ws://{base}/socket")
            check_traffic(parse((await http.get(f"http://{base}/metrics")).text))
            assert (await http.get(f"http://{base}/healthz")).status_code == 200


async def test_asgi_serves_metrics_after_traffic(asgi_serve: AsgiServe) -> None:
    pond = app()
    server = await asgi_serve(pond)
    await traffic(f"{server.ws_url}/socket")
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{server.http_url}/metrics")
    assert answer.status_code == 200
    samples = parse(answer.text)
    check_traffic(samples)
    assert ("process_cpu_seconds_total", ()) in samples  # prometheus_client's own


async def test_metrics_on_a_port_of_their_own() -> None:
    pond = app(metrics_port=0)
    async with StandaloneServer(pond, "127.0.0.1", 0) as server:
        assert pond.metrics_listener is not None
        own = f"http://127.0.0.1:{pond.metrics_listener.port}"
        async with httpx.AsyncClient() as http:
            # not on the clients' port any more
            assert (await http.get(f"http://127.0.0.1:{server.port}/metrics")).status_code == 404
            answer = await http.get(f"{own}/metrics")
            assert answer.status_code == 200
            assert value(parse(answer.text), "pondsocket_ready") == 1
            assert (await http.get(f"{own}/other")).status_code == 404
            assert (await http.post(f"{own}/metrics")).status_code == 405
    assert pond.metrics_listener is not None
    with pytest.raises(RuntimeError):
        _ = pond.metrics_listener.port  # closed with the server


async def test_metrics_are_off_by_default_and_501_without_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pond = PondSocket()
    pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    assert pond.http_get("/metrics") is None
    pond.configure(metrics_path="/metrics")
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "pondsocket.observability.prometheus", raising=False)
    answer = pond.http_get("/metrics")
    assert answer is not None and answer[0] == 501
    assert b"pip install 'pondsocket-cluster[metrics]'" in answer[2]
    assert pond.metrics_snapshot()["pondsocket_connections"] == 0  # no dependency


async def test_two_nodes_count_envelopes_and_each_other() -> None:
    bus = InMemoryPubSub()
    ponds = [app(), app()]
    for pond in ponds:
        pond.use_pubsub(bus)
    async with (
        StandaloneServer(ponds[0], "127.0.0.1", 0) as one,
        StandaloneServer(ponds[1], "127.0.0.1", 0) as two,
    ):
        first = await Client.connect(f"ws://127.0.0.1:{one.port}/socket")
        second = await Client.connect(f"ws://127.0.0.1:{two.port}/socket")
        await first.join("/room/1")
        await second.join("/room/1")
        channel = ponds[0].endpoints[0].get_channel("/room/1")
        assert channel is not None
        await eventually(lambda: len(channel.all_user_ids) == 2, "both members known")
        await first.send("/room/1", "say")
        await second.expect(lambda f: f["event"] == "said")
        await first.close()
        await second.close()
        async with httpx.AsyncClient() as http:
            await eventually(lambda: ponds[1].cluster.registry.__len__() == 1, "peer seen")
            scraped = [
                parse((await http.get(f"http://127.0.0.1:{port}/metrics")).text)
                for port in (one.port, two.port)
            ]
    for samples in scraped:
        assert value(samples, "pondsocket_cluster_envelopes_sent_total") > 0
        assert value(samples, "pondsocket_cluster_envelopes_received_total") > 0
        assert value(samples, "pondsocket_cluster_nodes") == 1
        assert value(samples, "pondsocket_cluster_bus_up") == 1
        assert value(samples, "pondsocket_cluster_publish_duration_seconds_count") > 0
