"""The block that stores media: a local folder or an S3 (or S3-compatible) prefix, through fsspec."""

from __future__ import annotations

import functools
import os
import posixpath
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

import anyio.to_thread
import fsspec
from prefect.filesystems import WritableFileSystem
from pydantic import Field, PrivateAttr, SecretStr, field_validator

from faceswap_flows.blocks.documentation import DOCUMENTATION_URL

UPLOAD_PART_BYTES = 8 * 2**20
UPLOAD_PARTS_IN_FLIGHT = 4


class StorageError(Exception):
    """A storage operation that cannot be done as asked; the message says how to fix it."""


def _resolved_folder(path: str) -> str:
    return _resolved_in(path, os.getcwd() if not path.startswith(("/", "~")) else "")


@functools.lru_cache(maxsize=64)
def _resolved_in(path: str, cwd: str) -> str:
    return str((Path(cwd) / Path(path).expanduser()).resolve())


class MediaStorage(WritableFileSystem):
    """Where inputs are read from and results written to: a local folder (default) or ``s3://bucket/prefix``.

    It hands out URLs the API can fetch: ``public_base_url`` + key when the files are published (a CDN, or a
    local file server for the sandbox), else a presigned S3 URL that expires. It is also a Prefect result
    storage, so every worker of a pool can share task results through it.

    Example:
        ```python
        from faceswap_flows.blocks import MediaStorage

        storage = MediaStorage(basepath="s3://media/faceswap", endpoint_url="http://127.0.0.1:9000",
                               aws_access_key_id="key", aws_secret_access_key="secret")
        key = storage.upload("photos/team.jpg", "inputs/team.jpg")
        url = storage.url_for(key)          # presigned, valid for url_expiry_seconds
        ```
    """

    _block_type_name = "Faceswap Media Storage"
    _block_type_slug = "faceswap-media-storage"
    _description = "A local folder or s3:// prefix for face-swap inputs and results, with URLs the API can fetch."
    _documentation_url = DOCUMENTATION_URL
    _code_example = """
        ```python
        from faceswap_flows.blocks import MediaStorage

        storage = MediaStorage.load("BLOCK_NAME")
        key = storage.upload("photos/team.jpg", "inputs/team.jpg")
        url = storage.url_for(key)
        ```
    """

    basepath: str = Field(
        default="faceswap-media",
        description="A local folder (relative to the working directory, or absolute) or s3://bucket/prefix.",
    )
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (MinIO, moto, R2...).")
    aws_access_key_id: str | None = Field(default=None, description="S3 access key id (default: AWS's chain).")
    aws_secret_access_key: SecretStr | None = Field(default=None, description="S3 secret access key.")
    region_name: str | None = Field(default=None, description="S3 region.")
    public_base_url: str | None = Field(
        default=None,
        description="If the files are published (a CDN, or a file server over this folder): URL of basepath.",
    )
    url_expiry_seconds: int = Field(default=3600, gt=0, description="Lifetime of presigned S3 URLs.")

    _fs: fsspec.AbstractFileSystem | None = PrivateAttr(default=None)

    @field_validator("basepath")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in ("", "file", "s3", "s3a", "memory") and len(scheme) > 1:
            raise ValueError(f"basepath must be a local folder or s3://bucket/prefix, got {value!r}")
        if scheme in ("s3", "s3a") and not urlsplit(value).netloc:
            raise ValueError(f"basepath {value!r} names no bucket: use s3://bucket/prefix")
        return value.rstrip("/") or value

    @property
    def is_s3(self) -> bool:
        return urlsplit(self.basepath).scheme in ("s3", "s3a")

    @property
    def root(self) -> str:
        """The basepath as the filesystem sees it: ``bucket/prefix`` for S3, an absolute folder locally."""
        if self.is_s3:
            parts = urlsplit(self.basepath)
            return f"{parts.netloc}{parts.path}".rstrip("/")
        if self.basepath.startswith("memory://"):
            return self.basepath.removeprefix("memory:/")
        return _resolved_folder(self.basepath.removeprefix("file://"))

    @property
    def filesystem(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem behind the block (s3fs for s3://, the local one otherwise)."""
        if self._fs is None:
            if self.is_s3:
                options: dict[str, Any] = {}
                if self.aws_access_key_id:
                    options["key"] = self.aws_access_key_id
                if self.aws_secret_access_key:
                    options["secret"] = self.aws_secret_access_key.get_secret_value()
                client_kwargs = {
                    k: v for k, v in (("endpoint_url", self.endpoint_url), ("region_name", self.region_name)) if v
                }
                self._fs = fsspec.filesystem(
                    "s3", client_kwargs=client_kwargs, config_kwargs={"signature_version": "s3v4"}, **options
                )
            elif self.basepath.startswith("memory://"):
                self._fs = fsspec.filesystem("memory")
            else:
                self._fs = fsspec.filesystem("file", auto_mkdir=True)
        return self._fs

    def path_of(self, key: str) -> str:
        """The filesystem path of a key; keys are relative, and may not climb out of basepath."""
        key = key.replace("\\", "/").lstrip("/")
        parts = key.split("/")
        if all(part in ("", ".") for part in parts) or ".." in parts or "\x00" in key:
            raise StorageError(
                f"storage key {key!r} is empty, holds a NUL or leaves basepath: use a relative key like 'inputs/a.jpg'"
            )
        return posixpath.join(self.root, key)

    def uri(self, key: str) -> str:
        """The key as a full URI (``s3://bucket/prefix/key`` or an absolute local path)."""
        path = self.path_of(key)
        return f"s3://{path}" if self.is_s3 else path

    def upload(self, local_path: str | Path, key: str | None = None) -> str:
        """Copy a local file into storage in chunks (never whole in memory); returns its key.

        The object appears whole or not at all (S3 objects do; local files are written aside, then renamed), so
        a reader never sees a half-written input.
        """
        local = Path(local_path)
        if not local.is_file():
            raise StorageError(f"{local}: no such file: check the path")
        key = key or f"inputs/{local.name}"
        target = self.path_of(key)
        if self.is_s3:  # multipart, a few parts in flight: memory stays near UPLOAD_PART_BYTES * UPLOAD_PARTS_IN_FLIGHT
            self.filesystem.put_file(
                str(local), target, chunksize=UPLOAD_PART_BYTES, max_concurrency=UPLOAD_PARTS_IN_FLIGHT
            )
            return key
        self._write_aside(target, lambda partial: self.filesystem.put_file(str(local), partial))
        return key

    def _write_aside(self, target: str, write: Callable[[str], object]) -> None:
        """A local file written under a temporary name next to ``target``, then renamed to it."""
        self.filesystem.makedirs(posixpath.dirname(target), exist_ok=True)
        partial = f"{target}.part-{secrets.token_hex(6)}"
        write(partial)
        self.filesystem.mv(partial, target)

    def url_for(self, key: str, *, expires: int | None = None) -> str:
        """A URL the API can fetch the key from: public when published, else a presigned S3 URL."""
        if not self.exists(key):
            raise StorageError(f"{self.uri(key)} does not exist: upload it first")
        if self.public_base_url:
            return f"{self.public_base_url.rstrip('/')}/{quote(key.lstrip('/'))}"
        if self.is_s3:
            return self.filesystem.url(self.path_of(key), expires=expires or self.url_expiry_seconds)
        raise StorageError(
            "this storage is a local folder with no URL the API can fetch: set public_base_url to where the "
            "folder is served (for the sandbox: faceswap-flows media-server), or use an s3:// basepath"
        )

    def exists(self, key: str) -> bool:
        return bool(self.filesystem.exists(self.path_of(key)))

    def size(self, key: str) -> int:
        return int(self.filesystem.size(self.path_of(key)))

    @contextmanager
    def open(self, key: str, mode: str = "rb") -> Iterator[IO[bytes]]:
        """Open a key as a file (writing creates parent folders)."""
        path = self.path_of(key)
        if "w" in mode and not self.is_s3:
            self.filesystem.makedirs(posixpath.dirname(path), exist_ok=True)
        with self.filesystem.open(path, mode) as handle:
            yield handle

    def read_bytes(self, key: str) -> bytes:
        with self.open(key, "rb") as handle:
            return handle.read()

    def write_bytes(self, key: str, content: bytes) -> str:
        """Write ``content`` under ``key``; as with :meth:`upload`, it appears whole or not at all."""
        target = self.path_of(key)
        if self.is_s3:
            self.filesystem.pipe_file(target, content)
        else:
            self._write_aside(target, lambda partial: self.filesystem.pipe_file(partial, content))
        return key

    def write_chunks(self, key: str, chunks: Iterable[bytes]) -> int:
        """Write a stream of chunks to a key; returns the number of bytes written."""
        written = 0
        with self.open(key, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                written += len(chunk)
        return written

    def list(self, prefix: str = "", *, suffixes: Iterable[str] | None = None) -> list[str]:
        """Keys under a prefix (recursively), sorted; ``suffixes`` keeps only names ending so (".jpg", ...)."""
        base = self.path_of(prefix) if prefix.strip("/") else self.root
        if not self.filesystem.exists(base):
            return []
        wanted = tuple(s.lower() for s in suffixes) if suffixes else None
        keys = []
        for path in self.filesystem.find(base):
            key = posixpath.relpath(path.removeprefix("s3://"), self.root)
            if wanted is None or key.lower().endswith(wanted):
                keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        self.filesystem.rm(self.path_of(key))

    # Prefect result-storage interface: task results persisted here are shared by every worker.
    def read_path(self, path: str, **_: Any) -> bytes:
        return self.read_bytes(path)

    def write_path(self, path: str, content: bytes, **_: Any) -> str:
        return self.write_bytes(path, content)

    async def aread_path(self, path: str) -> bytes:
        return await anyio.to_thread.run_sync(self.read_bytes, path)

    async def awrite_path(self, path: str, content: bytes) -> str:
        return await anyio.to_thread.run_sync(self.write_bytes, path, content)
