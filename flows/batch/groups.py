"""Batch items as ``swap-items`` task runs of ``items_per_task`` items each, retried for what another attempt may
fix, with the batch's progress artifact."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from uuid import UUID

from prefect import task
from prefect.artifacts import aupdate_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

from faceswap_flows.flows.batch.plan import PlannedItem
from faceswap_flows.flows.batch.report import ItemOutcome
from faceswap_flows.flows.exceptions import report_message

ItemRunner = Callable[[int, bool], Awaitable[ItemOutcome]]


class Progress:
    """The batch's progress artifact, updated at most once a second (and at the end)."""

    def __init__(self, artifact_id: UUID, total: int) -> None:
        self.artifact_id, self.total, self._done, self._shown = artifact_id, max(total, 1), set[int](), 0.0

    async def advance(self, position: int) -> None:
        self._done.add(position)
        now = time.monotonic()
        if len(self._done) == self.total or now - self._shown >= 1.0:
            self._shown = now
            await aupdate_progress_artifact(self.artifact_id, progress=100.0 * len(self._done) / self.total)


class ItemsToRetry(RuntimeError):
    """Items of a group failed in a way another attempt may fix."""


@task(
    name="swap-items",
    task_run_name="swap items {first} to {last}",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
)
async def swap_items(
    first: int, last: int, run_item: ItemRunner, positions: list[int] | None = None
) -> list[ItemOutcome]:
    """Items ``first`` to ``last`` of the batch (``positions``: those of them to run) as steps of this one task run.
    When items fail in a way another attempt may fix (a 5xx, a lost connection, a failed download), the others
    finish, then the task run fails and Prefect retries it: items already submitted are re-attached (never paid
    twice), results already stored are kept, only the rest runs again. The last attempt reports what still fails
    as failed items.

    Args:
        first: The position of the group's first item.
        last: The position of its last item.
        run_item: Runs one item (by position) as steps of this task run.
        positions: Those of the group's items to run (None: all).

    Returns:
        Each item's outcome.
    """
    context = TaskRunContext.get()
    last_attempt = context is None or context.task_run.run_count > (swap_items.retries or 0)
    wanted = positions if positions is not None else list(range(first, last + 1))
    results = await asyncio.gather(*(run_item(position, last_attempt) for position in wanted), return_exceptions=True)
    errors = [result for result in results if isinstance(result, BaseException)]
    if errors:
        raise ItemsToRetry(f"{len(errors)} of {len(results)} items will be attempted again; first: {errors[0]}")
    return [result for result in results if isinstance(result, ItemOutcome)]


async def run_in_groups(
    run_item: ItemRunner,
    items: list[PlannedItem],
    size: int,
    failed: Callable[[PlannedItem, str], Awaitable[ItemOutcome]],
) -> list[ItemOutcome]:
    """Every item through ``swap-items`` task runs of ``size`` items; a group whose task run itself failed (not
    its items) reports each of its items as ``failed`` says (with what the ledger holds of its job), and the other
    groups go on."""
    groups = [items[start : start + size] for start in range(0, len(items), size)]
    states = await asyncio.gather(
        *(
            swap_items(group[0].position, group[-1].position, run_item, [i.position for i in group], return_state=True)
            for group in groups
        )
    )
    outcomes = []
    for group, state in zip(groups, states, strict=True):
        if state.is_completed():
            outcomes.extend(await state.aresult())
        else:
            error = report_message(await state.aresult(raise_on_failure=False))
            outcomes.extend([await failed(item, error) for item in group])
    return outcomes
