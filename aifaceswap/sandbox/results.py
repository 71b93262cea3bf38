"""Result files of finished jobs, served at unguessable URLs that expire like the service's temporary ones."""

from __future__ import annotations

import secrets
import shutil
import threading
import time
from pathlib import Path


class ResultStore:
    def __init__(self, directory: Path, ttl_seconds: float) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ttl_seconds = ttl_seconds
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def new_path(self, task_id: str, suffix: str) -> Path:
        """A fresh path for a job's output, named so that the URL cannot be guessed from the task_id."""
        return self.directory / f"{task_id}-{secrets.token_urlsafe(12)}{suffix}"

    def publish(self, path: Path) -> str:
        """Start the expiry clock of a finished output; returns its name in the results URL."""
        with self._lock:
            self._expiry[path.name] = time.time() + self.ttl_seconds
        return path.name

    def get(self, name: str) -> Path | None:
        """The file behind a name, or None when unknown or expired (an expired file is deleted)."""
        with self._lock:
            expires = self._expiry.get(name)
            if expires is None:
                return None
            if time.time() > expires:
                del self._expiry[name]
                (self.directory / name).unlink(missing_ok=True)
                return None
        return self.directory / name

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
