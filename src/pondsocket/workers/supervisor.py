"""The supervisor of ``pondsocket serve --workers N``: start, watch and stop N workers.

Workers are separate interpreters started with ``subprocess`` (``pondsocket serve`` run
again with the same arguments), not ``multiprocessing`` children: nothing is forked (no
event loop, thread or broker connection of the parent is copied), nothing needs pickling
(an application object cannot be), ``ps`` shows each worker's command line, and a worker
runs exactly the code path of a single ``pondsocket serve``, shutdown included.

Each worker is started in a session of its own, so a Ctrl+C at the terminal reaches only
the supervisor, which then sends every worker one SIGTERM (a worker signalled twice could
be cut short: uvicorn exits at once on a second SIGINT).

A worker that dies while the others serve is restarted after a back-off (1 s, 2 s, 4 s,
... 30 s): its clients reconnect to the workers still up (the kernel stops routing new
connections to a closed socket), and stopping every worker for one crash would turn a
lost process into a lost host. A worker that keeps dying young is a configuration or
code fault, not bad luck: after :data:`MAX_QUICK_DEATHS` in a row everything stops, and
the supervisor exits with status 1 for the process manager to see. A worker that fails
before all of them first listened stops the start the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Sequence

from pondsocket.workers.worker import ENVIRONMENT

__all__ = ["Supervisor", "Worker"]

log = logging.getLogger("pondsocket.workers")

STARTUP_TIMEOUT = 60.0
"""Seconds a worker may take to listen (its startup hooks connect the broker)."""
STABLE_AFTER = 60.0
"""A worker that served this long before dying resets its back-off."""
MAX_QUICK_DEATHS = 5
"""Restarts in a row of workers that died within :data:`STABLE_AFTER` before giving up."""
MAX_BACKOFF = 30.0


class Worker:
    """One worker process and the supervisor's end of its link."""

    def __init__(self, index: int, process: asyncio.subprocess.Process, link: socket.socket):
        self.index = index
        self.process = process
        self.node_id = "?"
        self.started_at = time.monotonic()
        self.ready = asyncio.Event()
        self._link = link
        self._reader = asyncio.create_task(self._read(), name=f"pondsocket-worker-{index}")

    @classmethod
    async def start(cls, index: int, command: Sequence[str]) -> Worker:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env={**os.environ, ENVIRONMENT: f"{index}:{theirs.fileno()}"},
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the worker has its copy; ours must not keep its side open
        return cls(index, process, ours)

    @property
    def description(self) -> str:
        return f"worker {self.index} (pid {self.process.pid}, node {self.node_id})"

    async def _read(self) -> None:
        reader, writer = await asyncio.open_unix_connection(sock=self._link)
        try:
            while line := await reader.readline():
                head, _, rest = line.decode(errors="replace").strip().partition(" ")
                if head == "READY":
                    self.node_id = rest
                    self.ready.set()
        finally:
            writer.close()  # closes the link: a worker still running sees the end

    def signal(self, sig: int) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    async def close(self) -> None:
        """Forget the link once the process has ended."""
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Supervisor:
    """Run ``count`` copies of ``command`` as workers until SIGTERM/SIGINT."""

    def __init__(
        self,
        command: Sequence[str],
        count: int,
        *,
        address: str,
        transport: str,
        stop_timeout: float,
    ) -> None:
        self.command = list(command)
        self.count = count
        self.address = address
        self.transport = transport
        self.stop_timeout = stop_timeout
        """Seconds the workers get to shut down before they are killed."""
        self.workers: list[Worker] = []
        self._stop = asyncio.Event()
        self._failed = False
        self._signals = 0
        self._announcing: set[asyncio.Task[None]] = set()

    def run(self) -> int:
        """Blocking: the exit status (0 after a clean stop, 1 if a worker failed)."""
        return asyncio.run(self._run())

    async def _run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            if await self._start_all():
                watchers = [asyncio.create_task(self._watch(i)) for i in range(self.count)]
                await self._stop.wait()
                for watcher in watchers:
                    watcher.cancel()
                await asyncio.gather(*watchers, return_exceptions=True)
            clean = await self._stop_all()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        return 0 if clean and not self._failed else 1

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("%s: stopping %d workers gracefully", signal.Signals(sig).name, self.count)
            self._stop.set()
            return
        log.warning("%s again: killing the workers", signal.Signals(sig).name)
        self._failed = True
        for worker in self.workers:
            worker.signal(signal.SIGKILL)

    async def _start_all(self) -> bool:
        """Start every worker and wait until each listens; False if one failed first."""
        self.workers = [await Worker.start(i, self.command) for i in range(self.count)]
        waits = {asyncio.ensure_future(w.ready.wait()) for w in self.workers}
        exits = {asyncio.ensure_future(w.process.wait()): w for w in self.workers}
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT):
                while waits and not self._stop.is_set():
                    done, _ = await asyncio.wait(
                        {*waits, *exits, stop}, return_when=asyncio.FIRST_COMPLETED
                    )
                    waits -= done
                    failed = [exits[f] for f in done if f in exits]
                    if failed:
                        log.error(
                            "%s exited with status %s before listening; stopping",
                            failed[0].description,
                            failed[0].process.returncode,
                        )
                        self._failed = True
                        return False
        except TimeoutError:
            log.error("the workers did not all listen within %.0f s; stopping", STARTUP_TIMEOUT)
            self._failed = True
            return False
        finally:
            for future in (*waits, *exits, stop):
                future.cancel()
        if self._stop.is_set():
            return False
        log.info("PondSocket listening on %s (%s; %s)", self.address, self.transport, self._who())
        return True

    def _who(self) -> str:
        pids = ", ".join(str(w.process.pid) for w in self.workers)
        nodes = ", ".join(w.node_id for w in self.workers)
        return f"{self.count} workers: pids {pids}; nodes {nodes}"

    async def _watch(self, index: int) -> None:
        """Restart worker ``index`` whenever it dies, until the supervisor stops."""
        quick_deaths = 0
        while True:
            worker = self.workers[index]
            status = await worker.process.wait()
            await worker.close()
            lived = time.monotonic() - worker.started_at
            quick_deaths = quick_deaths + 1 if lived < STABLE_AFTER else 1
            if quick_deaths > MAX_QUICK_DEATHS:
                log.error(
                    "%s exited with status %s, its %d death in a row within %.0f s of"
                    " starting; stopping every worker",
                    worker.description, status, quick_deaths, STABLE_AFTER,
                )  # fmt: skip
                self._failed = True
                self._stop.set()
                return
            delay = min(MAX_BACKOFF, 2.0 ** (quick_deaths - 1))
            log.warning(
                "%s exited unexpectedly with status %s; restarting it in %.0f s",
                worker.description, status, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)
            self.workers[index] = await Worker.start(index, self.command)
            announce = asyncio.create_task(self._announce(self.workers[index]))
            self._announcing.add(announce)
            announce.add_done_callback(self._announcing.discard)

    async def _announce(self, worker: Worker) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STARTUP_TIMEOUT):
                await worker.ready.wait()
                log.info("%s is listening again", worker.description)

    async def _stop_all(self) -> bool:
        """SIGTERM to every worker, then wait; those still running after ``stop_timeout``
        are killed. True if every worker ended cleanly."""
        for worker in self.workers:
            worker.signal(signal.SIGTERM)
        clean = True
        deadline = time.monotonic() + self.stop_timeout
        for worker in self.workers:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    status = await worker.process.wait()
            except TimeoutError:
                log.error("%s still running after %.0f s; killing it", worker.description,
                          self.stop_timeout)  # fmt: skip
                worker.signal(signal.SIGKILL)
                status = await worker.process.wait()
            await worker.close()
            # uvicorn re-raises the SIGTERM it handled once it has shut down: that is clean
            if status not in (0, -signal.SIGTERM):
                log.error("%s ended with status %s", worker.description, status)
                clean = False
        return clean
