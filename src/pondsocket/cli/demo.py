"""``pondsocket demo``: the demo chat page and its server on one port."""

from __future__ import annotations

import argparse

from pondsocket.cli.cluster import apply_cluster
from pondsocket.cli.options import apply_options, configure_logging, tls_context
from pondsocket.transports import standalone


def demo_command(args: argparse.Namespace) -> int:
    from pondsocket.demo import DEMO_PAGE, create_demo  # lazy: the page is only for the demo

    pond = create_demo()
    apply_options(pond, args)
    apply_cluster(pond, args)
    tls = tls_context(args)
    configure_logging(args.log_level)
    scheme = "https" if tls else "http"

    def listening(port: int) -> None:  # only once the port is bound
        where = f"node {pond.cluster.node_id}"
        if args.pubsub or args.redis:
            options = pond.cluster.options
            where += f" of cluster {options.prefix}:{options.namespace}"
        url = f"{scheme}://{_url_host(args.host)}:{port}/"
        print(f"PondSocket demo chat ({where}): open {url} in two browser tabs", flush=True)

    standalone.run(  # a broker that fails at startup: StartupError, one line (main)
        pond,
        args.host,
        args.port,
        tune_gc=args.gc_tuning,
        on_ready=listening,
        http_routes={"/": ("text/html; charset=utf-8", DEMO_PAGE)},
        **({"ssl": tls} if tls else {}),
    )
    return 0


def _url_host(host: str) -> str:
    """How a browser on this machine reaches ``host`` (an address the server binds)."""
    if host in ("", "0.0.0.0", "::"):
        return "localhost"
    return f"[{host}]" if ":" in host else host
