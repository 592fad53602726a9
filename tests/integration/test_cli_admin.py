"""``pondsocket serve --admin-path PATH --admin-token-file FILE``: the admin page from the
command line, its token never in the arguments."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pondsocket.cli import main

TOKEN = "cli-admin-token-0123456789"
APP = "from pondsocket import PondSocket\npond = PondSocket()\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "admin_cli_app.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("asgi", [False, True], ids=["standalone", "asgi"])
def test_admin_page_from_the_command_line(app_dir: Path, asgi: bool) -> None:
    token_file = app_dir / "admin.token"
    token_file.write_text(f"# the admin token\n\n{TOKEN}\n")
    port = _free_port()
    command = [sys.executable, "-m", "pondsocket", "serve", "admin_cli_app:pond"]
    command += ["--port", str(port), "--admin-path", "/ops", "--admin-token-file", str(token_file)]
    proc = subprocess.Popen(
        [*command, *(["--asgi"] if asgi else [])],
        cwd=app_dir,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}/ops"
        deadline = time.monotonic() + 15
        while True:
            try:
                page = httpx.get(base, timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "did not start"
                time.sleep(0.1)
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert httpx.get(f"{base}/api/state", timeout=5).status_code == 401
        answer = httpx.get(
            f"{base}/api/state", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
        )
        assert answer.status_code == 200 and "node" in answer.json()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert TOKEN not in out  # neither logged nor echoed


def test_admin_options_are_checked_before_serving(
    app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    short = app_dir / "short.token"
    short.write_text("short\n")
    empty = app_dir / "empty.token"
    empty.write_text("# nothing here\n\n")
    cases = {
        ("--admin-path", "/ops"): "neither admin_token nor admin_auth",
        ("--admin-path", "/ops", "--admin-token-file", str(short)): "at least 16",
        ("--admin-path", "/ops", "--admin-token-file", str(empty)): "holds no token",
        ("--admin-token-file", str(app_dir / "missing")): "cannot read the admin token file",
    }
    for flags, message in cases.items():
        assert main(["serve", "admin_cli_app:pond", *flags]) == 2, flags
        err = capsys.readouterr().err
        assert err.startswith("pondsocket: error: ") and message in err, (flags, err)
        assert len(err.strip().splitlines()) == 1
