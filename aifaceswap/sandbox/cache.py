"""A content-addressed cache of image-swap results, for load tests (``SandboxConfig.result_cache``).

The key is the operation, the SHA-256 of every input's bytes and the request's options. The first job of a key
computes; every later job of the same key waits for that result and gets a copy of its bytes (a hard link where
the file system allows), so N identical requests cost one swap. Each job keeps its own task_id, charge, result
URL and callback: only the CPU work is shared.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from faceswap_flows.aifaceswap.sandbox.vision import VisionError

Compute = Callable[[], bytes]


def cache_key(operation: str, inputs: Sequence[bytes], options: dict[str, Any] | None = None) -> str:
    """The key of a request: its operation, the SHA-256 of each input (in order) and its options."""
    described = {
        "operation": operation,
        "inputs": [hashlib.sha256(data).hexdigest() for data in inputs],
        "options": options or {},
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


class CachedResult:
    """One key's result: computed once (by whichever job runs first), then copied for every other job."""

    def __init__(self, path: Path, compute: Compute) -> None:
        self.path = path
        self._compute: Compute | None = compute
        self._error: str | None = None
        self._lock = threading.Lock()
        self.uses = 0

    def write(self, output: Path) -> None:
        """Write this key's result to ``output`` (runs in a job thread); computes it if no job has yet."""
        with self._lock:
            self.uses += 1
            if self._error is not None:
                raise VisionError(self._error)
            if self._compute is not None:
                try:
                    data = self._compute()
                except VisionError as error:  # the same inputs fail the same way: every job of the key fails
                    self._error = str(error)
                    self._compute = None
                    raise
                self.path.write_bytes(data)
                self._compute = None  # drops the decoded inputs the closure holds
        try:
            os.link(self.path, output)
        except OSError:
            shutil.copyfile(self.path, output)


class ResultCache:
    """Thread-safe map of cache key -> CachedResult, kept in ``directory`` for the sandbox's lifetime."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._entries: dict[str, CachedResult] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> CachedResult | None:
        """The entry of ``key`` if a request with it was accepted before (counts a hit)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self.hits += 1
            return entry

    def add(self, key: str, suffix: str, compute: Compute) -> CachedResult:
        """The entry of ``key``: a new one that computes with ``compute``, or the one another request added first."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                entry = self._entries[key] = CachedResult(self.directory / f"{key}{suffix}", compute)
            else:
                self.hits += 1
            return entry

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._entries), "hits": self.hits, "misses": self.misses}
