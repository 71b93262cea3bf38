"""`make demo` installs what the demo needs (the sandbox and the photos, not the dev tools) and says so, with pip's
progress shown; `make test` installs the dev tools; each install is remembered by its own stamp. Read with
``make -n`` (nothing is installed or started)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def planned(target: str, venv: Path) -> list[str]:
    """The command lines ``make <target>`` would run with the virtualenv ``venv``."""
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", target, f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.splitlines()


def pip_installs(lines: list[str]) -> list[str]:
    return [line for line in lines if "pip install" in line and "--upgrade pip" not in line]


def test_demo_installs_the_sandbox_and_photos_without_dev_and_says_so(tmp_path: Path) -> None:
    lines = planned("demo", tmp_path / "venv")
    [install] = pip_installs(lines)
    assert "'.[sandbox,photos]'" in install and "dev" not in install
    assert "--quiet" not in install
    said = [line for line in lines if line.startswith("echo ")]
    assert any("minutes" in line for line in said), said
    assert lines[-1].endswith("faceswap-flows demo")


def test_test_installs_the_dev_tools(tmp_path: Path) -> None:
    [install] = pip_installs(planned("test", tmp_path / "venv"))
    assert "'.[dev]'" in install and "--quiet" not in install


def _venv_with_stamps(tmp_path: Path, *stamps: str) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    later = time.time() + 60
    for stamp in stamps:
        (venv / stamp).touch()
        os.utime(venv / stamp, (later, later))
    return venv


def test_each_install_is_remembered_by_its_stamp(tmp_path: Path) -> None:
    demo_only = _venv_with_stamps(tmp_path, ".installed-demo")
    assert pip_installs(planned("demo", demo_only)) == []
    assert "'.[dev]'" in pip_installs(planned("test", demo_only))[0], "the demo's install lacks the dev tools"
    both = _venv_with_stamps(tmp_path / "both", ".installed-demo", ".installed")
    assert pip_installs(planned("demo", both)) == [] and pip_installs(planned("test", both)) == []
