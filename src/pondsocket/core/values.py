"""Checks of the values applications hand to PondSocket (payloads, presence, assigns)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pondsocket.errors import PayloadError


def check_object(value: object, what: str) -> dict[str, Any]:
    """Payloads, presence and assigns are JSON objects: the JS client rejects anything else."""
    if isinstance(value, dict):
        return value
    if isinstance(value, Mapping):
        return dict(value)
    raise PayloadError(f"{what} must be a dict (a JSON object), got {type(value).__name__}")
