"""What a deployment's run form in the Prefect UI must show: every field of the flow's parameter schema (each
parameter and, for a parameter that is a pydantic model, each of its fields, walked through ``definitions`` or
``$defs``) with its title and its description; and the comparison with the fields the form shows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

from prefect import flow
from pydantic import BaseModel, Field

OPTIONAL = " (Optional)"


@dataclass(frozen=True)
class FormField:
    """One field of the form: its place (the titles of the groups it is in, then its own) and its description."""

    path: tuple[str, ...]
    description: str

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class ShownField:
    """A field as the UI shows it: its label (without "(Optional)"), the labels of the groups it is in, its
    description's text, and whether both are visible."""

    path: tuple[str, ...]
    description: str
    visible: bool


def plain(text: str) -> str:
    """A description as its rendered text reads: the markdown's code marks dropped, white space collapsed."""
    return re.sub(r"\s+", " ", text.replace("`", "")).strip()


def resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with a ``$ref`` (or a single-item ``allOf``, as pydantic v1 wrote it) replaced by its definition."""
    if "allOf" in spec and len(spec["allOf"]) == 1:
        spec = {**spec["allOf"][0], **{k: v for k, v in spec.items() if k != "allOf"}}
    ref = spec.get("$ref")
    if not ref:
        return spec
    section, _, name = ref.removeprefix("#/").partition("/")
    target = schema.get(section, {}).get(name)
    if target is None:
        raise KeyError(f"{ref}: not in the schema's {section}")
    return {**resolve(schema, target), **{k: v for k, v in spec.items() if k != "$ref"}}


def group_of(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
    """The object with properties a field holds (directly, by reference, or as one choice of an ``anyOf``)."""
    spec = resolve(schema, spec)
    if spec.get("properties"):
        return spec
    for choice in spec.get("anyOf", []):
        found = group_of(schema, choice)
        if found is not None:
            return found
    return None


def form_fields(schema: dict[str, Any]) -> list[FormField]:
    """Every field the form must show, depth first: each parameter, and the fields of each model parameter."""
    found: list[FormField] = []

    def walk(properties: dict[str, Any], path: tuple[str, ...]) -> None:
        for key, raw in properties.items():
            spec = resolve(schema, raw)
            here = (*path, str(spec.get("title") or key))
            found.append(FormField(here, str(raw.get("description") or spec.get("description") or "")))
            group = group_of(schema, raw)
            if group is not None:
                walk(group["properties"], here)

    walk(schema.get("properties", {}), ())
    return found


def group_titles(schema: dict[str, Any]) -> set[str]:
    """The titles of the models a form offers as a choice of an ``anyOf`` (the button that shows their fields)."""
    titles = set()
    for section in ("definitions", "$defs"):
        for name, spec in schema.get(section, {}).items():
            if spec.get("properties"):
                titles.add(str(spec.get("title") or name))
    return titles


def missing(schema: dict[str, Any], shown: list[ShownField]) -> list[str]:
    """What the form fails to show: a field without a description in the schema, a field absent from the form,
    or shown with another description or hidden. Empty when every field is there, described."""
    by_path = {field.path: field for field in shown}
    problems = []
    for field in form_fields(schema):
        expected = plain(field.description)
        seen = by_path.get(field.path)
        if not expected:
            problems.append(f"{field.name}: no description in the parameter schema")
        elif seen is None:
            problems.append(f"{field.name}: not in the form (shown: {sorted('.'.join(p) for p in by_path)})")
        elif not seen.visible:
            problems.append(f"{field.name}: in the form but hidden")
        elif plain(seen.description) != expected:
            problems.append(f"{field.name}: the form says {seen.description!r}, the schema {expected!r}")
    return problems


# In the page: every schema-form property with its label, its description and the labels of the properties it is
# nested in (the UI renders a model parameter as a card of its fields inside the parameter's property).
SHOWN_FIELDS_JS = """optional => {
    const label = property => {
        const text = property.querySelector(':scope > .p-label__header .schema-form-property__label');
        const name = text ? text.innerText.trim() : '';
        return name.endsWith(optional) ? name.slice(0, -optional.length) : name;
    };
    const visible = element => element !== null && element.getClientRects().length > 0;
    return [...document.querySelectorAll('.schema-form-property')].map(property => {
        const path = [];
        for (let at = property; at !== null; at = at.parentElement.closest('.schema-form-property')) {
            path.unshift(label(at));
        }
        const description = property.querySelector(':scope > .p-label__header .schema-form-property__description');
        const name = property.querySelector(':scope > .p-label__header .schema-form-property__label');
        return {
            path,
            description: description ? description.innerText : '',
            visible: visible(name) && visible(description),
        };
    });
}"""


def shown_fields(rows: list[dict[str, Any]]) -> list[ShownField]:
    return [ShownField(tuple(row["path"]), row["description"], bool(row["visible"])) for row in rows]


# A flow whose parameters are pydantic models, as the UI shows them: a group always there, and an optional one whose
# fields show once its model is chosen. It keeps the form check honest for nested fields (the swap flows' own
# parameter groups are checked by the same walk).
class Level(IntEnum):
    """An enhancement level."""

    NONE = 0
    HIGH = 1


class CallbackWait(BaseModel):
    """How long a swap waits."""

    wait: bool = Field(True, description="Wait for the job's callback and store the result in this run.")
    level: Level = Field(Level.NONE, description="Enhancement: 0 none, 1 high.")
    timeout_seconds: float | None = Field(None, description="How long to wait for a `callback`. None: the default.")


class Watermark(BaseModel):
    """A visible mark."""

    text: str = Field("AI", description="The text drawn on the image.")
    corner: Literal["bottom-right", "top-left"] = Field("bottom-right", description="The corner it is drawn in.")


DEFAULT_WAIT = CallbackWait()


@flow(name="described-groups")
def described_groups(source_image: str, waiting: CallbackWait = DEFAULT_WAIT, mark: Watermark | None = None) -> None:
    """Parameters in groups.

    Args:
        source_image: The image to change.
        waiting: How the run waits for its job.
        mark: A visible mark on the result, or none.
    """
