"""Command-line options made from a flow's signature, so every flow parameter has its option and its help is the
parameter's description (the one the Prefect UI shows).

A plain parameter becomes ``--name`` (``face_image`` -> ``--face-image``); a parameter group (``SwapOptions``,
``OutputOptions``, ``VideoOptions``, ``BlockNames``) becomes one option per field (``options.max_credits`` ->
``--max-credits``), gathered back into the group before the flow is called. Booleans get ``--x/--no-x``; a
``dict[str, str]`` parameter is given as repeated ``KEY=VALUE``.

Example:
    ```python
    command = flow_command(faceswap, lambda parameters: print(parameters), help="Run the faceswap flow.")
    typer.Typer().command("faceswap")(command)
    ```
"""

from __future__ import annotations

import enum
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from pydantic import BaseModel, TypeAdapter, ValidationError

from faceswap_flows.cli.common import fail
from faceswap_flows.cli.errors import GROUPS, current_context

# The flag shown first for an input: the same for every swap command (extract-faces' image included). The
# parameter's own spelling (--source-image, --source-video, --face-images, --image) stays accepted after it.
FIRST_FLAGS = {
    "source_image": "--source",
    "source_video": "--source",
    "image": "--source",
    "face_image": "--face",
    "face_images": "--face",
}
CONTEXT = "cli_context"
# Short spellings kept, after the parameter's own.
ALIASES = {
    "source_video": ("--video",),
    "face_indexes": ("--index",),
    "reference_images": ("--reference",),
}


@dataclass(frozen=True)
class CliOption:
    """One option of the command: the flow parameter (or group field) it sets."""

    name: str
    group: str | None
    annotation: Any
    default: Any
    help: str

    @property
    def flag(self) -> str:
        """The parameter's own spelling as a flag (``face_image`` -> ``--face-image``)."""
        return "--" + self.name.replace("_", "-")

    @property
    def flags(self) -> list[str]:
        """Every flag that sets it, the one shown first first: ``--face``, ``--face-image``."""
        spellings = [FIRST_FLAGS.get(self.name), self.flag, *ALIASES.get(self.name, ())]
        return list(dict.fromkeys(flag for flag in spellings if flag))


def option_name(flag: str) -> str:
    """The parameter name an option flag sets (``--max-credits`` -> ``max_credits``)."""
    return flag.removeprefix("--").replace("-", "_")


def flow_options(flow: Any, leave_out: Iterable[str] = ()) -> list[CliOption]:
    """The options of a flow: its plain parameters and the fields of its parameter groups, in signature order."""
    hints = typing.get_type_hints(flow.fn, include_extras=True)
    described = flow.parameters.properties
    left_out = set(leave_out)
    options: list[CliOption] = []
    for name, parameter in inspect.signature(flow.fn).parameters.items():
        group = _group_model(hints[name])
        if group is not None:
            default = parameter.default if parameter.default is not inspect.Parameter.empty else group()
            for field_name, field in group.model_fields.items():
                if field_name not in left_out:
                    value = getattr(default, field_name)
                    options.append(CliOption(field_name, name, field.annotation, value, field.description or ""))
        elif name not in left_out:
            default = ... if parameter.default is inspect.Parameter.empty else parameter.default
            options.append(CliOption(name, None, hints[name], default, described[name].get("description", "")))
    clashes = {option.name for option in options if [o.name for o in options].count(option.name) > 1}
    if clashes:
        raise TypeError(f"{flow.name}: more than one option named {sorted(clashes)}")
    return options


def flow_command(
    flow: Any,
    run: Callable[[dict[str, Any]], None],
    *,
    help: str,
    arguments: tuple[str, ...] = (),
    leave_out: Iterable[str] = (),
    extra: dict[str, Any] | None = None,
    formerly_positional: str | None = None,
) -> Callable[..., None]:
    """A typer command whose options are the flow's parameters; ``run`` gets the flow's keyword arguments (groups
    rebuilt and validated: a wrong value fails naming its option). ``arguments``: parameters given positionally.
    ``extra``: more typer parameters (name -> ``Annotated[type, typer.Option(...)]`` with its default as
    ``(annotation, default)``), passed to ``run`` under their names. ``formerly_positional``: a required parameter,
    now an option, still read from a positional argument (saying that form is old)."""
    options = flow_options(flow, leave_out)
    groups = _group_types(flow)
    names = {option.name for option in options}
    parameters = [_typer_parameter(option, option.name in arguments, names) for option in options]
    extra = dict(extra or {})
    if formerly_positional is not None:
        extra[CONTEXT] = (typer.Context, inspect.Parameter.empty)  # the positional form arrives in its extra args
        at = next(i for i, option in enumerate(options) if option.name == formerly_positional)
        parameters[at] = parameters[at].replace(default=None)
    for name, (annotation, default) in extra.items():
        parameters.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )

    def command(**given: Any) -> None:
        context = current_context()
        if context is not None:
            context.meta[GROUPS] = {o.name: o.group for o in options if o.group is not None}
        chosen: dict[str, Any] = {name: given.pop(name) for name in (extra or {})}
        if formerly_positional is not None:
            extra_args = chosen.pop(CONTEXT).args
            given[formerly_positional] = _old_positional(options, formerly_positional, given, extra_args)
        fields: dict[str, dict[str, Any]] = {}
        for option in options:
            value = _from_cli(option, given[option.name])
            if option.group is None:
                chosen[option.name] = _checked(option, value)
            else:
                fields.setdefault(option.group, {})[option.name] = value
        for group, values in fields.items():
            try:
                chosen[group] = groups[group](**values)
            except ValidationError as error:
                problem = error.errors()[0]
                field = f"{group}.{problem['loc'][0]}: " if problem["loc"] else ""
                fail(f"{field}{problem['msg']} (got {problem.get('input')!r})")
        run(chosen)

    if formerly_positional is not None:
        command.context_settings = {"allow_extra_args": True}  # type: ignore[attr-defined]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__doc__ = help
    command.__name__ = flow.fn.__name__
    return command


def _old_positional(options: list[CliOption], name: str, given: dict[str, Any], extra_args: list[str]) -> Any:
    """The value of an option that was once a positional argument: the option's, else the positional one's (saying
    the form is old), else a one-line error naming the option."""
    option = next(option for option in options if option.name == name)
    if len(extra_args) > 1:
        fail(f"{option.flags[0]}: one value, got {' '.join(extra_args)}")
    positional = extra_args[0] if extra_args else None
    if given[name] is not None:
        if positional is not None:
            fail(f"{option.flags[0]}: given twice ({given[name]!r} and {positional!r}): give it once")
        return given[name]
    if positional is None:
        fail(f"{option.flags[0]}: missing: give it, e.g. {option.flags[0]} team.jpg")
    typer.secho(
        f"note: {positional} given without {option.flags[0]} is the old form: write {option.flags[0]} {positional}",
        fg=typer.colors.YELLOW,
        err=True,
    )
    return positional


def _checked(option: CliOption, value: Any) -> Any:
    """A plain parameter's value checked as the flow will check it (e.g. ``ge=1``), failing in one line that names
    the option."""
    try:
        return TypeAdapter(option.annotation).validate_python(value)
    except ValidationError as error:
        fail(f"{option.name}: {error.errors()[0]['msg']} (got {value!r})")


def _group_model(annotation: Any) -> type[BaseModel] | None:
    kind = typing.get_origin(annotation) is None and annotation
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _group_types(flow: Any) -> dict[str, type[BaseModel]]:
    hints = typing.get_type_hints(flow.fn, include_extras=True)
    return {name: model for name, hint in hints.items() if (model := _group_model(hint)) is not None}


def for_the_command_line(description: str, option_names: set[str]) -> str:
    """A parameter's description as help text: reST literals unquoted, a parameter's name as its option's first
    flag (``face_image`` -> ``--face``)."""

    def literal(match: re.Match[str]) -> str:
        text = match.group(1)
        return FIRST_FLAGS.get(text, "--" + text.replace("_", "-")) if text in option_names else text

    return re.sub(r"``([^`]+)``", literal, description)


def _typer_parameter(option: CliOption, positional: bool, option_names: set[str]) -> inspect.Parameter:
    cli_type, is_mapping = _cli_type(option.annotation)
    help_text = for_the_command_line(option.help, option_names) + (" Give KEY=VALUE (repeat)." if is_mapping else "")
    if positional:
        info: Any = typer.Argument(help=help_text)
    else:
        flags = [f"{option.flag}/--no-{option.flag[2:]}"] if cli_type is bool else option.flags
        info = typer.Option(*flags, help=help_text)
    default = option.default
    if isinstance(default, enum.Enum):
        default = default.value
    if is_mapping and default is not ...:
        default = [f"{key}={value}" for key, value in default.items()] if default else None
    return inspect.Parameter(
        option.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=inspect.Parameter.empty if default is ... else default,
        annotation=Annotated[cli_type, info],
    )


def _cli_type(annotation: Any) -> tuple[Any, bool]:
    """The type typer parses for a parameter, and whether it is a mapping given as KEY=VALUE items."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if isinstance(annotation, type) and issubclass(annotation, enum.IntEnum):
        return int, False
    if typing.get_origin(annotation) is typing.Literal:  # checked by the group's model: one line naming the option
        return str, False
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        inner, is_mapping = _cli_type(members[0]) if len(members) == 1 else (annotation, False)
        return (inner | None if not is_mapping else inner), is_mapping
    if typing.get_origin(annotation) is dict:
        return list[str] | None, True
    return annotation, False


def _from_cli(option: CliOption, value: Any) -> Any:
    """A parsed option's value as the flow takes it: KEY=VALUE items to a dict, an empty repeated option to None."""
    _, is_mapping = _cli_type(option.annotation)
    if is_mapping:
        if not value:
            return None
        wrong = [item for item in value if "=" not in item]
        if wrong:
            fail(f"{option.name}: {', '.join(map(repr, wrong))} is not KEY=VALUE: give e.g. 0=faces/a.jpg")
        return dict(item.split("=", 1) for item in value)
    if isinstance(value, list) and not value:
        return None
    return value
