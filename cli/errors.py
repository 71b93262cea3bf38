"""Errors in the command line's terms. The flows name what a message is about as Python does: a parameter
(``source_image: ...``), a group's field (``blocks.storage``), a value to set (``output.sign=False``); on the
command line each becomes the option that sets it (``--source-image``, ``--storage``, ``--no-sign``), spelled as
the running command declares it, so a renamed option is named by its new spelling.

What is translated: the message's leading ``name:`` (or ``name[i]:``), and every parameter the message quotes in
backticks: ``name``, ``group.name``, ``name=True``, ``name=False``. Other words stay: a manifest column is also
called ``source_image``, and it is not an option.

Example:
    ```python
    in_cli_terms("blocks.storage: no block named 'x': set `blocks.storage`", {"blocks.storage": "--storage"})
    # "--storage: no block named 'x': set `--storage`"
    ```
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

GROUPS = "faceswap_flows.groups"
"""Key of the click context's ``meta``: field name -> the parameter group it belongs to, set by a command made
from a flow's signature (``cli.flow_options``)."""

_NAME = r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?"
_LEADING = re.compile(rf"^({_NAME})((?:\[\d+\])?): ")
_QUOTED = re.compile(rf"`({_NAME})(?:=(True|False))?`")


def spellings(command: Any, groups: Mapping[str, str] | None = None) -> dict[str, str]:
    """How the command spells each of its parameters, by every name Python gives it: ``name``, ``group.name``,
    ``name=True`` and ``name=False`` (a flag's on and off spellings); an argument as its metavar (``MANIFEST``)."""
    found: dict[str, str] = {}
    for parameter in command.params:
        if not parameter.name or parameter.name == "help":
            continue
        names = [parameter.name]
        if groups and parameter.name in groups:
            names.append(f"{groups[parameter.name]}.{parameter.name}")
        for name in names:
            found.update(_spelled(parameter, name))
    return found


def _spelled(parameter: Any, name: str) -> dict[str, str]:
    if parameter.param_type_name != "option":
        return {name: (parameter.metavar or parameter.name).upper()}
    flag = next((opt for opt in parameter.opts if opt.startswith("--")), parameter.opts[0])
    off = next((opt for opt in parameter.secondary_opts if opt.startswith("--")), None)
    if off is None:
        return {name: flag, f"{name}=True": flag}
    return {name: f"{flag}/{off}", f"{name}=True": flag, f"{name}=False": off}


def in_cli_terms(message: str, names: Mapping[str, str]) -> str:
    """``message`` with its leading parameter and its quoted parameters named as the command line spells them."""

    def quoted(match: re.Match[str]) -> str:
        key = match.group(1) + (f"={match.group(2)}" if match.group(2) else "")
        return f"`{names[key]}`" if key in names else match.group(0)

    leading = _LEADING.match(message)
    if leading and leading.group(1) in names:
        message = f"{names[leading.group(1)]}{leading.group(2)}: {message[leading.end() :]}"
    return _QUOTED.sub(quoted, message)


def current_context() -> Any:
    """The click context of the command running now: typer's own copy of click keeps it (None outside a command,
    or under a typer without that copy: messages then keep the Python names)."""
    try:
        from typer._click.globals import get_current_context
    except ImportError:
        return None
    return get_current_context(silent=True)


def current_spellings() -> dict[str, str]:
    """The spellings of the command running now (none outside a command)."""
    context = current_context()
    if context is None:
        return {}
    return spellings(context.command, context.meta.get(GROUPS))
