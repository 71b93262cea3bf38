"""Every command of the command line shows an example of itself in its ``--help``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from faceswap_flows.cli.main import app


def _commands(command: object, path: list[str]) -> Iterator[tuple[list[str], object]]:
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield path, command
        return
    for name, sub in subcommands.items():
        yield from _commands(sub, [*path, name])


COMMANDS = list(_commands(typer.main.get_command(app), []))


def test_every_command_is_found() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"run faceswap", "run batch", "blocks create", "consent revoke", "media-server", "collect"} <= names
    assert len(names) >= 28


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(path) for path, _ in COMMANDS])
def test_help_shows_an_example_of_the_command(path: list[str], command: object) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    example = (command.help or "").partition("Example")[2]  # type: ignore[attr-defined]
    assert f"faceswap-flows {' '.join(path)}" in " ".join(example.split())
