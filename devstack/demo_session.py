"""What a running demo leaves in its folder, and takes away when it stops: a lock that a second demo reads (it
refuses to start, saying where the first one runs), and a ``prefect.toml`` that points every Prefect command and
``faceswap-flows`` run in that folder at the demo's Prefect server (Prefect reads ``prefect.toml`` from the
current folder; a ``PREFECT_API_URL`` in the environment still wins)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MARK = "# Written by `faceswap-flows demo` while it runs; removed when it stops."


class DemoAlreadyRunning(RuntimeError):
    """Another demo runs from this folder; the message says where its servers are."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_demo(state_dir: Path) -> dict[str, object] | None:
    """What the lock of a demo still running from this folder says, or None (no lock, or its process is gone)."""
    lock = state_dir / "demo.lock"
    try:
        facts = json.loads(lock.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return facts if isinstance(facts.get("pid"), int) and _alive(facts["pid"]) else None


@contextmanager
def demo_lock(state_dir: Path) -> Iterator[dict[str, object]]:
    """Hold the folder's demo lock (fill the dict with where the servers run); DemoAlreadyRunning when another
    live demo holds it."""
    found = running_demo(state_dir)
    if found is not None:
        raise DemoAlreadyRunning(
            f"a demo is already running from this folder (pid {found['pid']}, since {found.get('started')}): "
            f"Prefect UI {found.get('ui_url', '?')}, sandbox {found.get('sandbox', '?')}, receiver "
            f"{found.get('receiver', '?')}. Use it (faceswap-flows commands in this folder talk to it), or stop it "
            "(press Enter in its terminal) before starting another"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = state_dir / "demo.lock"
    facts: dict[str, object] = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    lock.write_text(json.dumps(facts))
    try:
        yield facts
    finally:
        lock.unlink(missing_ok=True)


def save_lock(state_dir: Path, facts: dict[str, object]) -> None:
    (state_dir / "demo.lock").write_text(json.dumps(facts))


@contextmanager
def prefect_settings_here(folder: Path, api_url: str) -> Iterator[Path | None]:
    """A ``prefect.toml`` in ``folder`` naming the demo's API while the demo runs (a user's own prefect.toml is
    never touched: then None, and the demo prints the variable to set instead)."""
    target = folder / "prefect.toml"
    if target.exists() and MARK not in target.read_text():
        yield None
        return
    target.write_text(f'{MARK}\n[api]\nurl = "{api_url}"\n')
    try:
        yield target
    finally:
        if target.exists() and MARK in target.read_text():
            target.unlink()
