"""Batch rows without a manifest: every image or video of a local folder, a storage prefix or a glob (local or
``s3://bucket/prefix/*.jpg``), times one face photo or a small face map; images and videos told apart by their
content, not their names."""

from __future__ import annotations

import fnmatch
import glob
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal
from urllib.parse import urlsplit

from faceswap_flows.aifaceswap.errors import InputValidationError
from faceswap_flows.aifaceswap.models import sniff_image_type
from faceswap_flows.blocks import MediaStorage, StorageError
from faceswap_flows.flows.batch.rows import BatchRow, ManifestLine, parse_row
from faceswap_flows.flows.tasks.media import is_url

MediaKind = Literal["image", "video"]
GLOB_CHARACTERS = "*?["
HEAD_BYTES = 64
# besides ISO base media (MP4, MOV, 3GP: "ftyp" at byte 4) and AVI: Matroska/WebM, MPEG program streams
VIDEO_SIGNATURES = (b"\x1a\x45\xdf\xa3", b"\x00\x00\x01\xba")


def is_uri(ref: str) -> bool:
    return urlsplit(ref).scheme in ("s3", "s3a")


def open_input(storage: MediaStorage, ref: str) -> IO[bytes]:
    """Open an input for reading: a local file, a full ``s3://`` URI (on the storage block's filesystem) or a
    key of the storage block."""
    local = Path(ref).expanduser()
    if local.is_file():
        return local.open("rb")
    if is_uri(ref):
        return storage.filesystem.open(ref, "rb")
    return storage.filesystem.open(storage.path_of(ref), "rb")


def kind_of(head: bytes) -> MediaKind | None:
    """Image or video by the first bytes of the file, or None when it is neither."""
    if sniff_image_type(head):
        return "image"
    if head[4:8] == b"ftyp" or (head[:4] == b"RIFF" and head[8:12] == b"AVI "):
        return "video"
    if head.startswith(VIDEO_SIGNATURES):
        return "video"
    return None


def sniff_kind(storage: MediaStorage, ref: str) -> MediaKind | None:
    with open_input(storage, ref) as handle:
        return kind_of(handle.read(HEAD_BYTES))


@dataclass(frozen=True)
class Listed:
    """A file found under a source: how to read it (``ref``) and its name relative to the source."""

    ref: str
    name: str


def _local(source: str) -> list[Listed]:
    path = Path(source).expanduser()
    if path.is_dir():
        return [Listed(str(p), p.relative_to(path).as_posix()) for p in sorted(path.rglob("*")) if p.is_file()]
    root = Path(source.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]).expanduser()
    base = root if root.is_dir() else root.parent
    found = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
    return [Listed(str(p), _relative(p.as_posix(), base.as_posix())) for p in found if p.is_file()]


def _relative(path: str, base: str) -> str:
    return posixpath.relpath(path, base) if base and base != "." else path


def _remote(storage: MediaStorage, source: str) -> list[Listed]:
    """A storage prefix or glob: a key of the storage block, or a full s3:// URI on its filesystem."""
    fs = storage.filesystem
    if is_uri(source):
        parts = urlsplit(source)
        path, scheme = f"{parts.netloc}{parts.path}", f"{parts.scheme}://"
    else:
        path, scheme = storage.path_of(source), ""
    if any(c in path for c in GLOB_CHARACTERS):
        base = posixpath.dirname(path.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0])
        found = sorted(p for p, info in fs.glob(path, detail=True).items() if info.get("type") == "file")
    else:
        base = path.rstrip("/")
        found = sorted(fs.find(base)) if fs.isdir(base) else ([base] if fs.exists(base) else [])
    listed = []
    for found_path in found:
        bare = found_path.removeprefix("s3://")
        ref = f"{scheme}{bare}" if scheme else posixpath.relpath(bare, storage.root)
        listed.append(Listed(ref, _relative(bare, base)))
    return listed


def list_source(storage: MediaStorage, source: str) -> list[Listed]:
    """Every file of a local folder or glob, a storage prefix or glob, or an ``s3://`` prefix or glob."""
    if is_url(source):
        raise InputValidationError(f"source: {source!r} is an http(s) URL: give a folder, a storage prefix or a glob")
    local = Path(source).expanduser()
    if local.is_dir() or (any(c in source for c in GLOB_CHARACTERS) and local.parent.expanduser().exists()):
        found = _local(source)
    elif local.is_absolute() and not is_uri(source):
        raise InputValidationError(f"source: {source} is not a folder here: check the path")
    else:
        found = _remote(storage, source)
    if not found:
        raise InputValidationError(f"source: nothing found under {source!r}: check the folder, prefix or pattern")
    return found


def matches(name: str, include: list[str] | None, exclude: list[str] | None) -> bool:
    """Whether a file's relative name (or its base name) matches one include pattern and no exclude pattern."""

    def hit(patterns: list[str]) -> bool:
        return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(posixpath.basename(name), p) for p in patterns)

    return (not include or hit(include)) and not (exclude and hit(exclude))


def source_rows(
    storage: MediaStorage,
    source: str,
    *,
    face_image: str | None = None,
    face_map: dict[str, str] | None = None,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    enhance: int = 0,
    trim_start: float | None = None,
    trim_end: float | None = None,
) -> tuple[list[ManifestLine], list[str]]:
    """A row per image or video under ``source`` (matching ``include``/``exclude``), with ``face_image`` on its
    main face, or ``face_map`` (face index or reference photo -> new face) on several; and the names of the files
    left out because their content is neither an image nor a video."""
    if (face_image is None) == (face_map is None):
        raise InputValidationError("face_image: give `face_image` (one new face) or `face_map` (several), not both")
    if face_map is not None and not face_map:
        raise InputValidationError("face_map: empty: map face indexes (or reference photos) to new faces")
    rows, ignored = [], []
    photos = [face_image] if face_image else [*(face_map or {}).values(), *(face_map or {}).keys()]
    face_files = {_same_file(storage, photo) for photo in photos}
    for listed in list_source(storage, source):
        if not matches(listed.name, include, exclude) or _same_file(storage, listed.ref) in face_files:
            continue
        kind = sniff_kind(storage, listed.ref)
        if kind is None:
            ignored.append(listed.name)
            continue
        fields: dict[str, object] = {"id": listed.name, f"source_{kind}": listed.ref}
        if kind == "video":
            fields.update(enhance=enhance, trim_start=trim_start, trim_end=trim_end)
        fields.update(_faces(kind, face_image, face_map))
        rows.append(_row(fields))
    return rows, ignored


def _same_file(storage: MediaStorage, ref: str) -> str:
    """One spelling per file (a face photo kept in the source folder is no item of the batch)."""
    local = Path(ref).expanduser()
    if local.is_file():
        return str(local.resolve())
    if is_uri(ref):
        return ref.split("://", 1)[1]
    try:
        return storage.path_of(ref).removeprefix("s3://")
    except StorageError:
        return ref


def _faces(kind: MediaKind, face_image: str | None, face_map: dict[str, str] | None) -> dict[str, object]:
    if face_map is None:
        return {"operation": "faceswap" if kind == "image" else "video_faceswap", "face_image": face_image}
    by_index = all(str(k).strip().isdigit() for k in face_map)
    fields: dict[str, object] = {
        "operation": "multi_faceswap" if kind == "image" else "multi_video_faceswap",
        "face_images": list(face_map.values()),
    }
    fields["face_indexes" if by_index else "reference_images"] = (
        [int(k) for k in face_map] if by_index else list(face_map)
    )
    return fields


def _row(fields: dict[str, object]) -> ManifestLine:
    line = parse_row({k: v for k, v in fields.items() if v is not None}, None)
    if line.error:
        return ManifestLine(None, error=f"{fields['id']}: {line.error.removeprefix('item: ')}")
    assert isinstance(line.row, BatchRow)
    return line
