"""The layout: the package's floors and the layers of flows/ hold (import-linter's contracts in pyproject.toml), no
module or function grows past its size, and ``faceswap_flows.flows`` exports the public flows and result models."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = ("flows", "blocks", "receiver", "aifaceswap")


def test_the_import_contracts_hold() -> None:
    """The contracts of pyproject.toml's [tool.importlinter]: the package floors (cli -> devstack -> flows -> blocks
    -> receiver -> aifaceswap, lazy and TYPE_CHECKING imports included) and the layers inside flows/. When one
    breaks, lint-imports' output (printed here) names the importing module, the line and the chain."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


# How deployments made before the batch and the sweep became packages name their flows: prefect.yaml's module
# entrypoints, the dotted module paths `serve` stored, and a checkout's file paths (read by deployments.load_flow).
EARLIER_ENTRYPOINTS = [
    ("faceswap_flows.flows.batch:batch_faceswap", "batch-faceswap"),
    ("faceswap_flows.flows.batch.batch_faceswap", "batch-faceswap"),
    ("faceswap_flows.flows.sweep:store_results", "store-results"),
    ("faceswap_flows.flows.sweep.store_results", "store-results"),
]


@pytest.mark.parametrize(("entrypoint", "name"), EARLIER_ENTRYPOINTS)
def test_the_entrypoints_of_earlier_deployments_still_load_their_flow(entrypoint: str, name: str) -> None:
    from prefect.flows import load_flow_from_entrypoint

    flow = load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False)
    assert flow.name == name
    assert flow.fn.__module__.removeprefix("faceswap_flows.flows.") in ("batch.flow", "sweep.flow")


@pytest.mark.parametrize(
    ("path", "name"),
    [("flows/batch.py:batch_faceswap", "batch-faceswap"), ("flows/sweep.py:store_results", "store-results")],
)
def test_a_checkouts_earlier_file_entrypoints_still_load_their_flow(path: str, name: str) -> None:
    from faceswap_flows.flows.deployments import load_flow

    assert load_flow(path).name == name


def test_flows_package_exports_the_flows_lazily() -> None:
    code = (
        "import sys, faceswap_flows.flows as f\n"
        "assert 'faceswap_flows.flows.image' not in sys.modules\n"
        "from faceswap_flows.flows import faceswap, video_faceswap, batch_faceswap, store_result, store_results\n"
        "from faceswap_flows.flows import SwapOutcome, BatchReport, StoreResultsReport\n"
        "from prefect import Flow\n"
        "assert all(isinstance(x, Flow) for x in (faceswap, video_faceswap, batch_faceswap, store_result,"
        " store_results))\n"
        "assert set(f.__all__) <= set(dir(f))\n"
        "print(faceswap.name)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "faceswap"


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for folder in (*PRODUCTION, "cli", "devstack")
        for path in (ROOT / folder).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 400
    }
    assert not long, long


def test_no_function_is_over_60_lines() -> None:
    """Counted from the end of the docstring: a function's code, not its documentation."""
    long = {}
    for folder in (*PRODUCTION, "cli", "devstack"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    first = node.body[0]
                    documented = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    start = first.end_lineno + 1 if documented else node.lineno  # type: ignore[operator]
                    if (n := node.end_lineno - start + 1) > 60:  # type: ignore[operator]
                        long[f"{path.relative_to(ROOT)}:{node.name}"] = n
    assert not long, long


def test_the_flows_exports_are_the_lazy_table() -> None:
    import faceswap_flows.flows as flows

    assert sorted(flows.__all__) == sorted(flows._EXPORTS)
