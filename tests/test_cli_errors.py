"""Errors on the command line name the option (``--max-credits``, ``--no-sign``), never the Python parameter
(``max_credits``, ``options.max_credits``): every option of every run command given a bad value, the messages
turned into the command's spellings, and a Prefect server that does not answer. The flows' own errors through the
command line (a missing block, signing, consent, a folder as the manifest, a failed job) are in
test_errors_explained.py."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from faceswap_flows.cli.errors import in_cli_terms, spellings
from faceswap_flows.cli.flow_options import flow_options
from faceswap_flows.cli.main import app
from faceswap_flows.devstack.prefect_server import free_port
from tests.run_commands import RUN_COMMANDS

# A value the command line itself refuses, by parameter: before any flow runs, so before Prefect is asked.
BAD_VALUES = {
    "timeout_seconds": ["0", "soon"],
    "max_credits": ["-1", "lots"],
    "on_unknown_outcome": ["twice"],
    "watermark_corner": ["top"],
    "credentials": [""],
    "storage": [""],
    "receiver": [""],
    "face_indexes": ["first"],
    "enhance": ["7"],
    "trim_start": ["start"],
    "trim_end": ["end"],
    "frame_time": ["noon"],
    "face_map": ["no-equals-sign"],
    "max_concurrency": ["many"],
    "items_per_task": ["0"],
}
FLAGS = ("wait", "require_consent", "label", "sign", "force")  # an on/off flag given a value
# Any text is a valid value here; the flow checks it (paths, keys, patterns, block names: see
# test_errors_explained.py for what the flows say then).
ANY_TEXT = {"source_image", "face_image", "image", "face_images", "reference_images", "source_video", "manifest"}
ANY_TEXT |= {"source", "include", "exclude", "retry_failed", "output_template", "concurrency_limit", "watermark"}
ANY_TEXT |= {"signing_block", "csv"}

runner = CliRunner()


def command_of(path: tuple[str, ...]) -> Any:
    command = typer.main.get_command(app)
    for part in path:
        command = command.commands[part]
    return command


def flag_of(parameter: Any) -> str:
    return next(opt for opt in parameter.opts if opt.startswith("--"))


def given_somehow(parameter: Any) -> list[str]:
    """A required parameter given a value (an option by its flag)."""
    return [flag_of(parameter), "x.png"] if parameter.param_type_name == "option" else ["x.png"]


def required_by_the_flow(path: tuple[str, ...]) -> set[str]:
    """The flow's parameters without a default (an option the CLI may leave optional, e.g. extract-faces' image,
    whose old positional form is still read)."""
    signature = inspect.signature(RUN_COMMANDS[path].fn)
    return {name for name, p in signature.parameters.items() if p.default is inspect.Parameter.empty}


def bad_cases() -> list[tuple[tuple[str, ...], str, str]]:
    cases = []
    for path in RUN_COMMANDS:
        for parameter in command_of(path).params:
            cases += [(path, parameter.name, value) for value in BAD_VALUES.get(parameter.name, [])]
            if parameter.name in FLAGS:
                cases.append((path, parameter.name, "maybe"))
    return cases


def test_every_option_of_every_run_command_is_walked() -> None:
    """A new option gets a bad value here, or is declared free text the flow checks."""
    for path in RUN_COMMANDS:
        names = {p.name for p in command_of(path).params} - {"help"}
        unwalked = names - set(BAD_VALUES) - set(FLAGS) - ANY_TEXT
        assert not unwalked, f"{' '.join(path)}: give {sorted(unwalked)} a bad value in BAD_VALUES"


@pytest.mark.parametrize(("path", "name", "value"), bad_cases(), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_a_bad_value_names_the_flag(path: tuple[str, ...], name: str, value: str, tmp_path: Path) -> None:
    command = command_of(path)
    parameter = next(p for p in command.params if p.name == name)
    flag = flag_of(parameter)
    given = [f"{flag}={value}"] if name in FLAGS else [flag, value]
    required = required_by_the_flow(path)
    needed = [
        arg for p in command.params if (p.required or p.name in required) and p.name != name for arg in given_somehow(p)
    ]
    manifest = [str(tmp_path / "m.csv")] if path in (("run", "batch"), ("plan",)) else []
    result = runner.invoke(app, [*path, *manifest, *needed, *given], env={"COLUMNS": "200"})
    assert result.exit_code != 0, result.output
    assert flag in result.output, result.output
    groups = {option.name: option.group for option in flow_options(RUN_COMMANDS[path]) if option.group}
    assert f"{groups.get(name)}.{name}" not in result.output, result.output
    if "_" in name:
        assert name not in result.output, result.output
    assert "Traceback" not in result.output


def test_the_python_spellings_become_the_commands() -> None:
    command = command_of(("run", "faceswap"))
    names = spellings(command, {"sign": "output", "storage": "blocks", "require_consent": "options"})
    assert names["output.sign=False"] == "--no-sign" and names["sign"] == "--sign/--no-sign"
    message = (
        "blocks.storage: there is no MediaStorage block named 'x': set `blocks.storage`; or set `output.sign=False`; "
        "`require_consent=True` swaps only consented faces; the manifest column source_image stays"
    )
    assert in_cli_terms(message, names) == (
        "--storage: there is no MediaStorage block named 'x': set `--storage`; or set `--no-sign`; "
        "`--require-consent` swaps only consented faces; the manifest column source_image stays"
    )
    multi = command_of(("run", "multi-faceswap"))
    index = flag_of(next(p for p in multi.params if p.name == "face_indexes"))
    assert (
        in_cli_terms("face_indexes[0]: face 3 does not exist", spellings(multi)) == f"{index}[0]: face 3 does not exist"
    )
    assert in_cli_terms("manifest: 'x' is a folder", spellings(command_of(("run", "batch")))) == (
        "MANIFEST: 'x' is a folder"
    )


def test_a_consent_date_names_until_not_expires(tmp_path: Path) -> None:
    photo = tmp_path / "face.jpg"
    photo.write_bytes(b"not read before the date is checked")
    result = runner.invoke(
        app,
        ["consent", "add", str(photo), "--by", "X", "--scope", "s", "--until", "31/12/2027"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: --until: Input should be a valid date"), result.output
    assert "expires" not in result.output and "YYYY-MM-DD" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["run", "faceswap", "--source", "a.png", "--face", "b.png"],
        ["run", "batch", "m.csv"],
        ["consent", "list"],
        ["blocks", "create", "--api-key", "k"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_a_prefect_server_that_does_not_answer_says_what_to_do(args: list[str], tmp_path: Path) -> None:
    """The installed console script, as a user runs it, pointed at a port nothing listens on."""
    api = f"http://127.0.0.1:{free_port()}/api"
    (tmp_path / "m.csv").write_text("source_image,face_image\na.png,b.png\n")
    script = Path(sys.executable).parent / "faceswap-flows"
    done = subprocess.run(
        [str(script), *args],
        env={**os.environ, "PREFECT_API_URL": api, "FACESWAP_STORAGE": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: cannot reach the Prefect server at {api}"), done.stderr[-2000:]
    assert "`make demo`" in lines[-1] and "`prefect server start`" in lines[-1] and "PREFECT_API_URL" in lines[-1]
    assert "Traceback" not in done.stdout + done.stderr
    assert not re.search(r"RuntimeError|ConnectError", done.stderr), done.stderr[-2000:]


def test_without_a_prefect_server_a_command_says_which_server_it_asked(tmp_path: Path) -> None:
    """After the demo stops (no PREFECT_API_URL, no prefect.toml), `credits` asks a temporary server: it says so
    in one line, with no stray line from that server (its telemetry fails offline)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    script = Path(sys.executable).parent / "faceswap-flows"
    done = subprocess.run([str(script), "credits"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 1, done.stdout + done.stderr
    output = (done.stdout + done.stderr).strip().splitlines()
    error = output[-1]
    assert error.startswith("error: --storage: cannot load the MediaStorage block 'faceswap-media'"), output[-5:]
    assert "temporary Prefect server" in error and "PREFECT_API_URL is not set" in error
    assert not [line for line in output if "telemetry" in line.lower()], output
