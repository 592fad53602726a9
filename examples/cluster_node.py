"""One node of a chat cluster on Redis: run several, on any ports, and they act as one
server (presence, broadcasts and leaves span every node). The app is chat_app.py's.

    python examples/cluster_node.py --port 8080 [--redis redis://127.0.0.1:6379]
    python examples/cluster_node.py --port 8081

Nodes with the same Redis and ``--namespace`` form one cluster (docs/deployment.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from chat_app import build
from pondsocket import PondSocket
from pondsocket.cluster import ClusterOptions
from pondsocket.pubsub.redis import RedisPubSub


async def serve(host: str, port: int, redis_url: str, namespace: str) -> None:
    pubsub = await RedisPubSub.connect(redis_url)
    pond = PondSocket(pubsub=pubsub, cluster=ClusterOptions(namespace=namespace))
    build(pond)
    try:
        await pond.serve(host, port)  # until SIGTERM (or Ctrl+C), then a graceful shutdown
    finally:
        await pubsub.close()  # the pubsub is ours to close, not the pond's


def main() -> None:
    parser = argparse.ArgumentParser(description="One node of a PondSocket chat cluster.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port (logged)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="the Redis URL")
    parser.add_argument("--namespace", default="chat", help="nodes only see this namespace")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C: serve() has shut down already
        asyncio.run(serve(args.host, args.port, args.redis, args.namespace))


if __name__ == "__main__":
    main()
