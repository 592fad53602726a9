"""Process-wide settings for a long-running PondSocket server.

Why the garbage collector needs tuning: CPython runs a full collection whenever the
objects that survived into the oldest generation have grown by a quarter, and each full
collection walks every live object. A node's heap grows with its connections (about a
hundred objects each), so during a connect storm, such as every client reconnecting
after a deploy, full collections come back again and again over an ever larger heap.
Measured on the benchmark app (2 cores, 8,000 connects+joins): 0.75-1.07 s of the run
spent in full collections, about 100 µs per join, a quarter of the server's CPU.

:func:`tune_gc` makes full collections wait for 100 young-generation sweeps instead of
10 (young collections, which free most short-lived garbage, are unchanged) and moves the
objects that exist at startup (modules, the application) out of the collector's reach.
The trade-off: garbage in reference cycles that has reached the oldest generation is
freed later, so memory may peak higher between full collections.
"""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]

FULL_COLLECTION_EVERY = 100  # CPython's default: 10


def tune_gc(full_collection_every: int = FULL_COLLECTION_EVERY) -> None:
    """Tune the garbage collector for a server process; call once, after startup imports.

    ``pondsocket serve`` and :meth:`PondSocket.run` call it (pass ``--no-gc-tuning`` /
    ``tune_gc=False`` to keep CPython's defaults); call it yourself when you run the ASGI
    app under your own server.
    """
    if full_collection_every < 1:
        raise ValueError("full_collection_every must be at least 1")
    gc.collect()
    gc.freeze()  # what exists now lives as long as the process: never walk it again
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, full_collection_every)
