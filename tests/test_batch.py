"""The batch flow's grouping of items into task runs, and what a group's retry does and does not do again."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from faceswap_flows.devstack.prefect_server import BATCH_SERVER_SETTINGS
from faceswap_flows.flows.batch.flow import batch_faceswap, swap_items
from faceswap_flows.flows.options import SwapOptions
from faceswap_flows.flows.tasks.waiting import stored_event
from tests.media import likeness, read_image
from tests.support import recorded_task_runs, sweep_now
from tests.vision import photos

PAIRS = [("astronaut", "grace"), ("grace", "astronaut"), ("group", "grace"), ("group", "astronaut")]
"""Distinct items (source, face): the stack's photos, none repeated as a pair."""


def write_manifest(stack, folder: Path, count: int) -> Path:
    manifest = folder / f"manifest-{count}.jsonl"
    lines = [
        {
            "id": f"item-{i}",
            "source_image": str(stack.files[PAIRS[i][0]]),
            "face_image": str(stack.files[PAIRS[i][1]]),
        }
        for i in range(count)
    ]
    manifest.write_text("\n".join(json.dumps(line) for line in lines))
    return manifest


async def test_items_run_in_groups_of_items_per_task(stack, tmp_path: Path) -> None:
    before = stack.spent()
    state = await batch_faceswap(
        str(write_manifest(stack, tmp_path, 4)), force=True, max_concurrency=3, items_per_task=2, return_state=True
    )
    report = await state.result()
    assert [item.status for item in report.items] == ["stored"] * 4
    assert [item.id for item in report.items] == [f"item-{i}" for i in range(4)]
    assert report.credits == 8 and stack.spent() == before + 8
    result = read_image(stack.storage.read_bytes(stack_key(report.items[0])))
    assert likeness(result, photos.grace_hopper()) > likeness(result, photos.astronaut())

    runs = await recorded_task_runs(state.state_details.flow_run_id, expected=2 + 2)
    names = sorted(run.name for run in runs if run.name.startswith("swap items"))
    assert names == ["swap items 0 to 1", "swap items 2 to 3"]
    assert not [run.name for run in runs if run.name.startswith(("submit", "collect"))]


def stack_key(item) -> str:
    return "results/" + item.result_uri.split("/results/", 1)[1]


async def test_one_item_per_task_gives_each_item_its_submit_and_collect_task_runs(stack, tmp_path: Path) -> None:
    state = await batch_faceswap(
        str(write_manifest(stack, tmp_path, 2)), force=True, items_per_task=1, return_state=True
    )
    report = await state.result()
    assert [item.status for item in report.items] == ["stored", "stored"]
    runs = await recorded_task_runs(state.state_details.flow_run_id, expected=2 + 4)
    names = {run.name for run in runs}
    assert {"submit item 0", "submit item 1"} <= names
    assert {f"collect result of {item.task_id}" for item in report.items} <= names
    assert not [name for name in names if name.startswith("swap items")]


async def test_the_local_server_writes_task_run_states_in_batches_and_records_every_one(
    stack, prefect_api: str, tmp_path: Path
) -> None:
    """The devstack's server runs with BATCH_SERVER_SETTINGS (what docs/scale.md advises for batches); every
    state of every task run still reaches the API, the last batch by the flush interval."""
    settings = httpx.get(f"{prefect_api}/admin/settings", timeout=10).json()["server"]["services"]
    assert settings["task_run_recorder"]["batch_size"] == int(
        BATCH_SERVER_SETTINGS["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"]
    )
    state = await batch_faceswap(
        str(write_manifest(stack, tmp_path, 3)), force=True, items_per_task=1, return_state=True
    )
    assert [item.status for item in (await state.result()).items] == ["stored"] * 3
    runs = await recorded_task_runs(state.state_details.flow_run_id, expected=2 + 6)
    assert len(runs) == 2 + 6
    assert all(run.state is not None and run.state.is_completed() for run in runs), [
        (run.name, run.state_name) for run in runs
    ]


async def test_a_group_retries_only_its_unfinished_items(stack, faults, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(swap_items, "retry_delay_seconds", [0, 0])
    faults(rate_limit_burst=1, retry_after_seconds=0.1)
    before = stack.spent()
    state = await batch_faceswap(
        str(write_manifest(stack, tmp_path, 3)), force=True, max_concurrency=1, return_state=True
    )
    report = await state.result()
    assert [item.status for item in report.items] == ["stored"] * 3
    assert report.credits == 6 and stack.spent() == before + 6, "a re-attempt must not pay for items already submitted"
    assert len({item.task_id for item in report.items}) == 3
    for item in report.items:
        assert stack.storage.exists(stack_key(item)) and stack.storage.exists(item.provenance_key)
    (group,) = [
        run
        for run in await recorded_task_runs(state.state_details.flow_run_id, expected=2 + 1)
        if run.name.startswith("swap items")
    ]
    assert group.run_count == 2 and group.state.is_completed()


async def test_the_last_attempt_reports_what_still_fails(stack, faults, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(swap_items, "retry_delay_seconds", [0, 0])
    faults(rate_limit_burst=3, retry_after_seconds=0.1)
    before = stack.spent()
    state = await batch_faceswap(str(write_manifest(stack, tmp_path, 1)), force=True, return_state=True)
    assert state.is_failed() and "1 failed" in state.message, "the batch tells the truth: an item failed"
    report = await state.result(raise_on_failure=False)
    assert stack.storage.exists(report.report_key), "the report is written before the run fails"
    assert report.items[0].status == "failed" and "too many requests" in report.items[0].error
    assert report.failed == 1 and report.credits == 0 and stack.spent() == before
    (group,) = [
        run
        for run in await recorded_task_runs(state.state_details.flow_run_id, expected=2 + 1)
        if run.name.startswith("swap items")
    ]
    assert group.run_count == 3 and group.state.is_completed()


@pytest.mark.parametrize("items_per_task", [0, -3])
async def test_items_per_task_must_be_positive(stack, tmp_path: Path, items_per_task: int) -> None:
    before = stack.spent()
    state = await batch_faceswap(
        str(write_manifest(stack, tmp_path, 1)), force=True, items_per_task=items_per_task, return_state=True
    )
    assert state.is_failed() and "items_per_task" in state.message
    assert stack.spent() == before


async def test_without_waiting_groups_submit_and_the_sweep_stores_every_result(stack, tmp_path: Path) -> None:
    since = datetime.now(UTC) - timedelta(seconds=2)
    before = stack.spent()
    report = await batch_faceswap(
        str(write_manifest(stack, tmp_path, 3)), options=SwapOptions(wait=False), force=True, items_per_task=2
    )
    assert [item.status for item in report.items] == ["submitted"] * 3
    assert report.credits == 6 and stack.spent() == before + 6
    await asyncio.to_thread(stack.sandbox.wait_idle)
    for _ in range(60):
        arrived = [await stored_event(item.task_id) for item in report.items]
        if all(arrived):
            break
        await asyncio.sleep(0.5)
    assert all(arrived), "the callback events did not reach the API"
    keys = [found["result_key"] for found in arrived]
    swept = await sweep_now(since)
    assert set(keys) <= set(swept.stored_keys) and swept.failed == 0
    for position, key in enumerate(keys):
        result = read_image(stack.storage.read_bytes(key))
        source, face = (read_image(stack.files[name].read_bytes()) for name in PAIRS[position])
        if position < 2:  # one face each: the result shows the new face, not the old one
            assert likeness(result, face) > likeness(result, source), f"item {position} shows its face_image"


async def test_a_batch_with_items_skipped_for_budget_ends_failed_after_its_report(stack, tmp_path: Path) -> None:
    before = stack.spent()
    state = await batch_faceswap(
        str(write_manifest(stack, tmp_path, 3)),
        options=SwapOptions(max_credits=2),
        force=True,
        max_concurrency=1,
        return_state=True,
    )
    assert state.is_failed() and "1 stored" in state.message and "2 skipped" in state.message
    report = await state.result(raise_on_failure=False)
    assert [item.status for item in report.items].count("skipped") == 2 and stack.spent() == before + 2
    assert json.loads(stack.storage.read_bytes(report.report_key))["skipped"] == 2
