"""An incremental batch over an S3 prefix (moto over HTTP, the sandbox, a real Prefect server): a second run pays
for nothing, a run after two files were added pays for those two, and force redoes the work."""

from __future__ import annotations

import uuid

import cv2

from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.batch import batch_faceswap
from tests.media import likeness, read_image
from tests.vision import photos


def png(image) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


async def test_a_prefix_pays_only_for_new_files(stack, s3_storage: MediaStorage) -> None:
    block = f"batch-s3-{uuid.uuid4().hex[:8]}"
    await s3_storage.asave(block, overwrite=True)
    face = photos.crop_resize(photos.grace_hopper(), photos.GRACE_HEAD, photos.GRACE_FACE, 300)[0]
    s3_storage.write_bytes("faces/ambassador.png", png(face))
    s3_storage.write_bytes("catalogue/2026-12/astronaut.png", png(photos.astronaut()))
    s3_storage.write_bytes("catalogue/2026-12/team", png(photos.tiled()[0]))  # an image without an extension
    s3_storage.write_bytes("catalogue/2026-12/notes.txt", b"shoot notes, not an image")
    s3_storage.write_bytes("catalogue/2026-12/drafts/astronaut-draft.png", png(photos.astronaut()[:, ::-1]))
    options = {"face_image": "faces/ambassador.png", "exclude": ["drafts/*"], "storage_block": block}
    before = stack.spent()

    first = await batch_faceswap(source="catalogue/2026-12/", **options)
    assert sorted((i.id, i.status) for i in first.items) == [("astronaut.png", "stored"), ("team", "stored")]
    assert first.credits == 4 and stack.spent() == before + 4
    stored = {i.id: i.result_key for i in first.items}
    swapped = read_image(s3_storage.read_bytes(stored["astronaut.png"]))
    assert likeness(swapped, photos.grace_hopper()) > likeness(swapped, photos.astronaut())

    second = await batch_faceswap(source="catalogue/2026-12/", **options)
    assert [i.status for i in second.items] == ["done", "done"] and second.done == 2
    assert second.credits == 0 and stack.spent() == before + 4, "nothing submitted again"
    assert {i.id: i.result_key for i in second.items} == stored

    s3_storage.write_bytes("catalogue/2026-12/grace.png", png(photos.grace_hopper()))
    s3_storage.write_bytes("catalogue/2026-12/panel.png", png(photos.pair_video_frame(0)[0]))
    glob = f"{s3_storage.basepath}/catalogue/2026-12/*"  # the same files as a full s3:// glob
    plan = await batch_faceswap(source=glob, plan=True, **options)
    assert sorted((i.label, i.status) for i in plan.items) == [
        ("astronaut.png", "done"), ("grace.png", "run"), ("panel.png", "run"), ("team", "done")]  # fmt: skip
    assert plan.credits == 4 and plan.ignored == ["notes.txt"]
    third = await batch_faceswap(source=glob, **options)
    assert sorted(i.status for i in third.items) == ["done", "done", "stored", "stored"]
    assert third.credits == 4 and stack.spent() == before + 8, "only the two new files are paid for"

    redone = await batch_faceswap(source="catalogue/2026-12/", include=["astronaut.*"], force=True, **options)
    assert [(i.id, i.status) for i in redone.items] == [("astronaut.png", "stored")]
    assert redone.items[0].result_key != stored["astronaut.png"], "a stored result is never overwritten"
    assert stack.spent() == before + 10
