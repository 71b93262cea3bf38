"""A Prefect worker that runs this package's flow runs inside its own process: no process started per run.

A ``process`` worker starts a Python process for every flow run, and each spends seconds importing Prefect and
the flows before it stores one result. The store deployments (``store-result``, one run per job stored by the
trigger, and ``store-results``) run here instead, each on a thread of the worker's process, which keeps its
imports from run to run, and the worker looks for runs the moment Prefect schedules one (the
``prefect.flow-run.Scheduled`` event of its pool) rather than at its next poll.

The package registers the worker type with Prefect (entry point ``prefect.collections``), so Prefect's own
commands know it::

    prefect work-pool create faceswap-store --type faceswap-in-process
    prefect worker start --pool faceswap-store

Only the flows of the installed package (``faceswap_flows.flows``) run here, imported from the package: a
deployment's pull steps are not run (they would change this process's working directory), and any other flow is
refused before it starts. A crash of the interpreter takes the worker's runs with it: give other flows a
``process`` pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.to_thread
from prefect.workers.base import BaseJobConfiguration, BaseVariables, BaseWorker, BaseWorkerResult

from faceswap_flows.flows.exceptions import NotThisPackagesFlow

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.client.schemas.objects import FlowRun

WORKER_TYPE = "faceswap-in-process"
PACKAGE_PREFIX = "faceswap_flows.flows."
SCHEDULED_EVENT = "prefect.flow-run.Scheduled"
RUN_THREADS = 64  # flow runs at once (a work pool's or the worker's --limit can set fewer)


class InProcessJobConfiguration(BaseJobConfiguration):
    """Nothing to configure: a run uses the worker's own process, environment and working directory."""


class InProcessVariables(BaseVariables):
    """The work pool's variables: those every pool has (name, env, labels, command)."""


class InProcessWorkerResult(BaseWorkerResult):
    """How a run ended in the worker: status 0 once the engine reported a final state, 1 if it crashed."""


def package_flow(entrypoint: str | None) -> Flow[..., Any]:
    """The flow of a deployment's entrypoint, imported from the installed package; any other entrypoint is refused.

    Example:
        package_flow("faceswap_flows.flows.collect:store_result").name  # 'store-result'
    """
    from prefect import Flow

    from faceswap_flows.flows.deployments import load_flow, module_entrypoint

    refused = NotThisPackagesFlow(
        f"entrypoint: {entrypoint!r} is not a flow of faceswap_flows; the {WORKER_TYPE} worker runs only the "
        "package's own flows: put this deployment in a process work pool"
    )
    module = module_entrypoint(entrypoint or "")
    if not module.startswith(PACKAGE_PREFIX) or ":" not in module:
        raise refused
    try:
        found = load_flow(module)
    except (ImportError, AttributeError) as error:
        raise refused from error
    if not isinstance(found, Flow):
        raise refused
    return found


class InProcessWorker(BaseWorker[InProcessJobConfiguration, InProcessVariables, InProcessWorkerResult]):
    """Runs the flow runs of its work pool on threads of its own process (see the module's docstring).

    Example:
        prefect worker start --pool faceswap-store --type faceswap-in-process
    """

    type = WORKER_TYPE
    job_configuration = InProcessJobConfiguration
    job_configuration_variables = InProcessVariables
    _description = (
        "Run faceswap-flows' store deployments inside the worker's own process: no process started per flow run, "
        "a run picked up as soon as it is scheduled."
    )
    _display_name = "faceswap-flows in-process"
    _documentation_url = "https://pypi.org/project/faceswap-flows/"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._threads = anyio.CapacityLimiter(RUN_THREADS)
        self._wake: asyncio.Task[None] | None = None

    async def setup(self) -> None:
        await super().setup()
        self._wake = asyncio.create_task(self._submit_when_scheduled(), name="faceswap-worker-wake")

    async def teardown(self, *exc_info: Any) -> None:
        if self._wake is not None:
            self._wake.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._wake
        await super().teardown(*exc_info)

    async def _submit_when_scheduled(self) -> None:
        """Look for runs as soon as one of this pool is scheduled; the polling loop stays the fallback."""
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventFilter, EventNameFilter

        wanted = EventFilter(event=EventNameFilter(name=[SCHEDULED_EVENT]))
        while True:
            try:
                async with get_events_subscriber(filter=wanted) as events:
                    async for event in events:
                        if any(
                            related.get("prefect.resource.role") == "work-pool"
                            and related.get("prefect.resource.name") == self._work_pool_name
                            for related in event.related
                        ):
                            await self.get_and_submit_flow_runs()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the server restarting: subscribe again, the poll covers the gap
                self._logger.debug("scheduled-run events interrupted (%s); subscribing again", error)
                await asyncio.sleep(1)

    async def _flow_of(self, flow_run: FlowRun) -> Flow[..., Any]:
        if flow_run.deployment_id is None:
            raise NotThisPackagesFlow(f"flow run {flow_run.id}: no deployment; {WORKER_TYPE} runs deployments only")
        deployment = await self.client.read_deployment(flow_run.deployment_id)
        return package_flow(deployment.entrypoint)  # the module is imported once: Python keeps it

    async def run(
        self,
        flow_run: FlowRun,
        configuration: InProcessJobConfiguration,
        task_status: anyio.abc.TaskStatus[int] | None = None,
    ) -> InProcessWorkerResult:
        flow = await self._flow_of(flow_run)
        if task_status is not None:
            task_status.started(os.getpid())
        try:
            await anyio.to_thread.run_sync(run_to_its_end, flow, flow_run, limiter=self._threads)
        except Exception:
            self.get_flow_run_logger(flow_run).exception("The flow run crashed in the worker's process")
            return InProcessWorkerResult(status_code=1, identifier=str(os.getpid()))
        return InProcessWorkerResult(status_code=0, identifier=str(os.getpid()))


def run_to_its_end(flow: Flow[..., Any], flow_run: FlowRun) -> Any:
    """Run the flow run with Prefect's engine on this thread (an event loop of its own for an asynchronous flow),
    so that a run's work never holds up the worker's polling, nor another run. The engine reads the parameters from
    the flow run and reports its final state to the API itself."""
    from prefect.flow_engine import run_flow

    if flow.isasync:
        return asyncio.run(run_flow(flow, flow_run=flow_run, return_type="state"))
    return run_flow(flow, flow_run=flow_run, return_type="state")
