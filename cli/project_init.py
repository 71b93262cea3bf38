"""``faceswap-flows init``: a user's own project gets a ``prefect.yaml`` with the package's deployments (entrypoints
by module path, so they run from the installed package, not from a checkout) and a ``pull`` step that gets a worker
on another machine ready: it installs the project's ``requirements.txt`` (which names faceswap-flows), after
cloning the project from git when a repository is given."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from faceswap_flows.flows.deployments import PACKAGE_POOL, PACKAGE_STORE_POOL, PROJECT_FILE, module_entrypoint

STEPS = "prefect.deployments.steps"
HEADER = """\
# Written by `faceswap-flows init`: the deployments of faceswap-flows, run from the installed package.
# Once, from this folder: faceswap-flows deploy (it creates the pools {pool} and {store_pool} if missing)
# On each worker machine (Prefect installed): prefect worker start --pool {pool}
# Before each flow run, that worker runs the pull steps below: they pip install requirements.txt ({where}).
# The store deployments run on {store_pool}: on a machine with faceswap-flows installed,
# prefect worker start --pool {store_pool} (each run inside that worker's process; pull steps are not run there).
"""


def pull_steps(project: Path, git_repository: str | None, git_branch: str | None) -> list[dict[str, Any]]:
    """Where a worker finds the project (this folder, or a fresh clone) and the pip install of its requirements."""
    install = {"requirements_file": "requirements.txt"}
    if not git_repository:
        return [
            {f"{STEPS}.set_working_directory": {"directory": str(project)}},
            {f"{STEPS}.pip_install_requirements": install},
        ]
    clone: dict[str, Any] = {"id": "clone-project", "repository": git_repository}
    if git_branch:
        clone["branch"] = git_branch
    return [
        {f"{STEPS}.git_clone": clone},
        {f"{STEPS}.pip_install_requirements": {"directory": "{{ clone-project.directory }}", **install}},
    ]


NIGHTLY = "nightly-batch"
NIGHTLY_OFF = (
    "The schedule is INACTIVE until you name your prefix and face: faceswap-flows init --nightly-source PREFIX "
    "--nightly-face FACE --force (or edit source and face_image here and set active: true)."
)


def nightly(entry: dict[str, Any], source: str | None, face: str | None) -> dict[str, Any]:
    """The nightly batch over the user's ``source`` prefix with their ``face``, scheduled; without both, the
    package's example parameters with the schedule inactive (they name files a new project does not have)."""
    entry = {**entry, "parameters": dict(entry.get("parameters") or {})}
    active = bool(source and face)
    if active:
        entry["parameters"].update(source=source, face_image=face)
    else:
        entry["description"] = f"{entry.get('description', '')} {NIGHTLY_OFF}".strip()
    entry["schedules"] = [{**schedule, "active": active} for schedule in entry.get("schedules") or []]
    return entry


def project_config(
    name: str,
    pool: str,
    pull: list[dict[str, Any]],
    nightly_source: str | None = None,
    nightly_face: str | None = None,
    store_pool: str = PACKAGE_STORE_POOL,
) -> dict[str, Any]:
    """The package's declared deployments, on ``pool`` (the store deployments on ``store_pool``), with module-path
    entrypoints and the given pull steps; the nightly batch scheduled only over a named prefix and face."""
    declared = yaml.safe_load(PROJECT_FILE.read_text())["deployments"]
    pools = {PACKAGE_POOL: pool, PACKAGE_STORE_POOL: store_pool}
    deployments = [
        {
            **entry,
            "entrypoint": module_entrypoint(entry["entrypoint"]),
            "work_pool": {"name": pools[entry["work_pool"]["name"]]},
        }
        for entry in declared
    ]
    deployments = [nightly(d, nightly_source, nightly_face) if d["name"] == NIGHTLY else d for d in deployments]
    return {
        "name": name,
        "prefect-version": version("prefect"),
        "build": None,
        "push": None,
        "pull": pull,
        "deployments": deployments,
    }


def requirement_lines(requirement: str | None, find_links: list[str]) -> list[str]:
    """``faceswap-flows==<this version>`` (or the given requirement), after any ``--find-links`` lines."""
    spec = requirement or f"faceswap-flows=={version('faceswap-flows')}"
    return [*(f"--find-links {link}" for link in find_links), spec]


def write_project(
    project: Path,
    *,
    pool: str,
    store_pool: str = PACKAGE_STORE_POOL,
    requirement: str | None = None,
    find_links: list[str] | None = None,
    git_repository: str | None = None,
    git_branch: str | None = None,
    force: bool = False,
    nightly_source: str | None = None,
    nightly_face: str | None = None,
) -> list[str]:
    """Write ``prefect.yaml`` and ``requirements.txt`` into ``project``; returns what was done, one line each.

    An existing prefect.yaml is kept unless ``force``; an existing requirements.txt gets the faceswap-flows line
    appended when it names no faceswap-flows yet."""
    project = project.resolve()
    target = project / "prefect.yaml"
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists: pass --force to overwrite it")
    project.mkdir(parents=True, exist_ok=True)
    if bool(nightly_source) != bool(nightly_face):
        raise ValueError("--nightly-source and --nightly-face go together: name the prefix and the face photo")
    pull = pull_steps(project, git_repository, git_branch)
    config = project_config(project.name, pool, pull, nightly_source, nightly_face, store_pool)
    where = f"cloned from {git_repository}" if git_repository else f"in {project}"
    body = yaml.safe_dump(config, sort_keys=False, width=120, allow_unicode=True)
    target.write_text(HEADER.format(pool=pool, store_pool=store_pool, where=where) + body)
    done = [f"wrote {target} ({len(config['deployments'])} deployments on pool {pool}, the store ones on {store_pool})"]
    if nightly_source:
        done.append(f"{NIGHTLY}: every night at 02:00 UTC over {nightly_source} with {nightly_face}")
    else:
        done.append(f"{NIGHTLY}: {NIGHTLY_OFF}")
    requirements = project / "requirements.txt"
    lines = requirement_lines(requirement, find_links or [])
    if not requirements.exists():
        requirements.write_text("\n".join(lines) + "\n")
        done.append(f"wrote {requirements}")
    elif "faceswap-flows" not in requirements.read_text():
        with requirements.open("a") as handle:
            handle.write("\n" + "\n".join(lines) + "\n")
        done.append(f"added {lines[-1]} to {requirements}")
    else:
        done.append(f"kept {requirements} (it names faceswap-flows already)")
    return done
