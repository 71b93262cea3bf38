"""Every flow and task documents each parameter (Google style), so a deployment's form in the Prefect UI describes
every field: checked through the parameter schema Prefect builds from the function, as the UI gets it."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest
from prefect import Flow, Task
from prefect.utilities.callables import parameter_schema

MODULES = [
    "faceswap_flows.flows.batch.flow",
    "faceswap_flows.flows.batch.groups",
    "faceswap_flows.flows.batch.items",
    "faceswap_flows.flows.image",
    "faceswap_flows.flows.video",
    "faceswap_flows.flows.collect",
    "faceswap_flows.flows.sweep.flow",
    "faceswap_flows.flows.sweep.chunks",
    "faceswap_flows.flows.tasks.api",
    "faceswap_flows.flows.tasks.media",
    "faceswap_flows.flows.tasks.job",
    "faceswap_flows.flows.provenance.records",
]


def _defined_here() -> list[tuple[str, Flow | Task]]:
    found = []
    for name in MODULES:
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if isinstance(value, Flow | Task) and value.fn.__module__ == name:
                found.append((f"{name}:{attribute}", value))
    return found


DEFINED = _defined_here()


def test_the_flows_and_tasks_are_all_found() -> None:
    flows = {name for name, value in DEFINED if isinstance(value, Flow)}
    assert len(flows) == 8, flows
    assert len(DEFINED) >= 19


@pytest.mark.parametrize(("name", "function"), DEFINED, ids=[name for name, _ in DEFINED])
def test_every_parameter_is_described(name: str, function: Flow | Task) -> None:
    schema = parameter_schema(function.fn)
    described = {field: spec.get("description", "").strip() for field, spec in schema.properties.items()}
    assert set(described) == set(inspect.signature(function.fn).parameters)
    assert [field for field, text in described.items() if not text] == []
    doc = inspect.getdoc(function.fn) or ""
    assert "Args:" in doc and "Returns:" in doc


@pytest.mark.parametrize(("name", "function"), DEFINED, ids=[name for name, _ in DEFINED])
def test_no_shared_section_is_left_unfilled(name: str, function: Flow | Task) -> None:
    """A ``{section}`` line of a docstring is filled by flow_docs.shared_sections before Prefect reads it."""
    doc = inspect.getdoc(function.fn) or ""
    assert not re.findall(r"^\s*\{[a-z_]+\}\s*$", doc, flags=re.M), doc
