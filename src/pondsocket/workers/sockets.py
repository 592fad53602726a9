"""Listening sockets shared by the workers of one host: ``SO_REUSEPORT``.

Each worker binds its own listening socket to the same address with ``SO_REUSEPORT``, and
Linux spreads new connections over the sockets of that group by a hash of each
connection's addresses (one accept queue per worker, so no worker takes more than its
share while the others sleep, as happens when processes share one accept queue).

The supervisor holds the port meanwhile with a bound, *non-listening* socket of the same
group (:func:`reserve`): it never receives a connection, but it picks the port for
``--port 0`` and keeps it while a worker is restarted.
"""

from __future__ import annotations

import contextlib
import socket
import sys

__all__ = ["addresses", "listening_sockets", "reserve", "reuse_port_problem"]


def reuse_port_problem() -> str | None:
    """Why workers cannot share a port on this platform (``None``: they can)."""
    # BSD and macOS have SO_REUSEPORT too, but do not spread connections over the sockets
    # (FreeBSD has SO_REUSEPORT_LB for that); Windows has neither.
    if not hasattr(socket, "SO_REUSEPORT"):
        return f"this platform ({sys.platform}) has no SO_REUSEPORT"
    if not sys.platform.startswith("linux"):
        return f"SO_REUSEPORT on {sys.platform} does not spread connections over processes"
    return None


def addresses(host: str, port: int) -> list[tuple[int, tuple[object, ...]]]:
    """Every (family, socket address) ``host`` names, as the servers would bind them."""
    found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    unique: list[tuple[int, tuple[object, ...]]] = []
    for family, _, _, _, address in found:
        if (family, address) not in unique:
            unique.append((family, address))
    return unique


def reserve(host: str, port: int) -> tuple[list[socket.socket], int]:
    """Bind (without listening) one ``SO_REUSEPORT`` socket per address of ``host``; returns
    them and the port (the kernel's pick when ``port`` is 0). ``OSError`` when the port is
    taken (by anyone, us included: a second supervisor on the same port must fail, not
    share the first one's traffic)."""
    held: list[socket.socket] = []
    try:
        for family, address in addresses(host, port):
            # With port 0 the first address picks the port; the others take the same one.
            port = _check_free(family, (address[0], port, *address[2:]))
            held.append(_bound(family, (address[0], port, *address[2:]), reuse_address=False))
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held, port


def listening_sockets(host: str, port: int) -> list[socket.socket]:
    """One bound ``SO_REUSEPORT`` socket per address of ``host``, for a worker's server to
    listen on (uvicorn's ``sockets=``; the standalone server binds through asyncio's
    ``reuse_port=True`` instead)."""
    sockets: list[socket.socket] = []
    try:
        for family, address in addresses(host, port):
            sockets.append(_bound(family, address, reuse_address=True))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _check_free(family: int, address: tuple[object, ...]) -> int:
    """Bind a socket *without* ``SO_REUSEPORT`` to see that nobody holds the address (a
    socket of a reuse-port group refuses it); returns the port it got."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Connections of an earlier run in TIME_WAIT do not count as holding the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _only_v6(probe, family)
        probe.bind(address)
        return int(probe.getsockname()[1])


def _bound(family: int, address: tuple[object, ...], *, reuse_address: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # The reservation leaves SO_REUSEADDR off: with it, a plain socket that also sets
        # SO_REUSEADDR could bind beside it (neither listening) and then listen alone.
        if reuse_address:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        _only_v6(sock, family)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _only_v6(sock: socket.socket, family: int) -> None:
    # As asyncio's create_server: an IPv6 socket does not also take the IPv4 address, which
    # is bound by a socket of its own when the host names both.
    if family == socket.AF_INET6:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
