"""The layout: production code (flows, blocks, receiver, aifaceswap) never imports the embedded default
(devstack) or the command line, and ``faceswap_flows.flows`` exports the public flows and result models."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = ("flows", "blocks", "receiver", "aifaceswap")
UPPER_FLOORS = ("faceswap_flows.devstack", "faceswap_flows.cli")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_production_code_never_imports_the_devstack_or_the_cli() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for folder in PRODUCTION
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line, name in imported_modules(path)
        if any(name == floor or name.startswith(floor + ".") for floor in UPPER_FLOORS)
    ]
    assert offenders == []


def test_the_check_sees_an_import_of_the_devstack(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from faceswap_flows.devstack.stack import LocalStack\n")
    assert imported_modules(module) == [
        (2, "faceswap_flows.devstack.stack"),
        (2, "faceswap_flows.devstack.stack.LocalStack"),
    ]


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
