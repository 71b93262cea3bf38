"""The installed import names: every package folder of the repository is installed under ``faceswap_flows``, and
no code imports a folder by its bare name (which works in a checkout only, and would shadow a user's own
``flows`` or ``blocks`` package)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"aifaceswap", "blocks", "cli", "devstack", "flows", "receiver"}


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_installed_under_faceswap_flows() -> None:
    setuptools = _setuptools()
    folders = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in FOLDERS
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    installed = {"faceswap_flows", *(f"faceswap_flows.{folder}" for folder in folders)}
    assert set(setuptools["packages"]) == installed
    assert setuptools["package-dir"] == {"faceswap_flows": ".", **{f"faceswap_flows.{top}": top for top in FOLDERS}}
    assert setuptools["package-data"] == {"faceswap_flows": ["prefect.yaml"]}  # what serve and init read


def test_no_code_imports_a_folder_by_its_bare_name() -> None:
    offenders = []
    for top in [*FOLDERS, "tests", "benchmarks"]:
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                offenders += [
                    f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in FOLDERS
                ]
    assert offenders == [], "import these as faceswap_flows.<folder>:\n" + "\n".join(offenders)
