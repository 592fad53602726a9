"""Load generator process: picows clients on uvloop speaking the PondSocket wire protocol.

    python -m pondsocket_bench.loadgen '<json config>'

It opens ``connections`` WebSocket connections to ``url`` (at most ``concurrency`` being
set up at once), waits for each one's ``CONNECT``/``CONNECTION`` frame, joins ``channel``
and waits for the ``SYSTEM``/``ACKNOWLEDGE``. Then it talks to the orchestrator over
stdin/stdout, one line each:

* out ``READY {json}``: connections up (connect+join time histogram, failures);
* in ``GO``: counters reset; a ``send`` role starts sending event ``send`` on its one
  connection (``rate`` msg/s, or as fast as a window of ``window`` unacknowledged
  messages allows when ``rate`` is 0) for ``duration`` s, then prints ``SENT {json}``;
* out ``P <deliveries>`` every 0.2 s while running (progress);
* in ``STOP``: prints ``RESULT {json}`` (deliveries, first/last delivery time, latency
  histogram) and exits.

A delivery is a ``BROADCAST`` frame of event ``msg``; its latency is ``monotonic_ns()`` at
receipt minus the ``t`` the sender put in the payload (CLOCK_MONOTONIC is system-wide, so
this is valid across processes). The process exits by itself after ``max_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from array import array
from dataclasses import asdict, dataclass
from time import monotonic, monotonic_ns, process_time
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from pondsocket_bench.limits import die_with_parent, raise_open_file_limit
from pondsocket_bench.stats import histogram

BROADCAST_EVENT = "msg"
SEND_EVENT = "send"


@dataclass
class LoadConfig:
    url: str
    channel: str = "/room/1"
    connections: int = 1
    concurrency: int = 50
    role: str = "subscribe"  # or "send"
    rate: float = 0.0
    duration: float = 5.0
    window: int = 10
    size: int = 100
    connect_timeout: float = 10.0
    max_seconds: float = 300.0
    parent: int = 0


class Stats:
    """What every connection of this process received."""

    def __init__(self) -> None:
        self.reset()
        self.errors = 0
        self.disconnects = 0
        self.last_error = ""

    def reset(self) -> None:
        self.deliveries = 0
        self.presence = 0
        self.first_ns = 0
        self.last_ns = 0
        self.latencies = array("q")

    def delivery(self, sent_ns: object) -> None:
        now = monotonic_ns()
        self.deliveries += 1
        if not self.first_ns:
            self.first_ns = now
        self.last_ns = now
        if type(sent_ns) is int:
            self.latencies.append(now - sent_ns)


class Client(WSListener):
    """One PondSocket connection: connect, join, then count deliveries."""

    def __init__(self, stats: Stats, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.stats = stats
        self.transport: WSTransport | None = None
        self.connected: asyncio.Future[None] = loop.create_future()
        self.joined: asyncio.Future[None] = loop.create_future()
        self.settled = 0  # deliveries or errors on this connection (the sender's window)
        self.wake: asyncio.Event | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.stats.disconnects += 1
        for future in (self.connected, self.joined):
            if not future.done():
                future.set_exception(ConnectionError("disconnected"))
        if self.wake is not None:
            self.wake.set()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            if frame.msg_type is WSMsgType.CLOSE:
                transport.disconnect()
            return
        data = frame.get_payload_as_bytes()
        if b"\n" in data:  # a server may batch messages, one per line (docs/protocol.md)
            for line in data.split(b"\n"):
                if line.strip():
                    self._message(line)
        else:
            self._message(data)

    def _message(self, data: bytes) -> None:
        message: dict[str, Any] = orjson.loads(data)
        action = message.get("action")
        event = message.get("event")
        if action == "BROADCAST" and event == BROADCAST_EVENT:
            self.stats.delivery(message["payload"].get("t"))
            self._settle()
        elif action == "PRESENCE":
            self.stats.presence += 1
        elif action == "CONNECT":
            if not self.connected.done():
                self.connected.set_result(None)
        elif event == "ACKNOWLEDGE":
            if not self.joined.done():
                self.joined.set_result(None)
        elif action == "ERROR":
            self.stats.errors += 1
            self.stats.last_error = f"{event}: {message.get('payload')}"[:200]
            if not self.joined.done():
                self.joined.set_exception(RuntimeError(self.stats.last_error))
            else:
                self._settle()  # a refused message must not hold the sender's window

    def _settle(self) -> None:
        self.settled += 1
        if self.wake is not None:
            self.wake.set()

    def send(self, action: str, event: str, channel: str, request_id: str, payload: Any) -> None:
        assert self.transport is not None
        frame = orjson.dumps(
            {
                "action": action,
                "event": event,
                "channelName": channel,
                "requestId": request_id,
                "payload": payload,
            }
        )
        self.transport.send(WSMsgType.TEXT, frame)


async def open_connections(
    config: LoadConfig, stats: Stats
) -> tuple[list[Client], array[int], int, float]:
    """Connect and join every connection; returns (clients, connect+join times in ns,
    failures, seconds it all took)."""
    loop = asyncio.get_running_loop()
    clients: list[Client] = []
    times: array[int] = array("q")
    failures = 0
    gate = asyncio.Semaphore(max(1, config.concurrency))

    async def one(index: int) -> None:
        nonlocal failures
        async with gate:
            start = monotonic_ns()
            client: Client | None = None
            try:
                async with asyncio.timeout(config.connect_timeout):
                    _, listener = await ws_connect(lambda: Client(stats, loop), config.url)
                    assert isinstance(listener, Client)
                    client = listener
                    await client.connected
                    client.send("JOIN_CHANNEL", "JOIN_CHANNEL", config.channel, f"join-{index}", {})
                    await client.joined
            except Exception as exc:
                failures += 1
                stats.last_error = f"{type(exc).__name__}: {exc}"[:200]
                if client is not None and client.transport is not None:
                    client.transport.disconnect()
                return
            times.append(monotonic_ns() - start)
            clients.append(client)

    begin = monotonic()
    await asyncio.gather(*(one(i) for i in range(config.connections)))
    return clients, times, failures, monotonic() - begin


async def send_loop(client: Client, config: LoadConfig) -> int:
    """Send event ``send`` for ``duration`` s; returns how many were sent."""
    pad = "x" * max(0, config.size - 40)  # the JSON around it is about 40 bytes
    client.wake = asyncio.Event()
    start = monotonic()
    end = start + config.duration
    sent = 0
    while client.transport is not None and not client.transport.is_disconnected:
        now = monotonic()
        if now >= end:
            break
        if config.rate > 0:
            due = min(int((now - start) * config.rate) + 1, int(config.duration * config.rate))
            if due <= sent:
                await asyncio.sleep(start + sent / config.rate - now)
                continue
            burst = due - sent
        else:
            if sent - client.settled >= config.window:
                client.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(end - now):
                        await client.wake.wait()
                continue
            burst = 1
        for _ in range(burst):
            payload = {"t": monotonic_ns(), "pad": pad}
            client.send("BROADCAST", SEND_EVENT, config.channel, f"s{sent}", payload)
            sent += 1
        if config.rate <= 0 and sent % 32 == 0:
            await asyncio.sleep(0)  # let the receipts in
    return sent


def emit(tag: str, data: Any = None) -> None:
    line = tag if data is None else f"{tag} {json.dumps(data, separators=(',', ':'))}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _progress(stats: Stats) -> None:
    while True:
        emit(f"P {stats.deliveries}")
        await asyncio.sleep(0.2)


async def run(config: LoadConfig) -> None:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    stats = Stats()
    cpu_before = process_time()
    clients, times, failures, elapsed = await open_connections(config, stats)
    cpu_used = process_time() - cpu_before
    emit(
        "READY",
        {
            "connected": len(clients),
            "failed": failures,
            "seconds": round(elapsed, 4),
            "cpu_s": round(cpu_used, 4),
            "join_hist": histogram(times),
            "last_error": stats.last_error,
            "pid": os.getpid(),
        },
    )
    if (await commands.readline()).strip() != b"GO":
        return
    stats.reset()
    progress = asyncio.create_task(_progress(stats))
    if config.role == "send" and clients:
        sent = await send_loop(clients[0], config)
        emit("SENT", {"sent": sent})
    await commands.readline()  # STOP (or end of input)
    progress.cancel()
    emit(
        "RESULT",
        {
            "connections": len(clients),
            "deliveries": stats.deliveries,
            "presence_frames": stats.presence,
            "first_ns": stats.first_ns,
            "last_ns": stats.last_ns,
            "latency_hist": histogram(stats.latencies),
            "latency_min_ns": min(stats.latencies) if stats.latencies else None,
            "errors": stats.errors,
            "disconnects": stats.disconnects,
            "last_error": stats.last_error,
        },
    )
    for client in clients:
        if client.transport is not None and not client.transport.is_disconnected:
            client.transport.disconnect()


async def _main(config: LoadConfig) -> None:
    async with asyncio.timeout(config.max_seconds):
        await run(config)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    config = LoadConfig(**json.loads(args[0]))
    if config.parent:
        die_with_parent(config.parent)
    raise_open_file_limit()
    import uvloop

    uvloop.run(_main(config))


def config_json(config: LoadConfig) -> str:
    return json.dumps(asdict(config))


if __name__ == "__main__":
    main()
