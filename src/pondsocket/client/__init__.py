"""An asyncio client for PondSocket servers (docs/client.md).

```python
async with PondClient("ws://127.0.0.1:8080/socket", query={"token": "x"}) as client:
    room = client.channel("/room/lobby", {"name": "ada"})
    await room.join()
    await room.send("message", {"text": "hi"})
    reply = await room.request("ping", {}, timeout=5)
    async for message in room:
        print(message.event, message.payload)
```
"""

from pondsocket.client.channel import Channel, Recovery
from pondsocket.client.connection import PondClient, build_url
from pondsocket.client.errors import (
    ChannelClosedError,
    ClientClosedError,
    ClientError,
    ClientTimeoutError,
    ConnectError,
    HandshakeRefusedError,
    JoinDeclinedError,
    NotConnectedError,
    ReconnectFailedError,
    RequestFailedError,
)
from pondsocket.client.frames import Message, ServerFrame
from pondsocket.client.options import ClientOptions
from pondsocket.client.presence import Presence, PresenceChange
from pondsocket.client.state import ChannelState, ConnectionState, Watched

__all__ = [
    "Channel",
    "ChannelClosedError",
    "ChannelState",
    "ClientClosedError",
    "ClientError",
    "ClientOptions",
    "ClientTimeoutError",
    "ConnectError",
    "ConnectionState",
    "HandshakeRefusedError",
    "JoinDeclinedError",
    "Message",
    "NotConnectedError",
    "PondClient",
    "Presence",
    "PresenceChange",
    "ReconnectFailedError",
    "Recovery",
    "RequestFailedError",
    "ServerFrame",
    "Watched",
    "build_url",
]
