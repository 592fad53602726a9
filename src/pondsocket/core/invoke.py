"""Calling application handlers, sync or async, through a middleware chain."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

Ctx = TypeVar("Ctx")

Handler = Callable[[Any], Awaitable[None] | None]
Middleware = Callable[[Any, Callable[[], Awaitable[None]]], Awaitable[None] | None]


async def call_handler(handler: Callable[..., Any], *args: Any) -> None:
    result = handler(*args)
    if inspect.isawaitable(result):
        await result


async def run_chain(ctx: Any, middleware: Sequence[Middleware], handler: Handler) -> None:
    """Run ``middleware[0](ctx, next)`` ... then ``handler(ctx)``.

    A middleware that does not call ``next`` stops the chain (it should accept or decline).
    """

    async def step(index: int) -> None:
        if index == len(middleware):
            await call_handler(handler, ctx)
            return
        called = False

        async def next_() -> None:
            nonlocal called
            if called:
                return  # calling next twice must not run the handler twice
            called = True
            await step(index + 1)

        await call_handler(middleware[index], ctx, next_)

    await step(0)
