"""The command line: every command answers --help, errors are one line with a non-zero exit, and the servers
start on the ports they are given."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from faceswap_flows.cli.main import app
from faceswap_flows.devstack.prefect_server import free_port
from tests.vision import photos

runner = CliRunner()
COMMANDS = [
    [],
    ["demo"],
    ["sandbox"],
    ["receiver"],
    ["media-server"],
    ["run"],
    ["run", "faceswap"],
    ["run", "batch"],
    ["run", "batch-faceswap"],
    ["run", "extract-faces"],
    ["run", "video-faceswap"],
    ["estimate"],
    ["estimate", "video-faceswap"],
    ["blocks"],
    ["blocks", "create"],
    ["deploy"],
    ["serve"],
    ["collect"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) or "top" for c in COMMANDS])
def test_help_everywhere(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    face = photos.crop_resize(photos.astronaut(), photos.ASTRONAUT_HEAD, photos.ASTRONAUT_FACE, 240)[0]
    return photos.write_video(path, lambda i: photos.on_canvas(face, (320, 240), (40, 0)), 60, fps=25)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["estimate", "faceswap"], "2 credits"),
        (["estimate", "extract-faces"], "2 credits"),
        (["estimate", "multi-faceswap"], "5 credits"),
        (["estimate", "multi-faceswap", "--references", "2"], "11 credits"),
        (["estimate", "video-faceswap", "--source", "{clip}"], "6 credits"),  # 2.4 s -> 3 s at 2 credits
        (["estimate", "video-faceswap", "{clip}"], "6 credits"),  # the old positional form, still read
        (["estimate", "video-faceswap", "--source", "{clip}", "--enhance", "2", "--trim-end", "1"], "6 credits"),
        (["estimate", "multi-video-faceswap", "--source", "{clip}", "--faces", "2"], "20 credits"),  # (2+1)*2*3 + 2
    ],
)
def test_estimate(clip: Path, args: list[str], expected: str) -> None:
    result = runner.invoke(app, [a.replace("{clip}", str(clip)) for a in args])
    assert result.exit_code == 0 and result.stdout.startswith(expected), result.output
    old_form = "--source" not in args and "video" in args[1]
    assert ("is the old form: write --source" in result.stderr) == old_form, result.stderr


def test_estimate_batch(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("source_image,face_image\na.png,b.png\nc.png,d.png\n")
    result = runner.invoke(app, ["estimate", "batch", str(manifest)])
    assert result.exit_code == 0 and result.output.startswith("4 credits")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["estimate", "video-faceswap", "--source", "/nonexistent/clip.mp4"],
            "--source: /nonexistent/clip.mp4 does not exist",
        ),
        (["estimate", "video-faceswap"], "--source: missing"),
        (["estimate", "video-faceswap", "--source", "{clip}", "--enhance", "3"], "enhance must be 0, 1 or 2"),
        (["estimate", "video-faceswap", "--source", "{clip}", "--trim-end", "9"], "trim"),
        (["estimate", "multi-video-faceswap", "--source", "{clip}", "--faces", "4"], "1 to 3 faces"),
        (["estimate", "batch", "/nonexistent.csv"], "MANIFEST: /nonexistent.csv does not exist"),
        (["run", "faceswap", "--source", "a.png", "--face", "b.png", "--on-unknown-outcome", "twice"], "resubmit"),
        (["collect"], "--job"),
    ],
)
def test_errors_are_one_readable_line(clip: Path, args: list[str], says: str) -> None:
    result = runner.invoke(app, [a.replace("{clip}", str(clip)) for a in args])
    assert result.exit_code == 1
    assert says in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_blocks_create_and_register(prefect_api: str, tmp_path: Path) -> None:
    from faceswap_flows.blocks import AIFaceSwapCredentials, MediaStorage, WebhookReceiver

    env = {"AIFACESWAP_API_KEY": "cli-key", "FACESWAP_STORAGE": str(tmp_path / "media")}
    created = runner.invoke(
        app, ["blocks", "create", "--base-url", "http://127.0.0.1:1", "--receiver-url", "http://r"], env=env
    )
    assert created.exit_code == 0, created.output
    assert "FACESWAP_RECEIVER_SECRET=" in created.output
    try:
        assert AIFaceSwapCredentials.load("aifaceswap").api_key.get_secret_value() == "cli-key"
        assert MediaStorage.load("faceswap-media").basepath == str(tmp_path / "media")
        assert WebhookReceiver.load("faceswap-receiver").public_url == "http://r"
    finally:
        from tests.support import restore_stack_blocks

        restore_stack_blocks()
    registered = runner.invoke(app, ["blocks", "register"])
    assert registered.exit_code == 0 and "faceswap-media-storage" in registered.output
    missing = runner.invoke(app, ["blocks", "create"], env={"AIFACESWAP_API_KEY": ""})
    assert missing.exit_code == 1 and "--api-key" in missing.output


def test_blocks_create_still_reads_a_folder_given_as_storage(prefect_api: str, tmp_path: Path) -> None:
    """`--storage` names the block, as in `run`; the folder or s3:// URI it took before is read as --storage-url,
    saying that form is old."""
    from faceswap_flows.blocks import MediaStorage

    folder = str(tmp_path / "media")
    env = {"AIFACESWAP_API_KEY": "cli-key", "FACESWAP_RECEIVER_SECRET": "s"}
    try:
        created = runner.invoke(app, ["blocks", "create", "--storage", folder], env=env)
        assert created.exit_code == 0, created.output
        assert MediaStorage.load("faceswap-media").basepath == folder
        assert f"is the old form (--storage now names the block, as in `run`): write --storage-url {folder}" in (
            created.stderr
        )
    finally:
        from tests.support import restore_stack_blocks

        restore_stack_blocks()
    unnamed = runner.invoke(app, ["blocks", "create", "--storage", "s3-media"], env=env)
    assert unnamed.exit_code == 1 and "--storage-url: give where the block s3-media keeps media" in unnamed.output


def test_a_missing_block_prints_a_command_that_creates_it_under_its_name(
    stack, prefect_api: str, tmp_path: Path
) -> None:
    """`run faceswap --storage s3-media` before that block exists prints the command that creates it; that command
    (its placeholder filled in) saves that block alone, and the same run then stores its result there."""
    from faceswap_flows.devstack.media_server import MediaServer

    name = f"s3-media-{os.getpid()}"
    swap = ["run", "faceswap", "--source", str(stack.files["astronaut"]), "--face", str(stack.files["grace"])]
    refused = faceswap_flows(*swap, "--storage", name, prefect_api=prefect_api)
    assert refused.returncode == 1
    command = refused.stderr.split("create it with `", 1)[1].split("`", 1)[0]
    assert command == f"faceswap-flows blocks create --storage {name} --storage-url FOLDER_OR_S3_URI", command
    folder = tmp_path / "other-media"
    with MediaServer(folder) as media:
        given = [*command.replace("FOLDER_OR_S3_URI", str(folder)).split()[1:], "--public-base-url", media.url]
        created = runner.invoke(app, given, env={"AIFACESWAP_API_KEY": ""})
        assert created.exit_code == 0, created.output
        assert created.output.strip() == f"saved blocks {name}", "it saves that block alone, and needs no API key"
        done = faceswap_flows(*swap, "--storage", name, prefect_api=prefect_api)
    assert done.returncode == 0, done.stderr[-2000:]
    stored = json.loads(done.stdout)["result_key"]
    assert (folder / stored).is_file() and (folder / f"{stored}.provenance.json").is_file()


def faceswap_flows(*args: str, prefect_api: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    script = Path(sys.executable).parent / "faceswap-flows"
    return subprocess.run(
        [str(script), *args],
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_run_faceswap_prints_the_outcome(stack, prefect_api: str) -> None:
    done = faceswap_flows(
        "run",
        "faceswap",
        "--source",
        str(stack.files["astronaut"]),
        "--face",
        str(stack.files["grace"]),
        prefect_api=prefect_api,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"status": "stored"' in done.stdout


def test_run_multi_faceswap_and_extract_faces(stack, prefect_api: str) -> None:
    found = faceswap_flows("run", "extract-faces", "--source", str(stack.files["group"]), prefect_api=prefect_api)
    assert found.returncode == 0, found.stderr[-2000:]
    assert len(json.loads(found.stdout)["faces"]) == 3
    swapped = faceswap_flows(
        "run",
        "multi-faceswap",
        "--source",
        str(stack.files["group"]),
        "--face",
        str(stack.files["grace"]),
        "--index",
        "2",
        prefect_api=prefect_api,
    )
    assert swapped.returncode == 0, swapped.stderr[-2000:]
    assert json.loads(swapped.stdout)["credits"] == 5


def test_run_faceswap_refuses_in_one_line(stack, prefect_api: str) -> None:
    done = faceswap_flows(
        "run", "faceswap", "--source", "/nonexistent.png", "--face", str(stack.files["grace"]), prefect_api=prefect_api
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: InputValidationError: --source"), "the option, not the parameter source_image"
    assert ": '/nonexistent.png'" in last and "source_image" not in last, last
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("args", "ready"),
    [
        (["sandbox", "--api-key", "k", "--credits", "5"], "/health"),
        (["receiver", "--secret", "s", "--inbox", "{tmp}/inbox.sqlite"], "/health"),
        (["media-server", "{tmp}"], "/"),
    ],
)
def test_servers_start_on_the_given_port(tmp_path: Path, prefect_api: str, args: list[str], ready: str) -> None:
    port = free_port()
    script = Path(sys.executable).parent / "faceswap-flows"
    command = [str(script), *(a.replace("{tmp}", str(tmp_path)) for a in args), "--port", str(port)]
    process = subprocess.Popen(
        command,
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}{ready}", timeout=2)
                break
            except httpx.HTTPError:
                assert process.poll() is None, process.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        assert response.status_code in (200, 404)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)


def test_receiver_without_a_secret_refuses_to_start() -> None:
    result = runner.invoke(app, ["receiver"], env={"FACESWAP_RECEIVER_SECRET": ""})
    assert result.exit_code == 1 and "FACESWAP_RECEIVER_SECRET" in result.output


def test_run_batch_refuses_items_per_task_below_one(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("source_image,face_image\na.png,b.png\n")
    result = runner.invoke(app, ["run", "batch", str(manifest), "--items-per-task", "0"], env={"COLUMNS": "200"})
    assert result.exit_code == 1, "refused by the option check, before any flow runs"
    assert "--items-per-task: Input should be greater than or equal to 1 (got 0)" in result.output
