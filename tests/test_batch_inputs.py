"""A batch's http(s) inputs: the plan reads each distinct URL once (its SHA-256 goes into the item's fingerprint
and provenance record) and staging does not download it again; only the service fetches it per job."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from faceswap_flows.aifaceswap.http_server import BackgroundServer
from faceswap_flows.devstack.media_server import media_app
from faceswap_flows.flows.batch.flow import batch_faceswap


def counting(app: Any, requests: Counter[str]) -> Any:
    """``app``, counting the GET requests it serves by path."""

    async def counted(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            requests[scope["path"]] += 1
        await app(scope, receive, send)

    return counted


async def test_each_url_input_is_read_once_by_the_flow(stack, tmp_path: Path) -> None:
    requests: Counter[str] = Counter()
    folder = stack.files["astronaut"].parent
    pairs = [("astronaut", "grace"), ("group", "grace"), ("grace", "astronaut")]
    with BackgroundServer(counting(media_app(folder), requests)) as server:
        rows = [
            {
                "id": f"url-{i}",
                "source_image": f"{server.url}/{stack.files[source].name}",
                "face_image": f"{server.url}/{stack.files[face].name}",
            }
            for i, (source, face) in enumerate(pairs)
        ]
        manifest = tmp_path / "urls.jsonl"
        manifest.write_text("\n".join(json.dumps(row) for row in rows))
        report = await batch_faceswap(str(manifest), force=True, max_concurrency=3)

    assert [item.status for item in report.items] == ["stored"] * 3
    uses = Counter(f"/{stack.files[name].name}" for pair in pairs for name in pair)
    # the flow's plan once per distinct URL, then the service once per job that uses it (was: a second download
    # by the flow when staging)
    assert requests == Counter({path: 1 + count for path, count in uses.items()})
    for item, (source, face) in zip(report.items, pairs, strict=True):
        record = json.loads(stack.storage.read_bytes(item.provenance_key))
        found = {entry["field"]: entry["sha256"] for entry in record["inputs"]}
        assert found == {
            "source_image": hashlib.sha256(stack.files[source].read_bytes()).hexdigest(),
            "face_image": hashlib.sha256(stack.files[face].read_bytes()).hexdigest(),
        }
