"""A broker that fails at startup: one line naming the cause, a non-zero exit, no
traceback (the real Redis, RabbitMQ and NATS of the machine, wrongly addressed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

APP = "from pondsocket import PondSocket\npond = PondSocket()\n"


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "startup_app.py").write_text(APP)
    command = [sys.executable, "-m", "pondsocket", "serve", "startup_app:pond", "--port", "0"]
    return subprocess.run(
        [*command, *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "never retrieved" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert line.startswith("pondsocket: error: cannot start: "), result.stderr
    return line


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("redis://127.0.0.1:1/0", "the broker is unreachable: cannot connect to Redis"),
        ("redis://nosuchhost.invalid:6379/0", "the broker is unreachable"),
        ("redis://pond:wrong-pw@127.0.0.1:6379/0", "the broker refused the credentials"),
        ("rediss://127.0.0.1:6379/0", "TLS with the broker failed"),
        ("amqp://guest:wrong-pw@127.0.0.1:5672/", "the broker refused the credentials"),
        ("amqps://127.0.0.1:5672/", "TLS with the broker failed"),
        ("nats://127.0.0.1:1", "the broker is unreachable: cannot connect to NATS"),
    ],
)
def test_serve_names_the_cause_in_one_line(tmp_path: Path, url: str, cause: str) -> None:
    line = _error_line(_serve(tmp_path, "--pubsub", url))
    assert line.startswith(f"pondsocket: error: cannot start: {cause}"), line
    assert "wrong-pw" not in line


def test_pond_run_logs_one_line_and_exits_1(tmp_path: Path) -> None:
    script = tmp_path / "run_app.py"
    script.write_text(
        textwrap.dedent(
            """
            from pondsocket import PondSocket
            from pondsocket.pubsub.urls import connect_url

            pond = PondSocket()

            @pond.on_startup
            async def broker() -> None:
                pond.use_pubsub(await connect_url("redis://127.0.0.1:1/0"))

            pond.run(port=0)
            print("not reached")
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert (
        " ERROR pondsocket: cannot start: the broker is unreachable: cannot connect to Redis"
        in line
    )


def test_pond_run_shows_its_listening_line_without_logging_configured(tmp_path: Path) -> None:
    script = tmp_path / "plain_app.py"
    script.write_text("from pondsocket import PondSocket\nPondSocket().run(port=0)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert " INFO pondsocket.standalone: PondSocket listening on ws://127.0.0.1:" in line
        assert "standalone; pubsub: InMemoryPubSub; node " in line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # reads to the end and closes the pipe


def test_serve_asgi_exits_with_uvicorns_startup_failure_and_no_traceback(tmp_path: Path) -> None:
    result = _serve(tmp_path, "--asgi", "--redis", "redis://127.0.0.1:1/0")
    assert result.returncode == 3, result.stderr  # uvicorn's status for a failed startup
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "unreachable" in line]
    assert len(lines) == 1 and "cannot connect to Redis" in lines[0], result.stderr
