"""``faceswap-flows init`` writes a project's prefect.yaml (every deployment of the package, entrypoints that load
from the installed package, pull steps for workers) and requirements.txt; ``deploy`` needs such a folder. The
whole path (deploy from a project outside the checkout, a worker elsewhere) runs in tests/test_install.py."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import yaml
from prefect import Flow
from prefect.flows import load_flow_from_entrypoint
from typer.testing import CliRunner

from faceswap_flows.cli.main import app
from faceswap_flows.flows.deployments import PROJECT_FILE, declared_deployments, module_entrypoint

runner = CliRunner()
STEPS = "prefect.deployments.steps"


def init(*args: str) -> tuple[int, str]:
    outcome = runner.invoke(app, ["init", *args])
    return outcome.exit_code, outcome.output


def test_init_writes_every_deployment_with_a_pull_step_for_this_folder(tmp_path: Path) -> None:
    project = tmp_path / "my project"
    code, said = init(str(project), "--pool", "gpu-less", "--store-pool", "stores")
    assert code == 0, said
    assert "8 deployments on pool gpu-less, the store ones on stores" in said
    written = yaml.safe_load((project / "prefect.yaml").read_text())
    assert written["pull"] == [
        {f"{STEPS}.set_working_directory": {"directory": str(project)}},
        {f"{STEPS}.pip_install_requirements": {"requirements_file": "requirements.txt"}},
    ]
    package = declared_deployments()
    assert [d["name"] for d in written["deployments"]] == list(package) and len(package) == 8
    for deployment in written["deployments"]:
        declared = package[deployment["name"]]
        store = deployment["name"] in ("store-result", "store-results")
        assert deployment["work_pool"] == {"name": "stores" if store else "gpu-less"}
        mine = ("work_pool", "entrypoint") + (
            ("schedules", "description") if deployment["name"] == "nightly-batch" else ()
        )
        assert {k: v for k, v in deployment.items() if k not in mine} == {
            k: v for k, v in declared.items() if k not in mine
        }  # triggers, schedules, parameters and limits as the package declares them
        assert ".py" not in deployment["entrypoint"]
        assert isinstance(load_flow_from_entrypoint(deployment["entrypoint"]), Flow)
    assert (project / "requirements.txt").read_text() == f"faceswap-flows=={version('faceswap-flows')}\n"
    assert written["prefect-version"] == version("prefect")


def test_init_with_git_clones_then_installs(tmp_path: Path) -> None:
    url = "https://git.example.com/me/my-project.git"
    code, said = init(str(tmp_path), "--git-repository", url, "--git-branch", "prod", "--find-links", "/srv/wheels")
    assert code == 0, said
    written = yaml.safe_load((tmp_path / "prefect.yaml").read_text())
    assert written["pull"] == [
        {f"{STEPS}.git_clone": {"id": "clone-project", "repository": url, "branch": "prod"}},
        {
            f"{STEPS}.pip_install_requirements": {
                "directory": "{{ clone-project.directory }}",
                "requirements_file": "requirements.txt",
            }
        },
    ]
    assert (tmp_path / "requirements.txt").read_text().splitlines()[0] == "--find-links /srv/wheels"


def test_init_keeps_what_exists(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("pandas>=2\n")
    assert init(str(tmp_path), "--requirement", "faceswap-flows[sandbox]==0.1.0")[0] == 0
    assert (tmp_path / "requirements.txt").read_text() == "pandas>=2\n\nfaceswap-flows[sandbox]==0.1.0\n"
    code, said = init(str(tmp_path))
    assert code == 1 and said.count("\n") == 1 and "exists: pass --force" in said
    code, said = init(str(tmp_path), "--force")
    assert code == 0 and "kept" in said and (tmp_path / "requirements.txt").read_text().count("faceswap-flows") == 1


def test_deploy_needs_a_project_folder(tmp_path: Path) -> None:
    outcome = runner.invoke(app, ["deploy", "--project", str(tmp_path)])
    assert outcome.exit_code == 1 and "faceswap-flows init" in outcome.output and outcome.output.count("\n") == 1


def test_the_checkout_and_the_package_declare_module_entrypoints() -> None:
    assert PROJECT_FILE.name == "prefect.yaml" and PROJECT_FILE.is_file()
    assert all(d["entrypoint"].startswith("faceswap_flows.") for d in declared_deployments().values())
    assert module_entrypoint("flows/image.py:faceswap") == "faceswap_flows.flows.image:faceswap"


def test_the_nightly_batch_is_scheduled_only_over_a_named_prefix_and_face(tmp_path: Path) -> None:
    """A fresh project has no catalogue/ nor faces/ambassador.jpg: its nightly schedule stays inactive (and says
    how to turn it on) until the user names a prefix and a face."""
    code, said = init(str(tmp_path / "fresh"))
    assert code == 0 and "INACTIVE until you name your prefix and face" in said, said
    (nightly,) = [d for d in yaml.safe_load((tmp_path / "fresh" / "prefect.yaml").read_text())["deployments"]
                  if d["name"] == "nightly-batch"]  # fmt: skip
    assert [s["active"] for s in nightly["schedules"]] == [False] and "--nightly-source" in nightly["description"]
    code, said = init(str(tmp_path / "mine"), "--nightly-source", "s3://shop/new/", "--nightly-face", "faces/me.jpg")
    assert code == 0, said
    (nightly,) = [d for d in yaml.safe_load((tmp_path / "mine" / "prefect.yaml").read_text())["deployments"]
                  if d["name"] == "nightly-batch"]  # fmt: skip
    assert [s["active"] for s in nightly["schedules"]] == [True]
    assert nightly["parameters"]["source"] == "s3://shop/new/" and nightly["parameters"]["face_image"] == "faces/me.jpg"
    code, said = init(str(tmp_path / "half"), "--nightly-source", "s3://shop/new/")
    assert code == 1 and "--nightly-face" in said
