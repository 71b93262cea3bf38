"""The servers the command line starts: ``demo``, ``sandbox``, ``receiver`` and ``media-server``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from faceswap_flows.cli.common import fail, require_extras


def demo(
    workdir: Annotated[Path, typer.Option(help="Where .faceswap/ and faceswap-media/ are made.")] = Path("."),
) -> None:
    """Run one real swap end to end on the embedded default (sandbox, receiver, local Prefect, local storage).

    Example: faceswap-flows demo
    """
    require_extras("demo", "sandbox", "photos")
    from faceswap_flows.devstack.demo import run_demo

    try:
        run_demo(workdir)
    except Exception as error:  # one readable line, not a traceback
        fail(f"{type(error).__name__}: {error}")


def sandbox(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8700,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    api_key: Annotated[list[str], typer.Option(help="Accepted API key (repeatable).")] = ["sandbox-key"],  # noqa: B006
    credits: Annotated[int, typer.Option(help="Starting balance of each key.")] = 1000,
    processing_delay: Annotated[float, typer.Option(help="Seconds each job waits before working.")] = 0.0,
    concurrency: Annotated[int, typer.Option(help="Jobs processed at once.")] = 2,
    result_ttl: Annotated[float, typer.Option(help="Seconds result URLs stay valid.")] = 3600.0,
    public_url: Annotated[str | None, typer.Option(help="Base URL of result links, if not host:port.")] = None,
    fail_rate: Annotated[float, typer.Option(help="Fault: share of jobs that fail.")] = 0.0,
    drop_webhook_rate: Annotated[float, typer.Option(help="Fault: share of callbacks never sent.")] = 0.0,
    duplicate_webhook_rate: Annotated[float, typer.Option(help="Fault: share of callbacks sent twice.")] = 0.0,
    delay_webhook_seconds: Annotated[float, typer.Option(help="Fault: delay every callback this long.")] = 0.0,
    server_error_rate: Annotated[float, typer.Option(help="Fault: share of calls answered 500.")] = 0.0,
    rate_limit_rate: Annotated[float, typer.Option(help="Fault: share of calls answered 429.")] = 0.0,
    error_after_accept_rate: Annotated[
        float, typer.Option(help="Fault: share of paid calls answered 500 after being accepted and charged.")
    ] = 0.0,
    bad_gateway_after_accept_rate: Annotated[
        float, typer.Option(help="Fault: share of paid calls answered 502 with an HTML page after being accepted.")
    ] = 0.0,
    close_after_accept_rate: Annotated[
        float, typer.Option(help="Fault: share of paid calls whose connection is closed after being accepted.")
    ] = 0.0,
    result_cache: Annotated[
        bool, typer.Option(help="Identical image swaps (same input bytes, same options) reuse the first result.")
    ] = False,
    hold_callbacks: Annotated[bool, typer.Option(help="Hold callbacks until released (PUT /sandbox/callbacks).")] = (
        False
    ),
    release_concurrency: Annotated[int, typer.Option(help="Held callbacks delivered at once after a release.")] = 64,
) -> None:
    """Serve the offline sandbox of the aifaceswap API.

    Example: faceswap-flows sandbox --port 8700 --api-key KEY --credits 1000
    """
    require_extras("sandbox", "sandbox")
    from faceswap_flows.aifaceswap.sandbox import FaultConfig, SandboxConfig, serve_forever

    faults = FaultConfig(
        fail_rate=fail_rate,
        drop_webhook_rate=drop_webhook_rate,
        duplicate_webhook_rate=duplicate_webhook_rate,
        delay_webhook_rate=1.0 if delay_webhook_seconds else 0.0,
        delay_webhook_seconds=delay_webhook_seconds,
        server_error_rate=server_error_rate,
        rate_limit_rate=rate_limit_rate,
        error_after_accept_rate=error_after_accept_rate,
        bad_gateway_after_accept_rate=bad_gateway_after_accept_rate,
        close_after_accept_rate=close_after_accept_rate,
    )
    config = SandboxConfig(
        keys=dict.fromkeys(api_key, credits),
        processing_delay=processing_delay,
        concurrency=concurrency,
        result_ttl_seconds=result_ttl,
        public_url=public_url,
        faults=faults,
        result_cache=result_cache,
        hold_callbacks=hold_callbacks,
        release_concurrency=release_concurrency,
    )
    serve_forever(config, host=host, port=port)


def receiver(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8701,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    inbox: Annotated[Path, typer.Option(help="The durable inbox (SQLite file).")] = Path(".faceswap/inbox.sqlite"),
    secret: Annotated[str | None, typer.Option(help="Job-token secret (default: $FACESWAP_RECEIVER_SECRET).")] = None,
    access_log: Annotated[
        bool, typer.Option(help="Log every HTTP request (the inbox already keeps every callback).")
    ] = False,
) -> None:
    """Serve the webhook receiver: callbacks become Prefect events (needs PREFECT_API_URL).

    Example: FACESWAP_RECEIVER_SECRET=... faceswap-flows receiver --port 8701
    """
    import uvicorn

    from faceswap_flows.receiver import create_app

    secret = secret or os.environ.get("FACESWAP_RECEIVER_SECRET")
    if not secret:
        fail("the receiver needs the job-token secret: pass --secret or set FACESWAP_RECEIVER_SECRET")
    uvicorn.run(create_app(inbox, secret or ""), host=host, port=port, log_level="info", access_log=access_log)


def media_server(
    folder: Annotated[Path, typer.Argument(help="The MediaStorage folder to publish.")] = Path("faceswap-media"),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8702,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Publish a local storage folder over HTTP so the sandbox can fetch inputs (set public_base_url to it).

    Example: faceswap-flows media-server faceswap-media --port 8702
    """
    import uvicorn

    from faceswap_flows.devstack.media_server import media_app

    uvicorn.run(media_app(folder), host=host, port=port, log_level="info")
