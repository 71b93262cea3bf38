"""The check behind the deployment-form test (tests/test_ui.py), without a browser: the walk of a parameter schema
finds every field, flat or in a model, and a missing, hidden or different description fails the check."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from prefect.utilities.callables import parameter_schema

from faceswap_flows.flows import batch_faceswap, faceswap
from tests.ui_form import FormField, ShownField, described_groups, form_fields, group_titles, missing


def schema_of(flow: Any) -> dict[str, Any]:
    return parameter_schema(flow).model_dump_for_openapi()


def as_shown(schema: dict[str, Any]) -> list[ShownField]:
    """The fields of a form that shows everything the schema describes, as the browser reads them."""
    return [ShownField(field.path, field.description.replace("`", "") + "\n", True) for field in form_fields(schema)]


def test_the_walk_finds_the_fields_of_model_parameters() -> None:
    schema = schema_of(described_groups)
    assert [field.path for field in form_fields(schema)] == [
        ("source_image",),
        ("waiting",),
        ("waiting", "Wait"),
        ("waiting", "Level"),
        ("waiting", "Timeout Seconds"),
        ("mark",),
        ("mark", "Text"),
        ("mark", "Corner"),
    ]
    assert FormField(("mark", "Corner"), "The corner it is drawn in.") in form_fields(schema)
    assert group_titles(schema) == {"CallbackWait", "Watermark"}  # the enum Level is a field, not a group


def test_every_parameter_of_the_swap_flows_is_a_described_field() -> None:
    for flow in (faceswap, batch_faceswap):
        schema = schema_of(flow)
        assert {field.path[0] for field in form_fields(schema)} == set(schema["properties"])
        assert missing(schema, as_shown(schema)) == []


@pytest.mark.parametrize(
    ("flow", "where", "name"),
    [
        (faceswap, ("properties", "source_image"), "source_image"),
        (faceswap, ("definitions", "SwapOptions", "properties", "wait"), "options.Wait"),
        (described_groups, ("definitions", "Watermark", "properties", "corner"), "mark.Corner"),
    ],
    ids=["flat", "group", "nested"],
)
def test_a_field_without_description_fails_the_check(flow: Any, where: tuple[str, ...], name: str) -> None:
    schema = schema_of(flow)
    shown = as_shown(schema)
    undescribed = copy.deepcopy(schema)
    spec = undescribed
    for key in where:
        spec = spec[key]
    del spec["description"]
    assert missing(undescribed, shown) == [f"{name}: no description in the parameter schema"]


def test_a_field_the_form_leaves_out_hides_or_words_differently_fails_the_check() -> None:
    schema = schema_of(described_groups)
    shown = as_shown(schema)
    assert missing(schema, shown) == []
    without = [field for field in shown if field.path != ("waiting", "Wait")]
    assert missing(schema, without)[0].startswith("waiting.Wait: not in the form")
    hidden = [ShownField(f.path, f.description, f.path != ("mark", "Text")) for f in shown]
    assert missing(schema, hidden) == ["mark.Text: in the form but hidden"]
    reworded = [ShownField(f.path, "Something else." if f.path == ("source_image",) else f.description, True)
                for f in shown]  # fmt: skip
    assert missing(schema, reworded) == [
        "source_image: the form says 'Something else.', the schema 'The image to change.'"
    ]
