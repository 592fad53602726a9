"""Which address a connection comes from, behind trusted reverse proxies.

A proxy in front of the node makes every connection come from the proxy's address; the
client's own is in ``Forwarded: for=...`` (RFC 7239) or ``X-Forwarded-For``. Those headers
are believed only as far as they were written by proxies we trust: walking from the
nearest hop outwards, the first address that is not a trusted proxy is the client. A
client that talks to the node directly cannot pick its own address that way.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping, Sequence

from pondsocket.errors import UsageError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_TRUSTED_PROXIES = ("127.0.0.1", "::1")


def validate_trusted_proxies(entries: Sequence[str] | None) -> tuple[str, ...]:
    """Check ``PondOptions.trusted_proxies`` (addresses, networks or ``"*"``)."""
    if entries is None:
        return ()
    if isinstance(entries, str):
        raise UsageError("trusted_proxies must be a list of addresses, not a string")
    for entry in entries:
        if entry != "*":
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise UsageError(
                    f"trusted_proxies: {entry!r} is not an address or network"
                ) from None
    return tuple(entries)


@functools.lru_cache(maxsize=32)
def _networks(entries: tuple[str, ...]) -> tuple[bool, tuple[Network, ...]]:
    nets = tuple(ipaddress.ip_network(e, strict=False) for e in entries if e != "*")
    return "*" in entries, nets


def _is_trusted(address: str, entries: tuple[str, ...]) -> bool:
    anyone, nets = _networks(entries)
    if anyone:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in nets)


def _forwarded_hops(headers: Mapping[str, str]) -> list[str]:
    """Client-to-proxy order: the leftmost is the original client."""
    forwarded = headers.get("forwarded")
    if forwarded:
        hops = []
        for element in forwarded.split(","):
            for pair in element.split(";"):
                name, _, value = pair.strip().partition("=")
                if name.lower() == "for":
                    hops.append(_strip_port(value.strip().strip('"')))
        return hops
    return [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]


def _strip_port(value: str) -> str:
    if value.startswith("["):  # "[2001:db8::1]:4711"
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:  # "192.0.2.43:47011"
        return value.partition(":")[0]
    return value


def client_address(
    peer: tuple[str, int] | None, headers: Mapping[str, str], trusted: tuple[str, ...]
) -> tuple[str, int] | None:
    """The connection's real client: ``peer`` itself unless it is a trusted proxy that
    forwarded the request. A forwarded client has port 0 (unknown)."""
    if peer is None or not trusted or not _is_trusted(peer[0], trusted):
        return peer
    hops = _forwarded_hops(headers)
    client = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return client  # "unknown", an obfuscated id, garbage: stop at the last good one
        client = (hop, 0)
        if not _is_trusted(hop, trusted):
            break
    return client
