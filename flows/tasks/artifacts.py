"""What a run shows in the Prefect UI: numbered faces, before/after, credits."""

from __future__ import annotations

import asyncio
import io
import re

from PIL import Image, ImageDraw
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from faceswap_flows.aifaceswap.models import FaceBox
from faceswap_flows.blocks import MediaStorage, StorageError
from faceswap_flows.flows.ledger import PaidSend, job_sends
from faceswap_flows.flows.provenance.labels import label_font


def artifact_key(*parts: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes)."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:120] or "faceswap"


BOX_RED = (255, 40, 40)


def numbered_faces(image: Image.Image, boxes: list[FaceBox]) -> bytes:
    """The image with each face boxed and numbered by its index (what multi_faceswap's ``index`` means), the
    number in a TrueType font a fifth of the face's size (at least 14 px), on a red tab above the box (inside it
    when the box touches the top)."""
    drawn = image.convert("RGB").copy()
    pen = ImageDraw.Draw(drawn)
    width = max(2, image.width // 200)
    for index, box in enumerate(boxes):
        pen.rectangle(box.as_tuple(), outline=BOX_RED, width=width)
        font = label_font(max(14, min(box.x2 - box.x1, box.y2 - box.y1) // 5))
        left, top, right, bottom = pen.textbbox((0, 0), str(index), font=font)
        pad = max(2, (bottom - top) // 5)
        tab_w, tab_h = right - left + 2 * pad, bottom - top + 2 * pad
        tab_y = box.y1 - tab_h if box.y1 >= tab_h else box.y1
        pen.rectangle((box.x1, tab_y, box.x1 + tab_w, tab_y + tab_h), fill=BOX_RED)
        pen.text((box.x1 + pad - left, tab_y + pad - top), str(index), font=font, fill=(255, 255, 255))
    buffer = io.BytesIO()
    drawn.save(buffer, format="PNG")
    return buffer.getvalue()


def _link(storage: MediaStorage, key: str) -> str:
    try:
        return storage.url_for(key)
    except StorageError:
        return storage.uri(key)


async def faces_artifact(storage: MediaStorage, image: Image.Image, boxes: list[FaceBox], key: str, name: str) -> str:
    """Store the numbered-faces picture and show it, with the boxes, as a markdown artifact."""
    picture = storage.write_bytes(key, numbered_faces(image, boxes))
    rows = "\n".join(f"| {i} | {b.x1} | {b.y1} | {b.x2} | {b.y2} |" for i, b in enumerate(boxes))
    await acreate_markdown_artifact(
        key=artifact_key("faces", name),
        markdown=(
            f"### {len(boxes)} face(s) in {name}\n\n![numbered faces]({_link(storage, picture)})\n\n"
            f"| index | x1 | y1 | x2 | y2 |\n|---|---|---|---|---|\n{rows}\n"
        ),
        description=f"Faces detected in {name}, numbered as `index` counts them",
    )
    return picture


async def before_after_artifact(
    storage: MediaStorage, before: str, after_key: str, *, task_id: str, credits: int, operation: str
) -> None:
    """The result under its source, as markdown: pictures outside a table, so the UI scales each to the page's width
    (in a table cell it shows them at full size, cut off at the edge)."""
    after = _link(storage, after_key)
    is_video = after_key.endswith(".mp4")
    shown = f"[result video]({after})" if is_video else f"![after]({after})"
    original = f"[source]({before})" if is_video else f"![before]({before})"
    await acreate_markdown_artifact(
        key=artifact_key("result", operation),
        markdown=(
            f"### {operation}: before / after\n\n"
            f"- task_id: `{task_id}`\n- credits charged: {credits}\n- stored at: `{storage.uri(after_key)}`\n\n"
            f"#### before\n\n{original}\n\n#### after\n\n{shown}\n"
        ),
        description=f"{operation} result of task {task_id}",
    )


async def credits_artifact(rows: list[dict[str, object]], name: str) -> None:
    await acreate_table_artifact(key=artifact_key("credits", name), table=rows, description="Credits charged per job")


async def job_credits_artifact(storage: MediaStorage, job_id: str, operation: str, task_id: str) -> None:
    """The job's credits table, from the ledger of credits: every paid send for the job (face detection
    included), what it cost, and whether its outcome is known."""
    sends = await asyncio.to_thread(job_sends, storage, job_id)
    rows = [send_row(send) for send in sends] or [{"operation": operation, "task_id": task_id, "outcome": "?"}]
    await credits_artifact(rows, operation)


def send_row(send: PaidSend) -> dict[str, object]:
    return {
        "operation": send.operation,
        "for": send.purpose,
        "task_id": send.task_id,
        "outcome": send.outcome,
        "credits charged": send.charged,
        "possibly charged": send.possibly_charged,
        "estimated": send.estimated and bool(send.charged),
    }
