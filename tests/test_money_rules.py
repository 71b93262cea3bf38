"""Money rules that need no server, each written to fail when its bug is put back: a budget of 0 is a budget, a
batch's fingerprint covers every option, and a callback token's signature is checked whole."""

from __future__ import annotations

import json
import string
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faceswap_flows.blocks import MediaStorage
from faceswap_flows.flows.batch.names import DEFAULT_OUTPUT_TEMPLATE
from faceswap_flows.flows.batch.plan import PlannedItem, Planner, plan_rows
from faceswap_flows.flows.batch.rows import parse_manifest_lines
from faceswap_flows.flows.budget import check_budget
from faceswap_flows.flows.exceptions import BudgetExceeded
from faceswap_flows.flows.provenance.records import OutputOptions, record_key
from faceswap_flows.flows.work_index import IndexEntry, write_ahead
from faceswap_flows.receiver import JobToken, TokenError, sign, verify
from tests.media import make_photo_folder

SECRET = "money-rules-secret"
BASE64URL = string.ascii_letters + string.digits + "-_"
ISSUED_AT = int(time.time())


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_photo_folder(tmp_path_factory.mktemp("money-rules-photos"))


# Budgets: max_credits=0 allows nothing; None is the only "no budget".


@pytest.mark.parametrize("estimate", [1, 2, 10])
def test_a_budget_of_zero_refuses_any_paid_work(estimate: int) -> None:
    with pytest.raises(BudgetExceeded, match=f"needs {estimate} credits .* the budget is 0"):
        check_budget(estimate, 0)
    check_budget(estimate, None)
    check_budget(estimate, estimate)


def test_a_batch_with_a_budget_of_zero_skips_every_item(tmp_path: Path, photo_files: dict[str, Path]) -> None:
    rows = [
        {"source_image": str(photo_files["astronaut"]), "face_image": str(photo_files["grace"])},
        {"source_image": str(photo_files["grace"]), "face_image": str(photo_files["astronaut"])},
    ]
    lines = parse_manifest_lines("\n".join(json.dumps(row) for row in rows), "jsonl")
    planner = Planner(MediaStorage(basepath=str(tmp_path / "store")), tmp_path / "work", DEFAULT_OUTPUT_TEMPLATE,
                      OutputOptions(), False)  # fmt: skip
    items = plan_rows(planner, lines, 0)
    assert [(item.status, item.reason) for item in items] == [("skipped", "over max_credits (0)")] * 2
    unlimited = plan_rows(planner, lines, None)
    assert [item.status for item in unlimited] == ["run", "run"]


# Fingerprints: same inputs with any other option is other work; the same everything is done.


def _plan_one(storage: MediaStorage, work: Path, row: dict[str, Any], output: OutputOptions) -> PlannedItem:
    planner = Planner(storage, work, DEFAULT_OUTPUT_TEMPLATE, output, False)
    (item,) = plan_rows(planner, parse_manifest_lines(json.dumps(row), "jsonl"), None)
    assert item.status in ("run", "done"), item.reason
    return item


def _store(storage: MediaStorage, item: PlannedItem) -> None:
    """What a batch leaves once an item's result is stored: the result, its provenance record, the index entry."""
    assert item.fingerprint is not None and item.result_key is not None
    storage.write_bytes(item.result_key, b"result bytes")
    storage.write_bytes(record_key(item.result_key), b"{}")
    write_ahead(storage, IndexEntry(fingerprint=item.fingerprint, result_key=item.result_key, job_id="first-run-job"))


GROUP_ROW = {"operation": "multi_faceswap", "face_images": ["grace"], "face_indexes": [1]}
CHANGED_OPTIONS = [
    ("face_indexes", {"face_indexes": [2]}, {}),
    ("label", {}, {"label": False}),
    ("sign", {}, {"sign": False}),
    ("watermark", {}, {"watermark": "AI"}),
    ("watermark_corner", {}, {"watermark": "AI", "watermark_corner": "top-left"}),
    ("signing_block", {}, {"signing_block": "another-signing-key"}),
]


@pytest.mark.parametrize(
    ("changed", "row_change", "output_change"), CHANGED_OPTIONS, ids=[c[0] for c in CHANGED_OPTIONS]
)
def test_the_same_inputs_with_another_option_are_other_work(
    tmp_path: Path, photo_files: dict[str, Path], changed: str, row_change: dict, output_change: dict
) -> None:
    storage = MediaStorage(basepath=str(tmp_path / "store"))
    row = {**GROUP_ROW, "source_image": str(photo_files["group"]), "face_images": [str(photo_files["grace"])]}
    first = _plan_one(storage, tmp_path / "work", row, OutputOptions())
    assert first.status == "run"
    _store(storage, first)
    again = _plan_one(storage, tmp_path / "work", row, OutputOptions())
    assert (again.status, again.credits, again.result_key) == ("done", 0, first.result_key), "same everything: done"
    other = _plan_one(storage, tmp_path / "work", {**row, **row_change}, OutputOptions(**output_change))
    assert other.status == "run" and other.credits == first.credits, f"another {changed} is new work"
    assert other.fingerprint != first.fingerprint and other.result_key != first.result_key


# Tokens: the signature is compared whole; any truncation or changed character is a forgery.

jobs = st.builds(
    JobToken,
    job_id=st.text(BASE64URL, min_size=8, max_size=64),
    operation=st.sampled_from(["faceswap", "multi_faceswap", "video_faceswap"]),
    flow_run_id=st.none() | st.uuids().map(str),
    result_key=st.none() | st.text(min_size=1, max_size=40),
    credits=st.none() | st.integers(0, 10_000),
    issued_at=st.just(ISSUED_AT),  # fixed, so a replayed example signs the same token
)


def _refused_as_forged(text: str) -> None:
    with pytest.raises(TokenError) as refused:
        verify(text, SECRET)
    assert refused.value.status in (403, 404), text


@settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(job=jobs, data=st.data())
def test_a_truncated_or_altered_signature_is_refused(job: JobToken, data: st.DataObject) -> None:
    token = sign(job, SECRET)
    assert verify(token, SECRET) == job
    payload, _, signature = token.partition(".")
    for length in range(len(signature)):
        _refused_as_forged(f"{payload}.{signature[:length]}")
    for position, original in enumerate(signature):
        replacement = data.draw(st.characters(exclude_characters=original), label=f"character {position}")
        _refused_as_forged(f"{payload}.{signature[:position]}{replacement}{signature[position + 1 :]}")
    _refused_as_forged(f"{payload}.{signature}{data.draw(st.text(min_size=1, max_size=8), label='appended')}")


def test_every_one_character_change_of_a_signature_is_refused() -> None:
    """Exhaustive over the base64url alphabet: the last character too, whose low bits base64 would ignore."""
    token = sign(JobToken(job_id="0123456789abcdef", operation="faceswap"), SECRET)
    payload, _, signature = token.partition(".")
    for position, original in enumerate(signature):
        for replacement in BASE64URL.replace(original, ""):
            _refused_as_forged(f"{payload}.{signature[:position]}{replacement}{signature[position + 1 :]}")
