"""The flows' parameter groups and the command line built from them: every flow parameter (every field of a group)
has its CLI option with the same description, and the values given on the command line reach the flow as typed,
validated groups."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from faceswap_flows.cli import batch as cli_batch
from faceswap_flows.cli.flow_options import flow_command, for_the_command_line
from faceswap_flows.cli.main import app
from faceswap_flows.flows.batch.flow import batch_faceswap
from faceswap_flows.flows.image import extract_faces, faceswap, multi_faceswap
from faceswap_flows.flows.options import BlockNames, OutputOptions, SwapOptions, VideoOptions, VideoOutputOptions
from faceswap_flows.flows.video import multi_video_faceswap, video_faceswap
from tests.run_commands import RUN_COMMANDS

GROUPS = {"SwapOptions": SwapOptions, "OutputOptions": OutputOptions, "VideoOptions": VideoOptions}
GROUPS.update(BlockNames=BlockNames, VideoOutputOptions=VideoOutputOptions)


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


def cli_command(path: tuple[str, ...]) -> Any:
    command = typer.main.get_command(app)
    for part in path:
        command = command.commands[part]  # type: ignore[attr-defined]
    return command


def cli_options(path: tuple[str, ...]) -> dict[str, str]:
    """The command's parameters (options and arguments) by the flow parameter they set: name -> help."""
    return {
        parameter.name: " ".join((getattr(parameter, "help", None) or "").split())
        for parameter in cli_command(path).params
        if parameter.name != "help"
    }


def cli_flags(path: tuple[str, ...]) -> dict[str, list[str]]:
    """The flags of each parameter the command sets, in the order its help shows them."""
    return {parameter.name: list(parameter.opts) for parameter in cli_command(path).params if parameter.name != "help"}


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


@pytest.mark.parametrize("path", list(RUN_COMMANDS), ids=[" ".join(p) for p in RUN_COMMANDS])
def test_every_flow_parameter_is_spelled_as_an_option(path: tuple[str, ...]) -> None:
    """A parameter's own name (as a deployment, the UI and Python spell it) is always one of its option's flags:
    ``source_video`` -> ``--source-video``, ``face_indexes`` -> ``--face-indexes``."""
    flags = cli_flags(path)
    for name in flags:
        if name in ("manifest", "csv"):  # the manifest is positional; csv is the plan's own
            continue
        spelled = "--" + name.replace("_", "-")
        assert spelled in flags[name], (path, name, flags[name])


SWAP_PATHS = [path for path in RUN_COMMANDS if path != ("run", "extract-faces")]


@pytest.mark.parametrize("path", SWAP_PATHS, ids=[" ".join(p) for p in SWAP_PATHS])
def test_every_swap_command_takes_source_and_face_first(path: tuple[str, ...]) -> None:
    """`--source` and `--face` are the first flags of the inputs of every swap command (the API's own names, e.g.
    `--source-video`, follow), and they set the flow's source and face parameters."""
    by_flag = {flag: name for name, flags in cli_flags(path).items() for flag in flags}
    firsts = {flags[0] for flags in cli_flags(path).values()}
    assert {"--source", "--face"} <= firsts, (path, sorted(firsts))
    assert by_flag["--source"] in ("source_image", "source_video", "source"), by_flag["--source"]
    assert by_flag["--face"] in ("face_image", "face_images"), by_flag["--face"]
    received: list[dict[str, Any]] = []
    cli = typer.Typer()
    cli.command()(flow_command(RUN_COMMANDS[path], received.append, help="swap", leave_out=("plan",)))
    result = CliRunner().invoke(cli, ["--source", "team.jpg", "--face", "me.jpg"])
    assert result.exit_code == 0, result.output
    assert received[0][by_flag["--source"]] == "team.jpg"
    assert received[0][by_flag["--face"]] in ("me.jpg", ["me.jpg"])


def test_extract_faces_takes_source_and_still_reads_the_old_positional_form() -> None:
    assert cli_flags(("run", "extract-faces"))["image"][:2] == ["--source", "--image"]
    received: list[dict[str, Any]] = []
    cli = typer.Typer()
    command = flow_command(extract_faces, received.append, help="faces", formerly_positional="image")
    cli.command(context_settings=command.context_settings)(command)  # type: ignore[attr-defined]
    assert CliRunner().invoke(cli, ["--source", "team.jpg"]).exit_code == 0
    old = CliRunner().invoke(cli, ["group.jpg"])
    assert old.exit_code == 0, old.output
    assert [r["image"] for r in received] == ["team.jpg", "group.jpg"]
    assert "is the old form: write --source group.jpg" in old.stderr
    missing = CliRunner().invoke(cli, [])
    assert missing.exit_code == 1 and "--source: missing" in missing.output and len(received) == 2


@pytest.mark.parametrize("path", [("run", "video-faceswap"), ("run", "multi-video-faceswap")])
def test_the_video_commands_and_forms_offer_no_watermark(path: tuple[str, ...]) -> None:
    """Videos get no visible watermark: neither the command line nor the UI's form offers one (the image commands
    do), and `--watermark` is an unknown option there."""
    assert not {"watermark", "watermark_corner"} & set(cli_options(path))
    assert not {"watermark", "watermark_corner"} & set(flow_leaves(RUN_COMMANDS[path]))
    assert {"watermark", "watermark_corner"} <= set(cli_options(("run", "faceswap")))
    given = [*path, "--source", "a.mp4", "--face", "b.jpg", "--watermark", "AI"]
    refused = CliRunner().invoke(app, given, env={"COLUMNS": "200"})
    assert refused.exit_code == 2 and "No such option: --watermark" in refused.output


def test_a_saved_video_deployment_with_the_old_watermark_fields_still_reads(caplog: pytest.LogCaptureFixture) -> None:
    """A video deployment saved when the video flows took the images' output group: its empty watermark fields are
    left out (saying so), its other choices kept; a watermark is refused by name."""
    saved = {"label": False, "watermark": None, "watermark_corner": "bottom-right", "sign": True}
    parameters = {"source_video": "a.mp4", "face_image": "b.jpg", "output": saved}
    with caplog.at_level(logging.WARNING, logger="faceswap_flows.flows.options"):
        assert video_faceswap.validate_parameters(parameters)["output"] == VideoOutputOptions(label=False)
    assert "output.watermark, output.watermark_corner: no longer parameters of the video flows" in caplog.text
    with pytest.raises(Exception, match=r"output\.watermark: videos get no visible watermark \(asked for 'AI'\)"):
        video_faceswap.validate_parameters({**parameters, "output": {**saved, "watermark": "AI"}})


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
    assert parameters["output"] == VideoOutputOptions(label=False)
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


STORAGE_COMMANDS = [*RUN_COMMANDS, ("run", "faceswap"), ("audit",), ("consent", "list"), ("consent", "add")]
STORAGE_COMMANDS += [("consent", "revoke"), ("credits",), ("doctor",), ("blocks", "create")]


@pytest.mark.parametrize("path", STORAGE_COMMANDS, ids=[" ".join(p) for p in STORAGE_COMMANDS])
def test_the_storage_block_is_named_by_storage_on_every_command(path: tuple[str, ...]) -> None:
    """`--storage NAME` names the MediaStorage block wherever a command takes one (audit, consent and credits also
    read their earlier `--storage-block`)."""
    [flags] = [flags for flags in cli_flags(path).values() if "--storage" in flags]
    assert flags[0] == "--storage" and set(flags) <= {"--storage", "--storage-block"}, flags
