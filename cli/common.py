"""Helpers every command uses: one-line failures and the check of optional extras."""

from __future__ import annotations

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
