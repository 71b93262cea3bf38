"""Helpers every command uses: one-line failures, the check of optional extras, running a flow here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from faceswap_flows.blocks import MediaStorage

# Prefect's queue services log "Still processing items: N items remaining..." as they drain at exit, under loggers
# named after their classes (prefect/_internal/concurrency/services.py): noise after every command.
PREFECT_QUEUE_LOGGERS = ("APILogWorker", "EventsWorker")


def quiet_prefect_queue_services() -> None:
    """Only errors from Prefect's log and event workers (the CLI's own lines say what happened)."""
    for name in PREFECT_QUEUE_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def fail(message: str, kind: str | None = None) -> NoReturn:
    """``message`` as one line naming the options of the running command (not the Python parameters), after the
    error's ``kind`` when given; exit 1."""
    from faceswap_flows.cli.errors import current_spellings, in_cli_terms

    said = in_cli_terms(message, current_spellings())
    typer.secho(f"error: {kind}: {said}" if kind else f"error: {said}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def unreachable_prefect(error: BaseException) -> str | None:
    """What to do when ``error`` says the Prefect server did not answer (None: it says something else)."""
    import httpx
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if isinstance(error, httpx.TransportError):
        try:
            asked = str(error.request.url)
        except RuntimeError:  # raised before a request was made: httpx does not say where
            asked = url or ""
        if not url or not asked.startswith(url.rstrip("/")):
            return None
    elif not str(error).startswith("Failed to reach API at"):
        return None
    return (
        f"cannot reach the Prefect server at {url}: start it (`make demo` starts the demo's servers; "
        "`prefect server start` starts one), or set PREFECT_API_URL to the URL of yours"
    )


def fail_on(error: BaseException) -> NoReturn:
    """An error a command caught, as one line: what to do when the Prefect server is down, else its kind and
    message (naming the command's options)."""
    from faceswap_flows.devstack.prefect_server import drain_prefect_workers

    hint = unreachable_prefect(error)
    if hint is not None:
        fail(hint)
    drain_prefect_workers()
    fail(str(error), kind=type(error).__name__)


def load_storage_block(name: str, option: str = "storage_block") -> MediaStorage:
    """The MediaStorage block ``name``, or one line naming ``option`` (the Prefect server's hint when it is down)."""
    from faceswap_flows.blocks import MediaStorage

    try:
        return asyncio.run(MediaStorage.aload(name))
    except Exception as error:
        from faceswap_flows.flows.blocks_config import server_asked

        fail(
            unreachable_prefect(error)
            or f"{option}: cannot load the MediaStorage block {name!r} from {server_asked()}: {error}"
        )


def require_extras(command: str, *extras: str) -> None:
    """One line naming the pip install of the missing extras, and exit 1 (before anything starts)."""
    from faceswap_flows.aifaceswap.extras import MissingExtra, require_extras

    try:
        require_extras(f"faceswap-flows {command}", *extras)
    except MissingExtra as error:
        fail(str(error))


class _WithoutTraceback(logging.Formatter):
    """Formats as the wrapped formatter does, leaving out tracebacks (the CLI says what failed in one line)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = saved


def console_without_tracebacks() -> None:
    """Prefect's console log lines, without their tracebacks."""
    from prefect.logging.configuration import setup_logging
    from prefect.logging.handlers import APILogHandler

    if not logging.getLogger().handlers:
        setup_logging()
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            console = isinstance(handler, logging.StreamHandler) and not isinstance(handler, APILogHandler)
            if console and not isinstance(handler.formatter, _WithoutTraceback):
                handler.setFormatter(_WithoutTraceback(handler.formatter))


def run_flow(coroutine: Awaitable[Any]) -> None:
    """Run a flow call, print its result as JSON; a failure is one line and exit 1."""
    import httpx

    from faceswap_flows.aifaceswap.errors import AIFaceSwapError
    from faceswap_flows.flows.exceptions import FaceSwapFlowError

    console_without_tracebacks()
    try:
        outcome = asyncio.run(coroutine)  # type: ignore[arg-type]
    except (FaceSwapFlowError, AIFaceSwapError, ValueError, TimeoutError, RuntimeError, httpx.TransportError) as error:
        fail_on(error)
    typer.echo(outcome.model_dump_json(indent=2))  # type: ignore[attr-defined]


def print_table(columns: list[str], rows: list[dict[str, Any]], *, title: str | None = None) -> None:
    """Rows as a table with a header and aligned columns, leaving out the columns no row fills; long cells wrap
    within their column (nothing is cut)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    shown = [c for c in columns if any(str(row.get(c, "")) not in ("", "None") for row in rows)]
    table = Table(*shown, title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for column in table.columns:
        column.overflow = "fold"
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in shown))
    Console(soft_wrap=False, highlight=False).print(table)
