"""Every example runs: `make serve`'s server tour and `make demo`'s embedded tour, as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from wire_server import closed_port

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEMLANE_HOME": str(home)}
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_serve_example_starts_the_server_and_shows_it_working(tmp_path: Path) -> None:
    port = closed_port()
    done = _run("serve.py", tmp_path, "--once", "--port", str(port))
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert '"event": "ADD"' in out and "POST /v1/memories/search" in out
    assert "without an API key: HTTP 401" in out and "AuthenticationError" in out
    assert "PermissionDenied" in out and f"serving http://127.0.0.1:{port}" in out
    key = (tmp_path / "demo-admin.key").read_text().strip()
    assert key.startswith("mlk_") and key not in (tmp_path / "keys.db").read_bytes().decode("latin-1")
    assert "vegetarian" not in (tmp_path / "audit.log").read_text()  # the audit log holds no memory text
    again = _run("serve.py", tmp_path, "--once", "--port", str(port))  # reuses the saved admin key
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "demo-admin.key").read_text().strip() == key
    written = {p.name for p in tmp_path.iterdir()}
    assert written <= {"audit.log", "demo-admin.key", "keys.db", "memlane.db", "memlane.db-shm", "memlane.db-wal"}


@pytest.mark.slow
def test_embedded_demo_runs(tmp_path: Path) -> None:
    done = _run("demo.py", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "another user sees nothing" in done.stdout
    assert (tmp_path / "memlane.db").exists()
