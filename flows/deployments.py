"""The project's deployments as prefect.yaml declares them, served from this process (no work pool needed):
``python -m faceswap_flows.flows.deployments [NAME ...]`` or ``faceswap-flows serve [NAME ...]``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow
from prefect.events import DeploymentEventTrigger

# the repository's prefect.yaml, which also ships inside the installed package (faceswap_flows/prefect.yaml)
PROJECT_FILE = Path(__file__).resolve().parent.parent / "prefect.yaml"
# The work pools prefect.yaml names: the process pool, and the store deployments' (the in-process worker's).
PACKAGE_POOL, PACKAGE_STORE_POOL = "faceswap-pool", "faceswap-store"


def declared_deployments(project_file: Path = PROJECT_FILE) -> dict[str, dict[str, Any]]:
    """prefect.yaml's deployments by name."""
    return {entry["name"]: entry for entry in yaml.safe_load(project_file.read_text())["deployments"]}


def declared_deployment(name: str, project_file: Path = PROJECT_FILE) -> dict[str, Any]:
    try:
        return declared_deployments(project_file)[name]
    except KeyError:
        raise KeyError(f"prefect.yaml declares no deployment {name!r}") from None


def declared_triggers(name: str, project_file: Path = PROJECT_FILE) -> list[DeploymentEventTrigger]:
    """The event triggers prefect.yaml gives a deployment."""
    return [
        DeploymentEventTrigger(**{k: v for k, v in trigger.items() if k != "type"})
        for trigger in declared_deployment(name, project_file).get("triggers", [])
    ]


def module_entrypoint(entrypoint: str) -> str:
    """``faceswap_flows.flows.image:faceswap`` for a checkout's ``flows/image.py:faceswap`` (module paths
    pass unchanged): the form that runs from an installed package."""
    path, _, attribute = entrypoint.partition(":")
    if not path.endswith(".py"):
        return entrypoint
    return "faceswap_flows." + path.removesuffix(".py").replace("/", ".") + ":" + attribute


def load_flow(entrypoint: str) -> Flow[..., Any]:
    """The flow object of an entrypoint like ``faceswap_flows.flows.image:faceswap``."""
    path, _, attribute = module_entrypoint(entrypoint).partition(":")
    return getattr(importlib.import_module(path), attribute)


def serve_deployments(names: list[str]) -> None:
    """Serve the named deployments: triggers, parameters and concurrency limits as declared (schedules are left
    to `prefect deploy`). Their entrypoints are module paths: a served run imports the flow from the installed
    package, never looking for code in storage (a deployment `prefect deploy` made first has none there)."""
    from prefect import serve
    from prefect.types.entrypoint import EntrypointType

    declared = declared_deployments()
    deployments = [
        load_flow(declared[name]["entrypoint"]).to_deployment(
            name=name,
            triggers=declared_triggers(name),
            parameters=declared[name].get("parameters") or {},
            concurrency_limit=declared[name].get("concurrency_limit"),
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        for name in names
    ]
    serve(*deployments)


if __name__ == "__main__":
    serve_deployments(sys.argv[1:] or ["store-result"])
