"""``pondsocket bench --systems ours,upstream,socketio``: other systems in the same run.

The scenarios of :mod:`pondsocket_bench.scenarios` run unchanged against each system; only
the processes differ (:class:`SystemChildren`):

* ``ours``: this package (``--transport`` standalone and/or asgi), as without ``--systems``;
* ``upstream``: the PyPI ``pondsocket`` + ``pondsocket-asgi`` packages on uvicorn
  (:mod:`pondsocket_bench.compare_upstream`), driven by the same picows load generator;
* ``socketio``: python-socketio with ``AsyncRedisManager`` on uvicorn
  (:mod:`pondsocket_bench.compare_socketio`), driven by the Socket.IO load generator
  :mod:`pondsocket_bench.sio_loadgen` (the same connection/send/accounting code, other
  framing).

Other systems never run in this interpreter: each gets a virtualenv of its own under the
cache directory (``$PONDSOCKET_BENCH_CACHE``, else ``$XDG_CACHE_HOME/pondsocket-bench``, else
``~/.cache/pondsocket-bench``), built with pip on first use, and a small server script
generated there at run time (their public API only; nothing of theirs is copied here).
uvicorn, websockets and uvloop are pinned to the versions installed next to this package,
so the hosts are the same. Results get a ``system`` column and ratio columns against ours.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import fcntl
import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pondsocket_bench.loadgen import LoadConfig, config_json
from pondsocket_bench.procs import _LINE_LIMIT, Child, Children

SYSTEMS = ("ours", "upstream", "socketio")
BUILD_TIMEOUT = 600.0
HOST_PACKAGES = ("uvicorn", "websockets", "uvloop")
"""Pinned in every cache venv to the versions installed here: the same host for all."""

RATIO_KEYS: dict[str, list[tuple[str, str]]] = {
    "fanout": [("server_us_per_delivery", "µs"), ("sustained_per_s", "rate")],  # 0-loss runs
    "join-storm": [("server_us_per_join", "µs"), ("joins_per_s", "rate")],
    "idle": [("rss_per_connection_kib", "KiB")],
}
"""Per scenario: (figure, short name) compared as row ÷ ours (for each of our transports)."""


class EnvError(RuntimeError):
    """A system's cache venv could not be built."""


@dataclass(frozen=True)
class SystemSpec:
    """How to install and run one other system."""

    name: str
    requirements: tuple[str, ...]
    app_source: str
    """Python source defining ``build_app(args) -> ASGI app`` (the serve code is added)."""
    scenarios: frozenset[str]
    loadgen_module: str = "pondsocket_bench.loadgen"
    needs_redis: bool = False
    transport: str = "asgi"


@dataclass
class SystemEnv:
    spec: SystemSpec
    python: Path
    app_file: Path
    versions: dict[str, str] = field(default_factory=dict)


def cache_dir() -> Path:
    explicit = os.environ.get("PONDSOCKET_BENCH_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pondsocket-bench"


def spec(name: str) -> SystemSpec:
    """The spec of an other system (``upstream`` or ``socketio``)."""
    if name == "upstream":
        from pondsocket_bench.compare_upstream import UPSTREAM

        return UPSTREAM
    if name == "socketio":
        from pondsocket_bench.compare_socketio import SOCKETIO

        return SOCKETIO
    raise KeyError(name)


def _host_pins() -> list[str]:
    pins = []
    for dist in HOST_PACKAGES:
        try:
            pins.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(dist)
    return pins


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_env(system: SystemSpec, *, quiet: bool = False) -> SystemEnv:
    """The system's venv (built with pip on first use, or when its requirements changed)
    and its server script, written fresh into the cache dir."""
    root = cache_dir()
    venv = root / f"{system.name}-venv"
    python = venv / "bin" / "python"
    requirements = [*system.requirements, *_host_pins()]
    marker = venv / "pondsocket-bench.json"
    with _locked(root / f"{system.name}.lock"):
        try:
            state = json.loads(marker.read_text())
        except (OSError, ValueError):
            state = {}
        if state.get("requirements") != requirements or not python.exists():
            if not quiet:
                print(f"bench: building {venv} ({' '.join(requirements)})", file=sys.stderr)
            _run([sys.executable, "-m", "venv", "--clear", str(venv)])
            pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            _run([*pip, *requirements])
            names = [r.split("==")[0].split(">")[0].split("<")[0] for r in requirements]
            probe = (
                "import importlib.metadata as m, json, sys; "
                "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
            )
            versions = json.loads(_run([str(python), "-c", probe, *names]))
            state = {"requirements": requirements, "versions": versions}
            marker.write_text(json.dumps(state, indent=2) + "\n")
        app_file = root / f"{system.name}_app.py"
        source = _SERVE_SOURCE.replace("# BUILD_APP\n", textwrap.dedent(system.app_source))
        if not app_file.exists() or app_file.read_text() != source:
            app_file.write_text(source)
    return SystemEnv(system, python, app_file, dict(state.get("versions", {})))


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvError(f"{argv[0]}: {exc}") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if "is ignored" not in line]
        detail = "\n".join(lines[-5:])
        raise EnvError(f"{' '.join(argv[:4])}... failed ({done.returncode}): {detail}")
    return done.stdout


# The server script of an other system: its build_app(args), then this serve code
# (stdlib + uvicorn only; configured as our asgi transport: websockets-sansio, no
# permessage-deflate, READY <port> on stdout, SIGTERM/--max-seconds/parent death stop it).
_SERVE_SOURCE = '''\
"""Generated by pondsocket_bench.compare: a benchmark server of another system."""

import argparse
import asyncio
import contextlib
import ctypes
import os
import resource
import signal
import socket

import uvicorn

# BUILD_APP


def _die_with_parent(parent):
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


async def _serve(args):
    app = build_app(args)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        lifespan="on",
        log_level="warning",
        backlog=4096,
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(args.max_seconds, stop.set)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("uvicorn stopped during startup")
        await asyncio.sleep(0.01)
    print(f"READY {port}", flush=True)
    try:
        await asyncio.wait(
            [task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(task, 10)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--presence", action="store_true")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--redis")
    parser.add_argument("--namespace", default="bench")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--parent", type=int)
    args = parser.parse_args()
    if args.parent:
        _die_with_parent(args.parent)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1 << 20), hard))
    import uvloop

    uvloop.run(_serve(args))


if __name__ == "__main__":
    main()
'''


class SystemChildren(Children):
    """:class:`Children` whose ``server`` (and, for Socket.IO, ``loadgen``) start the other
    system: the scenario code that calls them runs unchanged."""

    def __init__(self, env: SystemEnv | None, redis: str) -> None:
        super().__init__()
        self.env = env
        self.redis = redis

    async def server(
        self,
        name: str,
        transport: str,
        *,
        presence: bool,
        max_seconds: float,
        redis: str | None = None,
        namespace: str = "bench",
    ) -> tuple[Child, int]:
        env = self.env
        if env is None:
            return await super().server(
                name,
                transport,
                presence=presence,
                max_seconds=max_seconds,
                redis=redis,
                namespace=namespace,
            )
        args = [str(env.app_file), "--max-seconds", str(max_seconds), "--parent", str(os.getpid())]
        if presence:
            args.append("--presence")
        if env.spec.needs_redis:
            from pondsocket_bench.scenarios import redis_server_pid

            await redis_server_pid(self.redis)  # fails early when Redis is unreachable
            args += ["--redis", self.redis, "--namespace", f"bench-{uuid.uuid4().hex[:12]}"]
        process = await asyncio.create_subprocess_exec(
            str(env.python),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
            start_new_session=True,
            limit=_LINE_LIMIT,
        )
        child = Child(name, process)
        self._children.append(child)
        port = await child.expect("READY", timeout=60)
        return child, int(port)

    async def loadgen(self, name: str, config: LoadConfig) -> Child:
        if self.env is None or self.env.spec.loadgen_module == "pondsocket_bench.loadgen":
            return await super().loadgen(name, config)
        config.parent = os.getpid()
        module = self.env.spec.loadgen_module
        return await self.spawn(name, module, [config_json(config)], stdin=True)


# -- running -------------------------------------------------------------------


def parse_systems(text: str) -> list[str]:
    systems = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if not systems or unknown:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(SYSTEMS)}, got {text!r}"
        )
    return list(dict.fromkeys(systems))


def supported(system: str, scenario: str) -> bool:
    return system == "ours" or scenario in spec(system).scenarios


async def run_all(
    names: list[str],
    transports: list[str],
    settings: Any,
    envs: dict[str, SystemEnv | None],
    *,
    quiet: bool,
) -> list[dict[str, Any]]:
    """Every scenario on every system (systems alternate within a scenario)."""
    from pondsocket_bench.limits import raise_open_file_limit
    from pondsocket_bench.progress import Progress
    from pondsocket_bench.scenarios import SCENARIOS, TRANSPORT_FREE, Run

    raise_open_file_limit()
    progress = Progress(enabled=not quiet)
    results: list[dict[str, Any]] = []
    for name in names:
        for system, env in envs.items():
            if not supported(system, name):
                progress.say(f"{name}: not run on {system} (ours only)")
                continue
            if env is not None:
                system_transports = [env.spec.transport]
            elif name in TRANSPORT_FREE:
                system_transports = ["-"]
            else:
                system_transports = transports
            for transport in system_transports:
                label = f"{name}/{system}/{transport}"
                children = SystemChildren(env, settings.redis)
                run = Run(settings, children, progress, label)
                row: dict[str, Any] = {"scenario": name, "system": system, "transport": transport}
                try:
                    row.update(await SCENARIOS[name](run, transport))
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"
                    progress.say(f"{label}: failed: {row['error']}")
                finally:
                    await children.close()
                if env is not None:
                    row["versions"] = env.versions
                results.append(row)
    add_ratios(results)
    return results


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Add ``<figure>_vs_ours_<transport>`` = row ÷ ours row of that transport, same
    scenario, for the figures of :data:`RATIO_KEYS`."""
    for row in results:
        bases = {
            r["transport"]: r
            for r in results
            if r["scenario"] == row["scenario"] and r.get("system") == "ours" and "error" not in r
        }
        for key, _ in RATIO_KEYS.get(row["scenario"], []):
            for transport, base in bases.items():
                mine, theirs = row.get(key), base.get(key)
                ratio = round(mine / theirs, 2) if mine and theirs else None
                row[f"{key}_vs_ours_{transport}"] = ratio


def print_tables(results: Sequence[dict[str, Any]], out: TextIO = sys.stdout) -> None:
    """As :func:`pondsocket_bench.report.print_tables`, with ``system`` and ratio columns."""
    from pondsocket_bench.report import COLUMNS, _cell

    for scenario in dict.fromkeys(r["scenario"] for r in results):
        rows = [r for r in results if r["scenario"] == scenario]
        ours = [r["transport"] for r in rows if r.get("system") == "ours" and "error" not in r]
        ratios = [
            (f"{key}_vs_ours_{t}", f"{short} ÷{t}")
            for key, short in RATIO_KEYS.get(scenario, [])
            for t in ours
        ]
        columns = [
            ("system", "system"),
            ("transport", "transport"),
            *COLUMNS.get(scenario, []),
            *ratios,
        ]
        table = [[header for _, header in columns]]
        errors = []
        for row in rows:
            if "error" in row:
                errors.append(f"  {row.get('system')}/{row['transport']}: ERROR {row['error']}")
                continue
            table.append([_cell(row.get(key)) for key, _ in columns])
        widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
        print(f"\n{scenario}", file=out)
        for i, line in enumerate(table):
            cells = [
                c.ljust(w) if j < 2 else c.rjust(w)
                for j, (c, w) in enumerate(zip(line, widths, strict=True))
            ]
            print("  " + "  ".join(cells), file=out)
            if i == 0:
                print("  " + "  ".join("-" * w for w in widths), file=out)
        for error in errors:
            print(error, file=out)
        if ratios:
            print(
                "  (X ÷T = this row's figure ÷ ours/T's: µs and KiB >1 cost more than ours, "
                "rate <1 is slower than ours)",
                file=out,
            )
        versions = {r["system"]: r["versions"] for r in rows if r.get("versions")}
        for system, installed in versions.items():
            pins = ", ".join(f"{k} {v}" for k, v in installed.items())
            print(f"  {system}: {pins}", file=out)
    out.flush()


def compare_main(
    args: argparse.Namespace, names: list[str], transports: list[str], settings: Any
) -> int:
    """``pondsocket bench ... --systems ...``: build the venvs, run, print, write JSON."""
    import uvloop

    from pondsocket_bench import report

    envs: dict[str, SystemEnv | None] = {}
    for system in args.systems:
        if system == "ours":
            envs[system] = None
            continue
        try:
            envs[system] = ensure_env(spec(system), quiet=args.quiet)
        except EnvError as exc:
            print(f"pondsocket bench: error: cannot set up {system}: {exc}", file=sys.stderr)
            return 2
    try:
        results = uvloop.run(run_all(names, transports, settings, envs, quiet=args.quiet))
    except KeyboardInterrupt:
        print("pondsocket bench: interrupted (all child processes stopped)", file=sys.stderr)
        return 130
    print_tables(results)
    if args.json:
        recorded = {**dataclasses.asdict(settings), "systems": list(args.systems)}
        report.write_json(args.json, report.document(results, recorded))
    if args.plot:
        print("pondsocket bench: --plot is not available with --systems", file=sys.stderr)
    return 1 if any("error" in r for r in results) else 0
