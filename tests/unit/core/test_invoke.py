"""Calling handlers through a middleware chain (core/invoke.py)."""

from __future__ import annotations

from typing import Any

import pytest

from pondsocket import ConnectionContext, PondSocket
from pondsocket.testing import ConnectionDeclined, TestClient


async def test_connection_middleware_runs_in_order_and_can_stop() -> None:
    pond = PondSocket()
    order: list[str] = []

    async def first(ctx: ConnectionContext, next_: Any) -> None:
        order.append("first")
        await next_()

    def gate(ctx: ConnectionContext, next_: Any) -> Any:
        order.append("gate")
        if ctx.query.get("vip") != "1":
            ctx.decline(403, "vip only")
            return None
        return next_()

    def handler(ctx: ConnectionContext) -> ConnectionContext:
        order.append("handler")
        return ctx.accept()

    pond.create_endpoint("/s", handler, first, gate)
    with pytest.raises(ConnectionDeclined):
        await TestClient(pond).connect("/s")
    assert order == ["first", "gate"]
    order.clear()
    await TestClient(pond).connect("/s", "vip=1")
    assert order == ["first", "gate", "handler"]
