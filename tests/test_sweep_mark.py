"""The swept mark's arithmetic: spans that touch join, a gap keeps the later span, never a wider claim."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from faceswap_flows.flows.sweep.mark import SweptMark, SweptSpan

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def span(start: float, end: float) -> SweptSpan:
    return SweptSpan(start=T0 + timedelta(seconds=start), end=T0 + timedelta(seconds=end))


def test_spans_that_touch_or_overlap_join() -> None:
    assert span(0, 10).joined(span(10, 30)) == span(0, 30)
    assert span(5, 30).joined(span(0, 10)) == span(0, 30)
    assert span(0, 30).joined(span(5, 10)) == span(0, 30)


def test_a_gap_keeps_the_later_span_and_claims_nothing_in_between() -> None:
    assert span(0, 10).joined(span(20, 30)) == span(20, 30)
    assert span(20, 30).joined(span(0, 10)) == span(20, 30)
    assert not span(0, 10).joined(span(20, 30)).covers(T0 + timedelta(seconds=5), T0 + timedelta(seconds=25))


def test_covers_needs_the_whole_window() -> None:
    assert span(0, 30).covers(T0, T0 + timedelta(seconds=30))
    assert not span(0, 30).covers(T0 - timedelta(seconds=1), T0 + timedelta(seconds=10))
    assert not span(0, 30).covers(T0, T0 + timedelta(seconds=31))


def test_each_receiver_has_its_own_mark_named_as_prefect_allows() -> None:
    names = {SweptMark(name).variable for name in ("faceswap-receiver", "eu-receiver", None)}
    assert len(names) == 3
    assert all(name.replace("_", "").isalnum() and name.islower() for name in names)
