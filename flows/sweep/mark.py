"""How far store-results runs have swept with nothing left behind, kept in a Prefect Variable.

A run that ends with every job it found stored (or already stored) proves that each sweep job received between
where it started reading and where its window ended is stored: that span is its *swept span*. Spans that touch
are merged into one, the mark. A triggered run whose window lies inside the mark has nothing to do and ends at
once; one whose window starts inside it reads on from the mark's end instead of re-checking what is stored.

Why it is needed: under load the success events reach the trigger evaluation late and out of order, and the
store-results trigger fires many runs for one burst of callbacks (24 for one release of 10,000 in a benchmark);
each used to re-check every job of its 5-minute look-back and sweep until its window's end.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from prefect.variables import Variable
from pydantic import AwareDatetime, BaseModel

logger = logging.getLogger(__name__)


class SweptSpan(BaseModel):
    """Every store-by=sweep job that reached the receiver in [start, end] is stored."""

    start: AwareDatetime
    end: AwareDatetime

    def covers(self, start: datetime, end: datetime) -> bool:
        return self.start <= start and end <= self.end

    def joined(self, other: SweptSpan) -> SweptSpan:
        """Both spans as one when they touch; else the later one (the older claim is dropped, never widened)."""
        if other.start <= self.end and self.start <= other.end:
            return SweptSpan(start=min(self.start, other.start), end=max(self.end, other.end))
        return other if other.end > self.end else self


class SweptMark:
    """The swept span of the store-results runs reading one receiver's inbox, as a Prefect Variable.

    Reading or writing it never fails a run: a mark that cannot be read is no mark (the run sweeps its whole
    look-back), one that cannot be written is only a lost shortcut for the next run.

    Example:
        ```python
        mark = SweptMark("faceswap-receiver")
        span = await mark.read()  # None before the first complete run
        await mark.extend(SweptSpan(start=read_from, end=swept_to))
        ```
    """

    def __init__(self, receiver_block: str | None) -> None:
        scope = re.sub(r"[^a-z0-9_]+", "_", (receiver_block or "stored_events").lower())
        self.variable = f"store_results_swept__{scope}"

    async def read(self) -> SweptSpan | None:
        try:
            value = await Variable.aget(self.variable)
            return SweptSpan.model_validate(value) if value else None
        except Exception as error:
            logger.warning(
                "the swept mark %r could not be read (%r): sweeping the whole look-back", self.variable, error
            )
            return None

    async def extend(self, span: SweptSpan) -> SweptSpan:
        """Join ``span`` with the stored mark and store the result (returned)."""
        current = await self.read()
        joined = current.joined(span) if current else span
        try:
            await Variable.aset(self.variable, joined.model_dump(mode="json"), overwrite=True)
        except Exception as error:
            logger.warning("the swept mark %r could not be written (%r)", self.variable, error)
        return joined
