"""Count the writes of every file under a folder with Linux inotify (through ctypes, in a thread): how many times
each result was written, so a test can tell "stored exactly once" from "stored, then overwritten"."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import threading
from collections import Counter
from pathlib import Path

IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE, IN_ISDIR = 0x8, 0x80, 0x100, 0x40000000
HEADER = struct.Struct("iIII")


class WriteWatch:
    """``counts[relative path]`` = files closed after writing, or renamed into place, at that path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.counts: Counter[str] = Counter()
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._dirs: dict[int, Path] = {}
        self._scanned: set[str] = set()  # written before their new folder was watched; counted by the scan
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _watch(self, folder: Path, *, new: bool = False) -> None:
        """Watch ``folder`` and the folders in it; in a ``new`` folder (made during the watch), a file already there
        was written before its watch existed: counted once here (its own event, if it still comes, is not)."""
        wd = self._libc.inotify_add_watch(self._fd, str(folder).encode(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE)
        if wd >= 0:
            self._dirs[wd] = folder
        for child in folder.iterdir():  # made before the watch was in place
            if child.is_dir() and child not in self._dirs.values():
                self._watch(child, new=new)
            elif new and child.is_file() and not child.name.startswith("."):
                relative = str(child.relative_to(self.root))
                self.counts[relative] += 1
                self._scanned.add(relative)

    def start(self) -> WriteWatch:
        self.root.mkdir(parents=True, exist_ok=True)
        self._watch(self.root)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.2)
            if ready:
                self._read()

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 1 << 16)
        except BlockingIOError:
            return
        offset = 0
        while offset < len(data):
            wd, mask, _cookie, size = HEADER.unpack_from(data, offset)
            name = data[offset + HEADER.size : offset + HEADER.size + size].rstrip(b"\0").decode()
            offset += HEADER.size + size
            folder = self._dirs.get(wd)
            if folder is None:
                continue
            path = folder / name
            if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                self._watch(path, new=True)
            elif mask & (IN_CLOSE_WRITE | IN_MOVED_TO) and not name.startswith("."):
                relative = str(path.relative_to(self.root))
                if relative in self._scanned:  # the scan of its new folder counted this write already
                    self._scanned.discard(relative)
                else:
                    self.counts[relative] += 1

    def stop(self) -> Counter[str]:
        self._stop.set()
        self._thread.join(2)
        self._read()
        os.close(self._fd)
        return self.counts
