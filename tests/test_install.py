"""The package as users install it: a wheel and an sdist built with ``python -m build``; the wheel installed with no
extras into a clean virtualenv outside the checkout. There every flow imports, the commands of a missing extra say
which one in one line, a user's own ``flows``/``blocks`` packages coexist with the package's, one flow runs end to
end against the sandbox of the checkout's environment, and ``faceswap-flows init`` + ``deploy`` from a
project folder give deployments that a process worker in yet another folder runs (code fetched by its pull steps)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from prefect.deployments import run_deployment

from faceswap_flows.devstack.prefect_server import LocalPrefectServer
from tests.media import likeness, read_image
from tests.support import RECEIVER_SECRET, SANDBOX_KEY, delete_deployments, restore_stack_blocks, stop_group
from tests.vision import photos

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
LEFT_OUT = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")


@dataclass(frozen=True)
class Venv:
    """A virtualenv of its own; commands run with its bin/ first on PATH and nothing of the checkout's."""

    bin: Path

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if k not in LEFT_OUT}
        return {**base, "PATH": f"{self.bin}{os.pathsep}{base['PATH']}", **extra}

    def run(self, *args: str, cwd: Path, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        return subprocess.run(command, cwd=cwd, env=self.env(**extra), capture_output=True, text=True, timeout=timeout)

    def python(self, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return self.run("python", "-c", code, cwd=cwd)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    ok(subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], capture_output=True, text=True))
    return out


@pytest.fixture(scope="module")
def core(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The wheel with no extras in a fresh virtualenv (no system site-packages)."""
    home = tmp_path_factory.mktemp("core-venv")
    ok(subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], capture_output=True, text=True))
    venv = Venv(home / "venv" / "bin")
    (wheel,) = dist.glob("*.whl")
    ok(venv.run("python", "-m", "pip", "install", "--quiet", str(wheel), cwd=home, timeout=900))
    return venv


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    assert ROOT not in tmp_path.parents
    return tmp_path


def test_the_wheel_and_the_sdist(dist: Path) -> None:
    (wheel,) = dist.glob("faceswap_flows-*.whl")
    (sdist,) = dist.glob("faceswap_flows-*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"faceswap_flows", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "faceswap_flows/prefect.yaml" in names and "faceswap_flows/flows/image.py" in names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    for extra in ("sandbox", "photos", "dev"):
        assert f"Provides-Extra: {extra}" in metadata
    with tarfile.open(sdist) as archive:
        members = {Path(name).relative_to(Path(name).parts[0]).as_posix() for name in archive.getnames() if "/" in name}
    assert {"pyproject.toml", "prefect.yaml", "flows/image.py", "aifaceswap/sandbox/__init__.py"} <= members


IMPORT_ALL = """
import importlib, pkgutil, faceswap_flows
from faceswap_flows.aifaceswap.extras import MissingExtra
for info in pkgutil.walk_packages(faceswap_flows.__path__, "faceswap_flows."):
    try:
        module = importlib.import_module(info.name)
        print("ok", info.name, module.__file__)
    except MissingExtra as error:
        print("extra", info.name, error)
"""


DECLARED = """
from prefect import Flow
from faceswap_flows.flows.deployments import PROJECT_FILE, declared_deployments, load_flow
flows = [load_flow(d["entrypoint"]) for d in declared_deployments().values()]
print(PROJECT_FILE)
print(sum(isinstance(f, Flow) for f in flows), "flows")
"""


def test_the_core_install_imports_every_flow_and_names_the_missing_extras(core: Venv, elsewhere: Path) -> None:
    lines = ok(core.python(IMPORT_ALL, elsewhere)).splitlines()
    imported = {line.split()[1]: line.split()[2] for line in lines if line.startswith("ok ")}
    needs_extra = {line.split()[1]: line for line in lines if line.startswith("extra ")}
    assert len(lines) == len(imported) + len(needs_extra)
    site = str(core.bin.parent / "lib")
    assert all(path.startswith(site) for path in imported.values()), "imported from the checkout, not the wheel"
    for flows in ("image", "video", "batch", "collect", "sweep", "deployments"):
        assert f"faceswap_flows.flows.{flows}" in imported
    assert "faceswap_flows.cli.main" in imported
    assert {"faceswap_flows.blocks", "faceswap_flows.receiver.app", "faceswap_flows.aifaceswap.client"} <= set(imported)
    # what needs the sandbox extra is the sandbox itself and the embedded stack that starts it, nothing else
    assert set(needs_extra) == {"faceswap_flows.aifaceswap.sandbox", "faceswap_flows.devstack.stack"}
    assert all("pip install 'faceswap-flows[sandbox]'" in line for line in needs_extra.values())

    # `faceswap-flows serve` and `init` read the prefect.yaml that ships inside the package
    project_file, loaded = ok(core.python(DECLARED, elsewhere)).splitlines()
    assert Path(project_file).is_relative_to(site) and loaded == "8 flows"

    for command, extras in ((["demo"], "sandbox,photos"), (["sandbox", "--port", "0"], "sandbox")):
        done = core.run("faceswap-flows", *command, cwd=elsewhere, timeout=60)
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and f"pip install 'faceswap-flows[{extras}]'" in done.stderr, done.stderr


USER_PROJECT = {
    "flows/__init__.py": 'WHO = "the user\'s flows"\n',
    "flows/nightly.py": "from prefect import flow\n\n\n@flow\ndef nightly() -> str:\n    return 'user flow'\n",
    "blocks/__init__.py": 'WHO = "the user\'s blocks"\n',
}
BOTH = """
import flows, blocks
from flows.nightly import nightly
from faceswap_flows.flows.image import faceswap
from faceswap_flows.blocks import MediaStorage
import faceswap_flows.flows, faceswap_flows.blocks
print(flows.WHO, "|", blocks.WHO, "|", nightly.name, "|", faceswap.name, "|", MediaStorage.get_block_type_slug())
print(flows.__file__, faceswap_flows.flows.__file__, blocks.__file__, faceswap_flows.blocks.__file__)
"""


def test_a_user_project_with_its_own_flows_and_blocks_packages(core: Venv, elsewhere: Path) -> None:
    for name, text in USER_PROJECT.items():
        (elsewhere / name).parent.mkdir(parents=True, exist_ok=True)
        (elsewhere / name).write_text(text)
    said, paths = ok(core.python(BOTH, elsewhere)).splitlines()
    assert said == "the user's flows | the user's blocks | nightly | faceswap | faceswap-media-storage"
    user_flows, our_flows, user_blocks, our_blocks = paths.split()
    assert Path(user_flows) == elsewhere / "flows/__init__.py" and Path(user_blocks) == elsewhere / "blocks/__init__.py"
    site = core.bin.parent / "lib"
    assert site in Path(our_flows).parents and site in Path(our_blocks).parents


def run_json(stdout: str) -> dict:
    """The outcome a `faceswap-flows run` command prints last (indented JSON)."""
    lines = stdout.splitlines()
    return json.loads("\n".join(lines[lines.index("{") :]))


def test_the_installed_wheel_registers_the_blocks_and_swaps_against_the_sandbox(
    core: Venv, stack, elsewhere: Path
) -> None:
    """The sandbox, receiver and media server run in the checkout's environment (this process); the blocks are
    registered and created, and the flow runs, by the wheel's commands in the clean virtualenv."""
    settings = {
        "AIFACESWAP_API_KEY": SANDBOX_KEY,
        "AIFACESWAP_BASE_URL": stack.sandbox.url,
        "FACESWAP_STORAGE": str(stack.media_dir),
        "FACESWAP_PUBLIC_BASE_URL": stack.media_server.url,
        "FACESWAP_RECEIVER_URL": stack.receiver.url,
        "FACESWAP_RECEIVER_SECRET": RECEIVER_SECRET,
    }
    before = stack.spent()
    try:
        registered = ok(core.run("faceswap-flows", "blocks", "register", cwd=elsewhere))
        assert registered.split() == [
            *("registered", "aifaceswap-credentials", "registered", "faceswap-media-storage"),
            *("registered", "faceswap-webhook-receiver", "registered", "content-signing-key"),
        ]
        ok(core.run("faceswap-flows", "blocks", "create", cwd=elsewhere, **settings))
        ok(core.run("faceswap-flows", "signing", "dev-cert", "--folder", str(elsewhere / "signing"), cwd=elsewhere))
        source, face = str(stack.files["astronaut"]), str(stack.files["grace"])
        done = core.run("faceswap-flows", "run", "faceswap", "--source", source, "--face", face, cwd=elsewhere)
        outcome = run_json(ok(done))
    finally:
        restore_stack_blocks()
    assert outcome["status"] == "stored" and outcome["credits"] == 2 and stack.spent() == before + 2
    result = read_image(stack.storage.read_bytes(outcome["result_key"]))
    assert likeness(result, photos.grace_hopper()) > likeness(result, photos.astronaut())


@dataclass(frozen=True)
class Worker:
    pool: str
    log: Path


@pytest.fixture
def worker(
    core: Venv, prefect_server: LocalPrefectServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """A process worker of a fresh pool, started by the wheel's Prefect in a folder of its own."""
    pool = "installed-wheel-pool"
    folder = tmp_path_factory.mktemp("worker")
    ok(core.run("prefect", "--no-prompt", "work-pool", "create", pool, "--type", "process", "--overwrite", cwd=folder))
    log = folder / "worker.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [str(core.bin / "prefect"), "worker", "start", "--pool", pool],
            cwd=folder,
            env=core.env(PREFECT_WORKER_QUERY_SECONDS="1"),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Worker(pool, log)
    finally:
        stop_group(process)


def git_project(folder: Path, core: Venv, dist: Path, pool: str) -> str:
    """`faceswap-flows init` in a fresh git repository; returns its URL (what workers clone)."""
    folder.mkdir()
    url = folder.as_uri()
    init = ["init", "--pool", pool, "--find-links", str(dist), "--git-repository", url]
    wrote = ok(core.run("faceswap-flows", *init, cwd=folder))
    assert "wrote" in wrote and (folder / "requirements.txt").read_text().splitlines()[-1] == "faceswap-flows==0.1.0"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "init"]):
        ok(subprocess.run([*git, *args], cwd=folder, capture_output=True, text=True))
    return url


def test_init_deploy_and_a_worker_elsewhere_runs_the_deployment(
    core: Venv, dist: Path, stack, worker: Worker, tmp_path: Path
) -> None:
    """The project is a git repository outside the checkout; the worker, in another folder, clones it and pip installs
    its requirements.txt (the pull steps init wrote) before running the flow from the installed package."""
    project = tmp_path / "my-project"
    git_project(project, core, dist, worker.pool)
    declared = yaml.safe_load((project / "prefect.yaml").read_text())
    names = [entry["name"] for entry in declared["deployments"]]
    assert [next(iter(step)) for step in declared["pull"]] == [
        "prefect.deployments.steps.git_clone",
        "prefect.deployments.steps.pip_install_requirements",
    ]
    results = stack.media_dir / "results" / "faceswap"
    stored_before = set(results.glob("*.png"))
    spent_before = stack.spent()
    try:
        deployed = core.run("faceswap-flows", "deploy", "--pool", worker.pool, cwd=project)  # prefect deploy --all
        assert ok(deployed).count("successfully created") == len(names) == 8
        run = run_deployment(  # sync here: it waits for the run to end
            "faceswap/faceswap",
            parameters={"source_image": str(stack.files["astronaut"]), "face_image": str(stack.files["grace"])},
            timeout=300,
        )
    finally:
        asyncio.run(delete_deployments(names))
    log = worker.log.read_text(errors="replace")
    assert run.state is not None and run.state.is_completed(), f"{run.state}\n{log[-4000:]}"
    assert run.work_pool_name == worker.pool
    assert "Requirement already satisfied: faceswap-flows==0.1.0" in log  # the pull step's pip install
    assert stack.spent() == spent_before + 2
    (new,) = set(results.glob("*.png")) - stored_before
    result = read_image(new.read_bytes())
    assert likeness(result, photos.grace_hopper()) > likeness(result, photos.astronaut())
