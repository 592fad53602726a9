"""Broker topic names of the distributed protocol (docs/protocol.md)."""

from __future__ import annotations

from dataclasses import dataclass

HEARTBEAT_NAME = "__heartbeat__"


@dataclass(frozen=True, slots=True)
class TopicLayout:
    prefix: str = "pondsocket"
    namespace: str = "default"

    def channel(self, endpoint_name: str, channel_name: str) -> str:
        return f"{self.prefix}:v1:{self.namespace}:{endpoint_name}:{channel_name}"

    def heartbeat(self) -> str:
        return f"{self.prefix}:v1:{self.namespace}:{HEARTBEAT_NAME}"


def endpoint_name(pattern: str) -> str:
    """The endpoint's registered pattern without its leading slashes (``/api/socket`` ->
    ``api/socket``), as every upstream node names it."""
    return pattern.lstrip("/")
