"""Helpers every command uses: one-line failures, the check of optional extras, running a flow here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

import typer


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


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
    from faceswap_flows.aifaceswap.errors import AIFaceSwapError
    from faceswap_flows.flows.exceptions import FaceSwapFlowError

    console_without_tracebacks()
    try:
        outcome = asyncio.run(coroutine)  # type: ignore[arg-type]
    except (FaceSwapFlowError, AIFaceSwapError, ValueError, TimeoutError, RuntimeError) as error:
        from faceswap_flows.devstack.prefect_server import drain_prefect_workers

        drain_prefect_workers()
        fail(f"{type(error).__name__}: {error}")
    typer.echo(outcome.model_dump_json(indent=2))  # type: ignore[attr-defined]
