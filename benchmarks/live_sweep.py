"""A ``store-results`` run that is already sweeping when the callbacks come (a long-running sweep, as against one
the trigger starts after the first success event: ~20-30 s of flow-run start-up on a loaded 2-core machine),
reading the receiver's inbox every ``poll_seconds``. It holds the deployment's concurrency slot: the runs the
trigger starts meanwhile wait, then find their window already swept."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

DEPLOYMENT = "store-results/store-results"


async def start_live_sweep(window_seconds: float, poll_seconds: float, timeout: float = 180) -> dict[str, Any]:
    """Start the run and wait until it is Running; its id and how long it took to start."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    started = time.monotonic()
    parameters = {
        "since": datetime.now(UTC).isoformat(),
        "window_seconds": window_seconds,
        "poll_seconds": poll_seconds,
        "settle_seconds": 5,
        "lookback_seconds": 30,
    }
    run = await run_deployment(DEPLOYMENT, parameters=parameters, timeout=0)
    async with get_client() as client:
        while True:
            state = (await client.read_flow_run(run.id)).state
            if state is not None and (state.is_running() or state.is_final()):
                break
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"the live store-results run did not start in {timeout} s: {state}")
            await asyncio.sleep(0.5)
    await asyncio.sleep(3)  # its first sweep: the blocks loaded, the inbox read once
    return {"flow_run": str(run.id), "start_seconds": round(time.monotonic() - started, 1), **parameters}
