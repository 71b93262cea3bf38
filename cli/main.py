"""The command line: ``faceswap-flows demo | sandbox | receiver | media-server | run | estimate | blocks | init |
deploy | serve | collect | credits | doctor``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from faceswap_flows.cli.common import fail, quiet_prefect_queue_services, run_flow, unreachable_prefect
from faceswap_flows.cli.consent import consent_app
from faceswap_flows.cli.credits import credits
from faceswap_flows.cli.doctor import doctor
from faceswap_flows.cli.lazy import lazy_group
from faceswap_flows.cli.run import plan_command, run_app
from faceswap_flows.cli.servers import demo, media_server, receiver, sandbox
from faceswap_flows.cli.setup import blocks_app, deploy, estimate_app, signing_app
from faceswap_flows.cli.setup import init as init_project

app = typer.Typer(
    rich_markup_mode=None,
    cls=lazy_group({"plan": plan_command}),
    help="Face-swap pipelines on Prefect 3 over the aifaceswap API, with an offline sandbox of the API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(run_app, name="run")
app.add_typer(estimate_app, name="estimate")
app.add_typer(blocks_app, name="blocks")
app.add_typer(signing_app, name="signing")
app.add_typer(consent_app, name="consent")
app.command()(deploy)
app.command()(credits)
app.command()(doctor)
app.command("init")(init_project)
app.command()(demo)
app.command()(sandbox)
app.command()(receiver)
app.command("media-server")(media_server)


@app.command()
def serve(
    names: Annotated[list[str] | None, typer.Argument(help="Deployments of prefect.yaml to serve.")] = None,
) -> None:
    """Serve deployments of prefect.yaml from this process, triggers included (no work pool needed).

    Example: faceswap-flows serve store-result faceswap
    """
    from faceswap_flows.flows.deployments import serve_deployments

    serve_deployments(names or ["store-result"])


@app.command()
def collect(
    task_id: Annotated[
        str | None,
        typer.Argument(help="The task_id whose result to store (an unparsed callback naming none: its job id)."),
    ] = None,
    job: Annotated[
        str | None, typer.Option(help="Instead of a task_id: the job id a SubmissionOutcomeUnknown named.")
    ] = None,
) -> None:
    """Store the result of a job whose wait timed out, or whose submission's outcome was unknown (by --job), from
    its callback event or the result URL found in its unparsed callback.

    Example: faceswap-flows collect --job 0123abcd...
    """
    from faceswap_flows.flows.collect import store_result

    if bool(task_id) == bool(job):
        fail("collect: give a TASK_ID or --job JOB_ID (one of them)")
    run_flow(store_result(task_id or "", job_id=job))


def main() -> None:
    """The console script: a module of a missing extra, wherever it is imported, is one line naming the extra."""
    from faceswap_flows.aifaceswap.extras import MissingExtra

    # A command run without PREFECT_API_URL talks to a temporary server; its telemetry would log an error offline.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    quiet_prefect_queue_services()
    try:
        app(sys.argv[1:])
    except MissingExtra as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except Exception as error:
        hint = unreachable_prefect(error)
        if hint is None:
            raise
        typer.secho(f"error: {hint}", fg=typer.colors.RED, err=True)
        sys.exit(1)


@app.command()
def audit(
    target: Annotated[str, typer.Argument(help="A stored output: a local path, or a key or URI of the storage.")],
    storage_block: Annotated[
        str, typer.Option("--storage", "--storage-block", help="Name of the MediaStorage block holding the key.")
    ] = "faceswap-media",
    trust_anchors: Annotated[
        Path | None, typer.Option(help="PEM file of the CA(s) whose signers you trust (default: the signing block's).")
    ] = None,
    signing_block: Annotated[str, typer.Option(help="ContentSigningKey block whose trust anchors to use.")] = (
        "faceswap-signing"
    ),
    allow_untrusted: Annotated[bool, typer.Option(help="Pass a valid signature whose signer is not trusted.")] = False,
    full_record: Annotated[bool, typer.Option("--json", help="Also print the whole provenance record (JSON).")] = False,
) -> None:
    """Check a stored output against its provenance record (SHA-256) and its signed C2PA manifest (signature,
    content hash, signer against the trust anchors). The first line is the verdict: TRUSTED, VALID, TAMPERED,
    EXPIRED, UNTRUSTED, NO RECORD or NOT FOUND; exit 1 unless TRUSTED or VALID.

    Example: faceswap-flows audit results/faceswap/0123456789abcdef.png --trust-anchors .faceswap/signing/ca.pem
    """
    from faceswap_flows.flows.provenance.audit import audit_report

    if trust_anchors is not None and not trust_anchors.is_file():
        fail(f"trust_anchors: {trust_anchors} does not exist: give the PEM file of your CA")
    report, ok = audit_report(target, storage_block, trust_anchors, signing_block, allow_untrusted, full_record)
    typer.echo(report)
    if not ok:
        raise typer.Exit(1)
