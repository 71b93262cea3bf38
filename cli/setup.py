"""Command-line set-up: estimate credits, create and register the blocks, write and deploy a prefect.yaml."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from faceswap_flows.aifaceswap.pricing import estimate_credits
from faceswap_flows.cli.common import fail
from faceswap_flows.flows.defaults import DEFAULT_CREDENTIALS, DEFAULT_RECEIVER, DEFAULT_STORAGE

estimate_app = typer.Typer(
    help="Credits a flow would spend, before spending any.", no_args_is_help=True, rich_markup_mode=None
)
blocks_app = typer.Typer(help="Register and create the project's blocks.", no_args_is_help=True, rich_markup_mode=None)
signing_app = typer.Typer(
    help="The Content Credentials (C2PA) signing key and certificate.", no_args_is_help=True, rich_markup_mode=None
)


def _say(credits: int, detail: str) -> None:
    typer.echo(f"{credits} credits ({detail})")


# The video: `--source` as every swap command names it; the positional form of before is still read.
SourceVideo = Annotated[
    Path | None, typer.Option("--source", "--video", help="The video (its duration is read from the file).")
]
OldPositionalVideo = Annotated[Path | None, typer.Argument(hidden=True, show_default=False)]


def _video_seconds(
    video: Path | None, old_video: Path | None, trim_start: float | None, trim_end: float | None
) -> float:
    from faceswap_flows.flows.media.video import VideoError, video_facts

    if video is None and old_video is not None:
        typer.secho(f"note: {old_video} given without --source is the old form: write --source {old_video}", err=True)
        video = old_video
    if video is None:
        fail("--source: missing: give the video, e.g. --source clip.mp4")
    try:
        duration = video_facts(video).duration
    except VideoError as error:
        fail(str(error))
    start, end = trim_start or 0.0, trim_end if trim_end is not None else duration
    if not 0 <= start < end <= duration + 1e-3:
        fail(f"trim: [{start}, {end}] s must lie inside the video's {duration:.2f} s")
    return end - start


@estimate_app.command("faceswap")
def estimate_faceswap() -> None:
    """One single-face swap. Example: faceswap-flows estimate faceswap"""
    _say(estimate_credits("faceswap"), "faceswap")


@estimate_app.command("extract-faces")
def estimate_extract() -> None:
    """Finding the faces of one image. Example: faceswap-flows estimate extract-faces"""
    _say(estimate_credits("extract_face"), "extract_face")


@estimate_app.command("multi-faceswap")
def estimate_multi(
    references: Annotated[int, typer.Option(help="Reference photos, when faces are chosen by reference.")] = 0,
) -> None:
    """Several faces of one image. Example: faceswap-flows estimate multi-faceswap --references 2"""
    extracts = 1 + references if references else 0
    total = extracts * estimate_credits("extract_face") + estimate_credits("multi_faceswap")
    _say(total, f"multi_faceswap + {extracts} extract_face")


@estimate_app.command("video-faceswap")
def estimate_video(
    old_video: OldPositionalVideo = None,
    source_video: SourceVideo = None,
    enhance: Annotated[int, typer.Option(help="0 none, 1 up to 1080p, 2 up to 2k.")] = 0,
    trim_start: Annotated[float | None, typer.Option(help="Cut from (seconds).")] = None,
    trim_end: Annotated[float | None, typer.Option(help="Cut to (seconds).")] = None,
) -> None:
    """One face through a video. Example: faceswap-flows estimate video-faceswap --source clip.mp4 --enhance 1"""
    seconds = _video_seconds(source_video, old_video, trim_start, trim_end)
    try:
        _say(
            estimate_credits("video_faceswap", duration=seconds, enhance=enhance), f"{seconds:.2f} s, enhance {enhance}"
        )
    except ValueError as error:
        fail(str(error))


@estimate_app.command("multi-video-faceswap")
def estimate_multi_video(
    old_video: OldPositionalVideo = None,
    source_video: SourceVideo = None,
    faces: Annotated[int, typer.Option(help="Faces to replace (1 to 3).")] = 1,
    enhance: Annotated[int, typer.Option(help="0 none, 1 up to 1080p, 2 up to 2k.")] = 0,
    trim_start: Annotated[float | None, typer.Option(help="Cut from (seconds).")] = None,
    trim_end: Annotated[float | None, typer.Option(help="Cut to (seconds).")] = None,
) -> None:
    """Up to three faces through a video (plus the frame's face extraction).

    Example: faceswap-flows estimate multi-video-faceswap --source clip.mp4 --faces 2 --enhance 1
    """
    seconds = _video_seconds(source_video, old_video, trim_start, trim_end)
    try:
        swap = estimate_credits("multi_video_faceswap", duration=seconds, enhance=enhance, face_count=faces)
    except ValueError as error:
        fail(str(error))
    _say(swap + estimate_credits("extract_base64_face"), f"{seconds:.2f} s, {faces} face(s), enhance {enhance}")


@estimate_app.command("batch")
def estimate_batch(manifest: Annotated[Path, typer.Argument(help="CSV or JSONL manifest.")]) -> None:
    """Every line of a batch manifest. Example: faceswap-flows estimate batch manifest.csv"""
    if not manifest.is_file():
        fail(f"manifest: {manifest} does not exist")
    text = manifest.read_text()
    if manifest.suffix in (".jsonl", ".ndjson"):
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        items = list(csv.DictReader(io.StringIO(text)))
    _say(len(items) * estimate_credits("faceswap"), f"{len(items)} faceswap items")


@blocks_app.command("register")
def register_blocks() -> None:
    """Register the block types with the Prefect API (what `prefect block register -m faceswap_flows.blocks` does).

    Example: PREFECT_API_URL=http://127.0.0.1:4200/api faceswap-flows blocks register
    """
    from faceswap_flows.blocks import AIFaceSwapCredentials, ContentSigningKey, MediaStorage, WebhookReceiver

    for block in (AIFaceSwapCredentials, MediaStorage, WebhookReceiver, ContentSigningKey):
        block.register_type_and_schema()
        typer.echo(f"registered {block.get_block_type_slug()}")


BLOCK_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")  # what Prefect accepts as a block's name


def _storage_choice(storage: str | None, storage_url: str | None) -> tuple[str | None, str | None]:
    """The storage block's name and URL: ``--storage`` is a block name, as in ``run``; a folder or s3:// URI given
    there (what ``--storage`` meant before) is read as ``--storage-url``, saying so."""
    if storage is None or BLOCK_NAME.fullmatch(storage):
        return storage, storage_url
    if storage_url is not None:
        fail(f"--storage: {storage!r} is not a block name (lowercase letters, digits, dashes); give the block's name")
    typer.secho(
        f"note: --storage {storage} is the old form (--storage now names the block, as in `run`): write "
        f"--storage-url {storage}",
        fg=typer.colors.YELLOW,
        err=True,
    )
    return None, storage


@blocks_app.command("create")
def create_blocks(
    api_key: Annotated[str | None, typer.Option(envvar="AIFACESWAP_API_KEY", help="The API key.")] = None,
    base_url: Annotated[str, typer.Option(envvar="AIFACESWAP_BASE_URL", help="The API.")] = "https://aifaceswap.io",
    credentials: Annotated[
        str | None,
        typer.Option(help=f"Name of the AIFaceSwapCredentials block to save [default: {DEFAULT_CREDENTIALS}]."),
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help=f"Name of the MediaStorage block to save [default: {DEFAULT_STORAGE}].")
    ] = None,
    storage_url: Annotated[
        str | None,
        typer.Option(
            envvar="FACESWAP_STORAGE",
            help="Where the storage block keeps media: a folder or s3://bucket/prefix (needed with --storage; "
            "without: the folder faceswap-media).",
        ),
    ] = None,
    endpoint_url: Annotated[str | None, typer.Option(envvar="AWS_ENDPOINT_URL", help="S3-compatible endpoint.")] = None,
    public_base_url: Annotated[
        str | None, typer.Option(envvar="FACESWAP_PUBLIC_BASE_URL", help="Where storage is published.")
    ] = None,
    receiver: Annotated[
        str | None, typer.Option(help=f"Name of the WebhookReceiver block to save [default: {DEFAULT_RECEIVER}].")
    ] = None,
    receiver_url: Annotated[str, typer.Option(envvar="FACESWAP_RECEIVER_URL", help="The receiver's public URL.")] = (
        "http://127.0.0.1:8701"
    ),
    secret: Annotated[str | None, typer.Option(envvar="FACESWAP_RECEIVER_SECRET", help="Job-token secret.")] = None,
) -> None:
    """Create (or overwrite) the flows' three blocks, from flags or environment: under the default names, or only
    the blocks named with --credentials, --storage or --receiver (the names `run` takes).

    Example: AIFACESWAP_API_KEY=... faceswap-flows blocks create --storage-url s3://media/faceswap

    Example: faceswap-flows blocks create --storage s3-media --storage-url s3://media/faceswap
    """
    storage, storage_url = _storage_choice(storage, storage_url)
    named = {"credentials": credentials, "storage": storage, "receiver": receiver}
    every = not any(named.values())
    saved = []
    if every or credentials:
        if not api_key:
            fail("--api-key: pass --api-key or set AIFACESWAP_API_KEY")
        saved.append(_save_credentials(credentials or DEFAULT_CREDENTIALS, api_key or "", base_url))
    if storage and not storage_url:
        fail(f"--storage-url: give where the block {storage} keeps media (a folder or s3://bucket/prefix)")
    if every or storage:
        url = storage_url or "faceswap-media"
        saved.append(_save_storage(storage or DEFAULT_STORAGE, url, endpoint_url, public_base_url))
    if every or receiver:
        chosen_secret = secret or secrets.token_urlsafe(32)
        saved.append(_save_receiver(receiver or DEFAULT_RECEIVER, receiver_url, chosen_secret))
    typer.echo(f"saved blocks {', '.join(saved)}")
    if (every or receiver) and not secret:
        typer.echo(f"start the receiver with FACESWAP_RECEIVER_SECRET={chosen_secret}")


def _save_credentials(name: str, api_key: str, base_url: str) -> str:
    from faceswap_flows.blocks import AIFaceSwapCredentials

    AIFaceSwapCredentials(api_key=api_key, base_url=base_url).save(name, overwrite=True)
    return name


def _save_storage(name: str, url: str, endpoint_url: str | None, public_base_url: str | None) -> str:
    from faceswap_flows.blocks import MediaStorage

    MediaStorage(
        basepath=url,
        endpoint_url=endpoint_url,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        public_base_url=public_base_url,
    ).save(name, overwrite=True)
    return name


def _save_receiver(name: str, url: str, secret: str) -> str:
    from faceswap_flows.blocks import WebhookReceiver

    WebhookReceiver(public_url=url, signing_secret=secret).save(name, overwrite=True)
    return name


def deploy(
    names: Annotated[list[str] | None, typer.Argument(help="Deployments to deploy (default: all).")] = None,
    pool: Annotated[str, typer.Option(help="Process work pool, created if missing.")] = "faceswap-pool",
    store_pool: Annotated[
        str, typer.Option(help="Work pool of the store deployments (in-process worker), created if missing.")
    ] = "faceswap-store",
    project: Annotated[Path, typer.Option(help="The folder of prefect.yaml (see faceswap-flows init).")] = Path("."),
) -> None:
    """Create the work pools if needed and run `prefect deploy` on the project's prefect.yaml.

    Example: faceswap-flows init && faceswap-flows deploy
    (then: prefect worker start --pool faceswap-pool, and prefect worker start --pool faceswap-store)
    """
    from faceswap_flows.flows.in_process_worker import WORKER_TYPE

    if not (project / "prefect.yaml").is_file():
        fail(f"no prefect.yaml in {project.resolve()}: run `faceswap-flows init` there first")
    prefect = [sys.executable, "-m", "prefect", "--no-prompt"]
    for name, kind in ((pool, "process"), (store_pool, WORKER_TYPE)):
        exists = subprocess.run([*prefect, "work-pool", "inspect", name], capture_output=True, cwd=project)
        if exists.returncode != 0:
            subprocess.run([*prefect, "work-pool", "create", name, "--type", kind], check=True, cwd=project)
    targets = [arg for name in names for arg in ("--name", name)] if names else ["--all"]
    done = subprocess.run([*prefect, "deploy", *targets], cwd=project)
    if done.returncode != 0:
        fail("prefect deploy failed (see above)")


@signing_app.command("dev-cert")
def signing_dev_cert(
    folder: Annotated[Path, typer.Option(help="Where the PEM files are written.")] = Path(".faceswap/signing"),
    block: Annotated[str, typer.Option(help="The ContentSigningKey block to save.")] = "faceswap-signing",
    organisation: Annotated[str, typer.Option(help="Organisation named in the certificates.")] = (
        "faceswap-flows development"
    ),
    days: Annotated[int, typer.Option(min=1, help="Days the signing certificate is valid.")] = 365,
) -> None:
    """Create a local certificate authority and a signing certificate it issued (C2PA refuses self-signed
    signers), write them as PEM files and save the signing block. For development: verifiers trust it only
    when given the CA (`faceswap-flows audit --trust-anchors FOLDER/ca.pem`).

    Example: faceswap-flows signing dev-cert
    """
    from faceswap_flows.devstack.signing_certs import save_dev_signing

    paths = save_dev_signing(folder, block, organisation=organisation, days=days)
    typer.echo(f"signing key {paths['key']} (owner-only), chain {paths['chain']}, CA {paths['ca']}")
    typer.echo(f"saved block {block}; audit with: faceswap-flows audit RESULT --trust-anchors {paths['ca']}")


def init(
    project: Annotated[Path, typer.Argument(help="Your project's folder (made if missing).")] = Path("."),
    pool: Annotated[str, typer.Option(help="The work pool of every deployment but the store ones.")] = "faceswap-pool",
    store_pool: Annotated[
        str, typer.Option(help="The work pool of the store deployments (faceswap-in-process type).")
    ] = "faceswap-store",
    requirement: Annotated[
        str | None, typer.Option(help="What workers pip install (default: faceswap-flows==this version).")
    ] = None,
    find_links: Annotated[
        list[str] | None, typer.Option(help="A wheel folder or page pip also looks in (repeatable).")
    ] = None,
    git_repository: Annotated[
        str | None, typer.Option(help="Workers clone this repository (your project) before installing.")
    ] = None,
    git_branch: Annotated[str | None, typer.Option(help="The branch to clone.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing prefect.yaml.")] = False,
    nightly_source: Annotated[
        str | None, typer.Option(help="The storage prefix the nightly batch swaps (its schedule is active only then).")
    ] = None,
    nightly_face: Annotated[str | None, typer.Option(help="The face photo the nightly batch puts in.")] = None,
) -> None:
    """Write prefect.yaml (the flows' deployments, run from the installed package) and requirements.txt, with a
    pull step that installs them on each worker. The nightly batch is scheduled only once --nightly-source and
    --nightly-face name your prefix and face.

    Example: faceswap-flows init my-project --git-repository https://github.com/me/my-project.git
    """
    from faceswap_flows.cli.project_init import write_project

    try:
        done = write_project(
            project,
            pool=pool,
            store_pool=store_pool,
            requirement=requirement,
            find_links=find_links,
            git_repository=git_repository,
            git_branch=git_branch,
            force=force,
            nightly_source=nightly_source,
            nightly_face=nightly_face,
        )
    except (FileExistsError, OSError, ValueError) as error:
        fail(str(error))
    for line in done:
        typer.echo(line)
