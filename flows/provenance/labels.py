"""Labels inside the media files themselves: every result says, in metadata standard tools read, that it is
synthetic (IPTC ``DigitalSourceType`` = compositeWithTrainedAlgorithmicMedia, IPTC's term for a composite made
with a trained model, which a face swap is) and which job made it; plus an optional visible watermark.

- PNG: an iTXt chunk ``XML:com.adobe.xmp`` (the XMP packet) and tEXt keys, right after IHDR.
- JPEG: an APP1 XMP segment and a COM comment, after the JFIF/Exif segments.
- WebP: an ``XMP `` chunk, with the VP8X header that announces it (a simple WebP is made extended).
- MP4: container tags (``comment``, ``description`` and ``aifaceswap_*`` keys), remuxed with stream copy, and
  the XMP packet in a top-level ``uuid`` box (where exiftool and Adobe tools look for it).

Images are labelled by rewriting their container only: the pixels (compressed data) are untouched.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import av
from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel, Field

from faceswap_flows.aifaceswap.models import sniff_image_type
from faceswap_flows.flows.options import WatermarkCorner

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
# Written by earlier versions; still read (records and labels made then stay valid).
LEGACY_DIGITAL_SOURCE_TYPES = ("http://cv.iptc.org/newscodes/digitalsourcetype/compositeSynthetic",)
IPTC_EXT_NS = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
FSF_NS = "https://github.com/faceswap-flows/ns/provenance/1.0/"
XMP_APP1_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_UUID = bytes.fromhex("BE7ACFCB97A942E89C71999491E3AFAC")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_XMP_KEY = b"XML:com.adobe.xmp"
# A label's facts as the flat tags (PNG tEXt, MP4) and as the XMP packet name them: key -> SyntheticLabel field.
TAG_NAMES = {
    "aifaceswap_task_id": "task_id",
    "aifaceswap_operation": "operation",
    "aifaceswap_created": "created",
    "aifaceswap_job_id": "job_id",
    "aifaceswap_provenance_record": "record_key",
}
XMP_NAMES = {
    "xmp:CreateDate": "created",
    "xmp:MetadataDate": "created",
    "fsf:TaskId": "task_id",
    "fsf:Operation": "operation",
    "fsf:JobId": "job_id",
    "fsf:ProvenanceRecord": "record_key",
}


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SyntheticLabel(BaseModel):
    """What every result says about itself."""

    task_id: str
    operation: str
    job_id: str | None = None
    created: str = Field(default_factory=utc_now)
    record_key: str | None = None

    @property
    def description(self) -> str:
        return (
            f"Synthetic media: AI face swap ({self.operation}) made by aifaceswap.io, task {self.task_id}, "
            f"{self.created}. IPTC digital source type: compositeWithTrainedAlgorithmicMedia."
        )

    def tags(self) -> dict[str, str]:
        """The facts as flat key/value tags (PNG tEXt keys, MP4 container tags)."""
        return {"digital_source_type": DIGITAL_SOURCE_TYPE, **self.facts(TAG_NAMES)}

    def facts(self, names: Mapping[str, str]) -> dict[str, str]:
        """The label's facts keyed as ``names`` says (key -> fact); the job and the record only when known."""
        facts = self.model_dump()
        return {key: facts[fact] for key, fact in names.items() if facts[fact]}


def xmp_packet(label: SyntheticLabel) -> bytes:
    """An XMP packet with the IPTC digital source type, a description, the tool, the time and the job."""
    fields = {
        "Iptc4xmpExt:DigitalSourceType": DIGITAL_SOURCE_TYPE,
        "xmp:CreatorTool": "faceswap-flows (aifaceswap.io face swap)",
        **label.facts(XMP_NAMES),
    }
    attributes = "".join(f"\n   {name}={quoteattr(value)}" for name, value in fields.items())
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        f'   xmlns:Iptc4xmpExt="{IPTC_EXT_NS}"\n'
        '   xmlns:dc="http://purl.org/dc/elements/1.1/"\n'
        '   xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        f'   xmlns:fsf="{FSF_NS}"{attributes}>\n'
        "   <dc:description><rdf:Alt>"
        f'<rdf:li xml:lang="x-default">{escape(label.description)}</rdf:li>'
        "</rdf:Alt></dc:description>\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    ).encode()


# PNG


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
        if kind == b"IEND":
            break
    return chunks


def _png_keyword(kind: bytes, body: bytes) -> bytes | None:
    return body.split(b"\x00", 1)[0] if kind in (b"tEXt", b"iTXt", b"zTXt") else None


def label_png(data: bytes, label: SyntheticLabel) -> bytes:
    text = {
        "Description": label.description,
        "Software": "faceswap-flows",
        "Creation Time": format_datetime(datetime.fromisoformat(label.created), usegmt=True),  # RFC 1123
        "DigitalSourceType": DIGITAL_SOURCE_TYPE,
        **{key.replace("_", ":", 1): value for key, value in label.tags().items() if key.startswith("aifaceswap")},
    }
    ours = {PNG_XMP_KEY, *(key.encode("latin-1") for key in text)}
    added = _png_chunk(b"iTXt", PNG_XMP_KEY + b"\x00\x00\x00\x00\x00" + xmp_packet(label)) + b"".join(
        _png_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1", "replace"))
        for key, value in text.items()
    )
    out = [PNG_SIGNATURE]
    for kind, body in _png_chunks(data):
        if _png_keyword(kind, body) in ours:
            continue  # an earlier label: replaced
        out.append(_png_chunk(kind, body))
        if kind == b"IHDR":
            out.append(added)
    return b"".join(out)


# JPEG


def _jpeg_segments(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The marker segments before the scan (marker, payload), and the rest of the file from SOS on."""
    segments, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        segments.append((marker, data[pos + 4 : pos + 2 + length]))
        pos += 2 + length
    return segments, data[pos:]


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    if len(payload) > 65533:
        raise ValueError("a JPEG segment holds at most 65533 bytes")
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def label_jpeg(data: bytes, label: SyntheticLabel) -> bytes:
    segments, rest = _jpeg_segments(data)
    kept = [
        (marker, payload)
        for marker, payload in segments
        if not (marker == 0xE1 and payload.startswith(XMP_APP1_HEADER))
        and not (marker == 0xFE and payload.startswith(b"Synthetic media:"))
    ]
    at = 0
    while at < len(kept) and kept[at][0] in (0xE0, 0xE1):  # after JFIF and Exif, as XMP readers expect
        at += 1
    added = [(0xE1, XMP_APP1_HEADER + xmp_packet(label)), (0xFE, label.description.encode())]
    return b"\xff\xd8" + b"".join(_jpeg_segment(m, p) for m, p in kept[:at] + added + kept[at:]) + rest


# WebP


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        kind = data[pos : pos + 4]
        (length,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length + (length & 1)
    return chunks


def _riff_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) & 1 else b"")


def _webp_canvas(kind: bytes, body: bytes) -> tuple[int, int, bool]:
    """Width, height and alpha of a simple (VP8 or VP8L) WebP, from its bitstream header."""
    if kind == b"VP8L":
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool((bits >> 28) & 1)
    if kind == b"VP8 " and body[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", body[6:10])
        return width & 0x3FFF, height & 0x3FFF, False
    raise ValueError(f"not a WebP image chunk: {kind!r}")


def label_webp(data: bytes, label: SyntheticLabel) -> bytes:
    chunks = [(kind, body) for kind, body in _riff_chunks(data) if kind != b"XMP "]
    if not chunks:
        raise ValueError("an empty WebP file")
    if chunks[0][0] == b"VP8X":
        header = bytearray(chunks[0][1])
        header[0] |= 0x04  # the XMP flag
        chunks[0] = (b"VP8X", bytes(header))
    else:
        width, height, alpha = _webp_canvas(*chunks[0])
        flags = 0x04 | (0x10 if alpha else 0)
        header = bytes((flags, 0, 0, 0)) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        chunks.insert(0, (b"VP8X", header))
    body = b"WEBP" + b"".join(_riff_chunk(k, b) for k, b in chunks) + _riff_chunk(b"XMP ", xmp_packet(label))
    return b"RIFF" + struct.pack("<I", len(body)) + body


def label_image(data: bytes, label: SyntheticLabel) -> tuple[bytes, str]:
    """The labelled image and its MIME type. A format other than PNG, JPEG and WebP is converted to PNG."""
    mime = sniff_image_type(data[:32])
    if mime == "image/png":
        return label_png(data, label), mime
    if mime == "image/jpeg":
        return label_jpeg(data, label), mime
    if mime == "image/webp":
        return label_webp(data, label), mime
    with Image.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return label_png(buffer.getvalue(), label), "image/png"


# MP4


def label_video(source: Path, target: Path, label: SyntheticLabel) -> None:
    """Copy ``source`` to ``target`` with the label in its container tags (stream copy, no re-encoding) and an
    XMP ``uuid`` box appended."""
    with (
        av.open(str(source)) as inp,
        av.open(str(target), "w", format="mp4", options={"movflags": "use_metadata_tags"}) as out,
    ):
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
        tags = {k: v for k, v in inp.metadata.items() if k not in ("major_brand", "minor_version", "compatible_brands")}
        out.metadata.update({**tags, "comment": label.description, "description": label.description, **label.tags()})
        for packet in inp.demux(*(inp.streams[i] for i in streams)):
            if packet.dts is None:  # the demuxer's flush packets
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    packet_xmp = xmp_packet(label)
    with target.open("ab") as handle:
        handle.write(struct.pack(">I", 24 + len(packet_xmp)) + b"uuid" + XMP_UUID + packet_xmp)


# Reading a label back (for the audit command; the tests use independent readers)


def embedded_label(data: bytes) -> dict[str, str] | None:
    """The facts of an XMP packet written by :func:`xmp_packet` found in ``data``, or None."""
    found = re.search(rb"<x:xmpmeta.*?</x:xmpmeta>", data, re.DOTALL)
    if not found:
        return None
    facts = {
        name.decode(): value.decode()
        for name, value in re.findall(rb'(Iptc4xmpExt:DigitalSourceType|fsf:\w+)="([^"]*)"', found.group(0))
    }
    return facts or None


# Visible watermark (images only)


def label_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's own TrueType font (Aileron) at ``size`` pixels: no font file needed on the machine."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def watermark_box(size: tuple[int, int], text: str, corner: WatermarkCorner) -> tuple[int, int, int, int]:
    """Where the watermark goes on an image of ``size``: (x1, y1, x2, y2)."""
    width, height = size
    font = label_font(max(12, min(width, height) // 24))
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    pad, margin = max(3, (bottom - top) // 4), max(4, min(width, height) // 50)
    box_w, box_h = min(width - 2 * margin, right - left + 2 * pad), min(height - 2 * margin, bottom - top + 2 * pad)
    x1 = margin if corner.endswith("left") else width - margin - box_w
    y1 = margin if corner.startswith("top") else height - margin - box_h
    return x1, y1, x1 + box_w, y1 + box_h


def draw_watermark(data: bytes, text: str, corner: WatermarkCorner = "bottom-right") -> bytes:
    """The image with ``text`` on a translucent dark band in ``corner``, encoded in its own format again."""
    if not text.strip():
        raise ValueError("watermark: the text is empty: pass the words to show, or None for no watermark")
    with Image.open(io.BytesIO(data)) as opened:
        fmt, info = opened.format or "PNG", dict(opened.info)
        image = opened.convert("RGBA")
        has_alpha = opened.mode in ("RGBA", "LA", "PA") or "transparency" in opened.info
    x1, y1, x2, y2 = watermark_box(image.size, text, corner)
    band = Image.new("RGBA", (x2 - x1, y2 - y1), (0, 0, 0, 140))  # text past the band is cut off
    pen = ImageDraw.Draw(band)
    font = label_font(max(12, min(image.size) // 24))
    left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
    at = ((band.width - (right - left)) // 2 - left, (band.height - (bottom - top)) // 2 - top)
    pen.text(at, text, font=font, fill=(255, 255, 255, 235))
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    overlay.paste(band, (x1, y1))
    marked = Image.alpha_composite(image, overlay)
    marked = marked if has_alpha and fmt != "JPEG" else marked.convert("RGB")
    options: dict[str, object] = {"icc_profile": info["icc_profile"]} if info.get("icc_profile") else {}
    if fmt == "JPEG":
        options.update(quality=95)
    elif fmt == "WEBP":
        lossless = b"VP8L" in data[12:40]
        options.update(lossless=lossless, quality=100 if lossless else 90)
    else:
        fmt = "PNG"
    buffer = io.BytesIO()
    marked.save(buffer, format=fmt, **options)
    return buffer.getvalue()
