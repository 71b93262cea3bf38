"""The installed import names: every package folder of the repository is installed under ``faceswap_flows``, and
no code imports a folder by its bare name (which works in a checkout only, and would shadow a user's own
``flows`` or ``blocks`` package); and whatever the code imports is a declared dependency."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


def imported_top_names(folder: Path) -> dict[str, str]:
    """Top-level names of the modules the folder's code imports (absolute imports only), with one place each."""
    names: dict[str, str] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found = [node.module]
            else:
                continue
            for name in found:
                names.setdefault(name.split(".")[0], f"{path.relative_to(ROOT)}:{node.lineno}")
    return names


@functools.cache
def providers(name: str) -> frozenset[str]:
    """The distributions that install the import name ``name``: importlib's map (from top_level.txt), else the
    files each distribution installs (some wheels' top_level.txt is wrong: dlib-bin names only its extension)."""
    known = importlib.metadata.packages_distributions().get(name)
    if known:
        return frozenset(canonicalize_name(d) for d in known)
    found = set()
    for distribution in importlib.metadata.distributions():
        record = distribution.read_text("RECORD") or ""
        if any(line.startswith((f"{name}/", f"{name}.")) for line in record.splitlines()):
            found.add(canonicalize_name(distribution.metadata["Name"]))
    return frozenset(found)


def declared(*extras: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return {canonicalize_name(Requirement(text).name) for text in requirements}


@pytest.mark.parametrize(
    ("folder", "extras"),
    [
        ("flows", ()),
        ("blocks", ()),
        ("receiver", ()),
        ("cli", ()),
        ("aifaceswap", ("sandbox",)),  # the sandbox's own modules import its extra
        ("devstack", ("sandbox", "photos")),
    ],
)
def test_every_module_the_code_imports_comes_from_a_declared_distribution(folder: str, extras: tuple[str, ...]) -> None:
    """A plain `pip install faceswap-flows` must be enough to import a flow: whatever the code imports is declared
    in pyproject.toml, not merely brought along by Prefect today."""
    allowed = declared(*extras) | {"faceswap-flows"}
    undeclared = {}
    for name, where in imported_top_names(ROOT / folder).items():
        if name in sys.stdlib_module_names or name in {"faceswap_flows", "__future__"}:
            continue
        distributions = providers(name)
        if not distributions & allowed:
            undeclared[name] = (where, sorted(distributions) or "not installed")
    assert not undeclared, undeclared
