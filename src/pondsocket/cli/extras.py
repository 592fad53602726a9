"""Whether an optional dependency (an extra such as ``asgi`` or ``nats``) is installed."""

from __future__ import annotations

import importlib


def importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
