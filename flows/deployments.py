"""The project's deployments as prefect.yaml declares them, for ``serve`` (no work pool needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from prefect.events import DeploymentEventTrigger

PROJECT_FILE = Path(__file__).resolve().parent.parent / "prefect.yaml"


def declared_deployment(name: str, project_file: Path = PROJECT_FILE) -> dict[str, Any]:
    """One deployment's entry of prefect.yaml."""
    deployments = yaml.safe_load(project_file.read_text())["deployments"]
    for deployment in deployments:
        if deployment["name"] == name:
            return deployment
    raise KeyError(f"prefect.yaml declares no deployment {name!r}")


def declared_triggers(name: str, project_file: Path = PROJECT_FILE) -> list[DeploymentEventTrigger]:
    """The event triggers prefect.yaml gives a deployment."""
    return [
        DeploymentEventTrigger(**{k: v for k, v in trigger.items() if k != "type"})
        for trigger in declared_deployment(name, project_file).get("triggers", [])
    ]


def serve_store_result() -> None:
    """Serve the store-result deployment with its prefect.yaml trigger, in this process."""
    from prefect import serve

    from flows.store_result import store_result

    deployment = store_result.to_deployment(name="store-result", triggers=declared_triggers("store-result"))
    serve(deployment)


if __name__ == "__main__":
    serve_store_result()
