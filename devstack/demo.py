"""The demo: one real face swap on the embedded default (local Prefect server, sandbox, receiver, local storage).

Everything runs on 127.0.0.1; nothing leaves the machine. The photos are public-domain pictures that ship
inside scikit-image (the astronaut Eileen Collins) and matplotlib (Grace Hopper).
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from faceswap_flows.devstack.demo_session import demo_lock, prefect_settings_here, save_lock
from faceswap_flows.devstack.prefect_server import drain_prefect_workers

DEMO_KEY = "demo-key"


@dataclass(frozen=True)
class DemoResult:
    result_path: Path
    ui_url: str
    flow_run_id: str
    task_id: str
    credits: int


def write_demo_photos(folder: Path) -> tuple[Path, Path]:
    """The two photos, written from the packages that ship them."""
    import skimage.data
    from matplotlib import cbook

    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(source)
    face = folder / "grace_hopper.png"
    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        Image.open(io.BytesIO(handle.read())).convert("RGB").save(face)
    return source, face


def write_demo_manifest(source: Path, face: Path) -> Path:
    """A two-line batch manifest over the demo photos, next to them."""
    manifest = source.parent / "manifest.csv"
    manifest.write_text(f"source_image,face_image,id\n{source},{face},astronaut\n{face},{source},grace-hopper\n")
    return manifest


def content_credentials_line(result: Path, ca: Path) -> str:
    """What the demo says of the result's signed C2PA manifest, checked against the development CA."""
    from faceswap_flows.flows.provenance.content_credentials import read_credentials

    with result.open("rb") as handle:
        check = read_credentials(handle, "image/png", ca.read_text())
    return (
        f"Content Credentials: C2PA manifest {check.state.upper()}, signed by {check.signer} (development CA "
        f"{ca}); check it: .venv/bin/faceswap-flows audit {result} --trust-anchors {ca}"
    )


def _prefect_api(state_dir: Path, stack: ExitStack) -> tuple[str, str]:
    """The Prefect API to use: $PREFECT_API_URL if it answers, else a local server started here."""
    from faceswap_flows.devstack.prefect_server import LocalPrefectServer, is_healthy, port_is_free

    api_url = os.environ.get("PREFECT_API_URL", "")
    if api_url and is_healthy(api_url):
        print(f"Using the Prefect server at {api_url}")
        return api_url, api_url.removesuffix("/api")
    print("Starting a local Prefect server (SQLite)...")
    server = stack.enter_context(LocalPrefectServer(state_dir / "prefect", port=4200 if port_is_free(4200) else None))
    return server.api_url, server.ui_url


def next_steps(folder: Path, settings: Path | None, api_url: str, source: Path, face: Path) -> str:
    """What to try from another terminal in ``folder`` while the demo's servers are up: the README's commands."""
    prefix = "" if settings is not None else f"PREFECT_API_URL={api_url} "
    where = (
        f"(this folder's {settings.name} points faceswap-flows and prefect at the demo's server {api_url})"
        if settings is not None
        else f"(set PREFECT_API_URL={api_url} in that terminal)"
    )
    source, face = (path.relative_to(folder) if path.is_relative_to(folder) else path for path in (source, face))
    commands = [
        f"run faceswap --source {face} --face {source}",
        f"plan --source {source.parent} --face {face}",
        f"run batch --source {source.parent} --face {face}",
        "credits",
    ]
    lines = [f"  {prefix}.venv/bin/faceswap-flows {command}" for command in commands]
    return f"\nWhile this demo runs, from another terminal in this folder {where}:\n" + "\n".join(lines)


def run_demo(workdir: Path = Path("."), *, interactive: bool | None = None) -> DemoResult:
    """Start everything, run the faceswap flow once, print where the result is and how to see it in the UI.
    DemoAlreadyRunning when a demo runs from this folder already."""
    state_dir = (workdir / ".faceswap").resolve()
    interactive = sys.stdin.isatty() if interactive is None else interactive
    with ExitStack() as stack:
        lock = stack.enter_context(demo_lock(state_dir))
        api_url, ui_url = _prefect_api(state_dir, stack)
        here = stack.enter_context(prefect_settings_here(workdir.resolve(), api_url))
        # Before Prefect is imported, so that every thread (the receiver's too) talks to this server.
        os.environ["PREFECT_API_URL"] = api_url
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

        from faceswap_flows.devstack.stack import LocalStack
        from faceswap_flows.flows.image import faceswap

        local = stack.enter_context(LocalStack(workdir, api_key=DEMO_KEY, ports=(8700, 8701, 8702)))
        print(f"Sandbox API: {local.sandbox.url}   receiver: {local.receiver.url}   media: {local.media_server.url}")
        lock.update(ui_url=ui_url, api_url=api_url, sandbox=local.sandbox.url, receiver=local.receiver.url)
        save_lock(state_dir, lock)
        source, face = write_demo_photos(local.media_dir / "demo")

        print(f"Swapping the face of {face.name} onto {source.name}...")
        state = asyncio.run(faceswap(str(source), str(face), return_state=True))
        outcome = state.result()
        flow_run_id = str(state.state_details.flow_run_id)
        result_path = Path(outcome.result_uri or "")
        Image.open(result_path).verify()
        ledger = local.sandbox.ledger(DEMO_KEY)
        result = DemoResult(result_path, ui_url, flow_run_id, outcome.task_id, int(ledger["spent"]))
        drain_prefect_workers()
        print()
        print(f"Result image: {result_path}")
        print(f"Sandbox task {outcome.task_id}: {ledger['spent']} credits charged, balance {ledger['balance']}")
        print(f"The run in the Prefect UI: {ui_url}/runs/flow-run/{flow_run_id}")
        print(content_credentials_line(result_path, local.signing_dir / "ca.pem"))
        write_demo_manifest(source, face)
        if interactive:
            print(next_steps(workdir.resolve(), here, api_url, source, face))
            input("\nThe Prefect UI, the sandbox and the receiver stay up until you press Enter. ")
        else:
            print(
                "(Non-interactive: the servers stop now. To browse the run later: "
                f"PREFECT_HOME={state_dir / 'prefect'} .venv/bin/prefect server start)"
            )
    return result
