"""The broker options of ``serve`` and ``demo``: ``--pubsub``/``--redis`` and the cluster's
namespace, prefix and signing keys, checked at once and connected when serving starts."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Any
from urllib.parse import urlsplit

from pondsocket import PondSocket, UsageError
from pondsocket.cli.errors import CLIError
from pondsocket.cli.extras import importable
from pondsocket.cluster.signing import read_secret_file
from pondsocket.pubsub.urls import BACKENDS, connect_url


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """The broker options of ``serve`` and ``demo`` (read by :func:`apply_cluster`)."""
    cluster = parser.add_argument_group("cluster (several nodes sharing a broker)")
    cluster.add_argument(
        "--pubsub",
        metavar="URL",
        help="join a cluster through a broker: redis://, rediss://, redis+cluster://, nats://, "
        "amqp://, kafka://, gcppubsub://, sns+sqs:// (each needs its extra, e.g. pondsocket-cluster[nats])",
    )
    cluster.add_argument("--redis", metavar="URL", help="same as --pubsub with a redis:// URL")
    cluster.add_argument(
        "--sharded", action="store_true", help="Redis Cluster: use sharded pub/sub (Redis 7)"
    )
    cluster.add_argument("--namespace", help="cluster namespace (default: default)")
    cluster.add_argument("--prefix", help="topic prefix (default: pondsocket)")
    cluster.add_argument(
        "--cluster-secret-file",
        metavar="PATH",
        help="sign and verify cluster envelopes with the keys in PATH (one per line, the "
        "first signs; see docs/security.md); default: PONDSOCKET_CLUSTER_SECRET if set",
    )


def apply_cluster(pond: PondSocket, args: argparse.Namespace) -> None:
    """Connect the broker when serving starts (inside the server's event loop)."""
    changes = _option_changes(args)
    if args.redis and args.pubsub:
        raise CLIError("give either --pubsub or --redis, not both")
    url = args.pubsub or args.redis
    if url is None:
        if changes or args.sharded:
            raise CLIError(
                "--namespace, --prefix, --sharded and --cluster-secret-file need --pubsub"
                " (or --redis)"
            )
        return
    _check_url(url, args)
    try:
        options = dataclasses.replace(pond.cluster.options, **changes)
    except UsageError as exc:
        raise CLIError(str(exc)) from None
    extra_options = {"sharded": True} if args.sharded else {}

    @pond.on_startup
    async def connect() -> None:
        pubsub = await connect_url(url, **extra_options)
        pond.use_pubsub(pubsub, options)
        pond.on_shutdown(pubsub.close)
        logging.getLogger("pondsocket").info(
            "joined cluster %s:%s as node %s",
            options.prefix,
            options.namespace,
            pond.cluster.node_id,
        )


def _option_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The ClusterOptions fields the command line sets."""
    changes: dict[str, Any] = {
        k: v for k, v in (("namespace", args.namespace), ("prefix", args.prefix)) if v
    }
    if args.cluster_secret_file:
        try:
            changes["secret"] = read_secret_file(args.cluster_secret_file)
        except UsageError as exc:
            raise CLIError(str(exc)) from None
    return changes


def _check_url(url: str, args: argparse.Namespace) -> None:
    """A broker URL we can connect: a known scheme whose client library is installed."""
    scheme = urlsplit(url).scheme.lower()
    if args.redis and not scheme.startswith("redis"):
        raise CLIError(f"--redis takes a redis:// URL, not {url!r}: use --pubsub for it")
    if scheme not in BACKENDS:
        raise CLIError(f"unsupported pubsub URL {url!r}: use one of {', '.join(sorted(BACKENDS))}")
    module, _, extra = BACKENDS[scheme]
    if not importable(module):
        raise CLIError(f"{scheme}:// needs its client library: install pondsocket-cluster[{extra}]")
    if args.sharded and "redis" not in scheme:
        raise CLIError("--sharded is for Redis Cluster URLs only")
