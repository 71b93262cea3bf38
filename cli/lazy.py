"""Commands made on first use: a command built from a flow's signature imports the flow (Prefect, PyAV, Pillow,
c2pa), which ``faceswap-flows --help`` or ``faceswap-flows receiver`` should not pay for.

Example:
    ```python
    app = typer.Typer(cls=lazy_group({"faceswap": build_faceswap_command}))
    ```
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import typer
from typer.core import TyperGroup

CommandBuilder = Callable[[], Callable[..., None]]


class LazyCommands(MutableMapping[str, Any]):
    """A group's commands: the ones registered as usual, and the lazy ones, built (once) when looked up."""

    def __init__(self, commands: MutableMapping[str, Any], lazy: dict[str, CommandBuilder]) -> None:
        self._built = dict(commands)
        self._lazy = {name: build for name, build in lazy.items() if name not in self._built}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built and name in self._lazy:
            single = typer.Typer(add_completion=False, rich_markup_mode=None)
            callback = self._lazy[name]()
            single.command(name, context_settings=getattr(callback, "context_settings", None))(callback)
            self._built[name] = typer.main.get_command(single)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        self._built.pop(name, None)
        self._lazy.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._lazy
        yield from (name for name in self._built if name not in self._lazy)

    def __len__(self) -> int:
        return len(set(self._built) | set(self._lazy))


def lazy_group(lazy: dict[str, CommandBuilder]) -> type[TyperGroup]:
    """A typer group class whose commands also include ``lazy``: name -> a function making the command's callback."""

    class LazyGroup(TyperGroup):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.commands = LazyCommands(self.commands, lazy)

        def get_command(self, ctx: Any, cmd_name: str) -> Any:
            return self.commands.get(cmd_name)

    return LazyGroup
