"""The flows' parameter groups and the command line built from them: every flow parameter (every field of a group)
has its CLI option with the same description, and the values given on the command line reach the flow as typed,
validated groups."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from faceswap_flows.cli import batch as cli_batch
from faceswap_flows.cli.flow_options import flow_command, for_the_command_line, option_name
from faceswap_flows.cli.main import app
from faceswap_flows.flows.batch import batch_faceswap
from faceswap_flows.flows.image import extract_faces, faceswap, multi_faceswap
from faceswap_flows.flows.options import BlockNames, OutputOptions, SwapOptions, VideoOptions
from faceswap_flows.flows.video import multi_video_faceswap, video_faceswap

RUN_COMMANDS = {
    ("run", "faceswap"): faceswap,
    ("run", "extract-faces"): extract_faces,
    ("run", "multi-faceswap"): multi_faceswap,
    ("run", "video-faceswap"): video_faceswap,
    ("run", "multi-video-faceswap"): multi_video_faceswap,
    ("run", "batch"): batch_faceswap,
    ("plan",): batch_faceswap,
}
GROUPS = {"SwapOptions": SwapOptions, "OutputOptions": OutputOptions, "VideoOptions": VideoOptions}
GROUPS["BlockNames"] = BlockNames


def flow_leaves(flow: Any) -> dict[str, str]:
    """Every parameter of the flow as Prefect's parameter schema (the UI's form) shows it, groups expanded to their
    fields: name -> description."""
    schema = flow.parameters.model_dump()
    leaves: dict[str, str] = {}
    for name, prop in schema["properties"].items():
        reference = prop.get("$ref") or next((p["$ref"] for p in prop.get("allOf", []) if "$ref" in p), None)
        if reference:
            group = schema["definitions"][reference.rsplit("/", 1)[1]]
            leaves.update({field: spec.get("description", "") for field, spec in group["properties"].items()})
        else:
            leaves[name] = prop.get("description", "")
    return leaves


def cli_options(path: tuple[str, ...]) -> dict[str, str]:
    """The command's parameters (options and arguments) by the flow parameter they set: name -> help."""
    command = typer.main.get_command(app)
    for part in path:
        command = command.commands[part]  # type: ignore[attr-defined]
    found = {}
    for parameter in command.params:
        if parameter.name == "help":
            continue
        flags = [flag for flag in parameter.opts if flag.startswith("--")]
        name = option_name(flags[0]) if flags else parameter.name
        assert name == parameter.name, f"{flags[0]} sets {parameter.name}"
        found[name] = " ".join((getattr(parameter, "help", None) or "").split())
    return found


@pytest.mark.parametrize("path", list(RUN_COMMANDS), ids=[" ".join(p) for p in RUN_COMMANDS])
def test_every_flow_parameter_has_its_option_with_its_description(path: tuple[str, ...]) -> None:
    flow = RUN_COMMANDS[path]
    leaves = flow_leaves(flow)
    options = cli_options(path)
    left_out = {"plan"} | (set(cli_batch.RUN_ONLY) if path == ("plan",) else set())
    extra = {"csv"} if path == ("plan",) else set()
    assert set(options) - extra == set(leaves) - left_out
    for name, description in leaves.items():
        if name in options:
            assert description, f"{flow.name}: {name} has no description"
            shown = for_the_command_line(" ".join(description.split()), set(options))
            assert options[name].startswith(shown), (name, options[name], description)


def test_the_groups_are_described_and_defaulted() -> None:
    for group in GROUPS.values():
        assert group.__doc__
        for name, field in group.model_fields.items():
            assert field.description, f"{group.__name__}.{name} has no description"
            assert not field.is_required(), f"{group.__name__}.{name} has no default"


def test_every_swap_flow_takes_the_groups_and_no_flat_copy_of_their_fields() -> None:
    fields = {name for group in GROUPS.values() for name in group.model_fields}
    for flow in (faceswap, multi_faceswap, video_faceswap, multi_video_faceswap, batch_faceswap):
        properties = flow.parameters.model_dump()["properties"]
        assert {"options", "output", "blocks"} <= set(properties), flow.name
        assert not fields & set(properties), f"{flow.name} repeats {fields & set(properties)} outside the groups"


def test_options_on_the_command_line_reach_the_flow_as_typed_groups() -> None:
    received: list[dict[str, Any]] = []
    cli = typer.Typer()
    cli.command()(flow_command(video_faceswap, received.append, help="video"))
    given = ["--video", "clip.mp4", "--face", "me.jpg", "--enhance", "2", "--trim-end", "4.5", "--no-wait"]
    given += ["--max-credits", "30", "--on-unknown-outcome", "resubmit", "--no-label", "--storage", "s3-media"]
    result = CliRunner().invoke(cli, given)
    assert result.exit_code == 0, result.output
    [parameters] = received
    assert parameters["source_video"] == "clip.mp4" and parameters["face_image"] == "me.jpg"
    assert parameters["video_options"] == VideoOptions(enhance=2, trim_end=4.5)
    assert parameters["options"] == SwapOptions(wait=False, max_credits=30, on_unknown_outcome="resubmit")
    assert parameters["output"] == OutputOptions(label=False)
    assert parameters["blocks"] == BlockNames(storage="s3-media")


def test_a_wrong_value_names_its_option_before_the_flow_runs() -> None:
    received: list[dict[str, Any]] = []
    cli = typer.Typer()
    cli.command()(flow_command(video_faceswap, received.append, help="video"))
    result = CliRunner().invoke(cli, ["--video", "a.mp4", "--face", "b.jpg", "--enhance", "3"])
    assert result.exit_code == 1 and not received
    assert "--enhance" in result.output and "got 3" in result.output
    result = CliRunner().invoke(cli, ["--video", "a.mp4", "--face", "b.jpg", "--on-unknown-outcome", "twice"])
    assert result.exit_code == 1 and not received
    assert "--on-unknown-outcome: Input should be 'at-most-once' or 'resubmit' (got 'twice')" in result.output


def test_a_face_map_is_given_as_key_value_items() -> None:
    received: list[dict[str, Any]] = []
    cli = typer.Typer()
    cli.command()(flow_command(batch_faceswap, received.append, help="batch", leave_out=("plan",)))
    result = CliRunner().invoke(cli, ["--source", "shoot/", "--face-map", "0=a.jpg", "--face-map", "ref.jpg=b.jpg"])
    assert result.exit_code == 0, result.output
    assert received[0]["face_map"] == {"0": "a.jpg", "ref.jpg": "b.jpg"}
    result = CliRunner().invoke(cli, ["--source", "shoot/", "--face-map", "a.jpg"])
    assert result.exit_code != 0 and "KEY=VALUE" in result.output


def test_the_command_line_imports_a_flow_only_for_its_command() -> None:
    """`faceswap-flows receiver` (or any command but run/plan) does not pay for importing the flows."""
    import subprocess
    import sys

    probe = (
        "import sys; from faceswap_flows.cli.main import app; import typer; "
        "group = typer.main.get_command(app); group.get_command(None, 'receiver'); "
        "print(sorted(m for m in sys.modules if m.startswith('faceswap_flows.flows.')))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert not any(name in loaded for name in ("flows.image", "flows.video", "flows.batch'")), loaded
