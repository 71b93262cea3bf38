"""The kill drill's worker: runs one existing flow run of the faceswap flow in this process, as a Prefect worker's
flow-run process does: ``python -m tests.kill_drill_worker FLOW_RUN_ID``. The drill SIGKILLs it at random."""

from __future__ import annotations

import asyncio
import sys
from uuid import UUID


async def run(flow_run_id: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow

    from faceswap_flows.flows.image import faceswap

    async with get_client() as client:
        flow_run = await client.read_flow_run(UUID(flow_run_id))
    await run_flow(faceswap, flow_run=flow_run, parameters=flow_run.parameters, return_type="state")


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1]))
