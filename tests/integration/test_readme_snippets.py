"""The README's first server and its ``TestClient`` test run as shown, under plain pytest
(its own config, not this project's ``asyncio_mode = "auto"``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"

# The README leaves check_token to the reader ("your code"): the snippet's test uses "abc".
CHECK_TOKEN = """
from types import SimpleNamespace


def check_token(token):
    return SimpleNamespace(id="u1", name="ann") if token == "abc" else None

"""


def test_readme_testclient_snippet_passes_under_plain_pytest(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    server = next(b for b in blocks if "pond = PondSocket()" in b)
    test = next(b for b in blocks if "TestClient(pond)" in b)
    (tmp_path / "myapp.py").write_text(CHECK_TOKEN + server)
    (tmp_path / "test_chat.py").write_text(test)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # plain pytest: no project config
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_chat.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
