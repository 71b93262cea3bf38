"""The docstring sections the swap flows share, written once. A flow's docstring names a section by a line holding
only ``{name}``; ``shared_sections`` fills it in, at that line's indentation, before ``@flow`` reads the docstring
(Prefect takes the UI form's parameter descriptions from it, and the command line its option help).

Example:
    >>> @shared_sections
    ... def swap(options, output, blocks):
    ...     '''Swap.
    ...
    ...     Args:
    ...         {image_groups}
    ...     '''
    >>> "blocks: The names of the credentials, storage and receiver blocks." in swap.__doc__
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

_OPTIONS = "options: How the swap runs: wait for the result, callback timeout, budget, unknown-outcome policy, consent."
_BLOCKS = "blocks: The names of the credentials, storage and receiver blocks."
SECTIONS = {
    "image_groups": "\n".join(
        (
            _OPTIONS,
            "output: What is done to the result: synthetic-media label, signed C2PA manifest, visible watermark.",
            _BLOCKS,
        )
    ),
    "video_groups": "\n".join(
        (
            "video_options: Face enhancement (priced per second) and the cut made before submitting.",
            _OPTIONS,
            "output: What is done to the result: synthetic-media label and signed C2PA manifest (no visible watermark:",
            "    drawing one means re-encoding every frame).",
            _BLOCKS,
        )
    ),
    "swap_returns": "\n".join(
        (
            "Returns:",
            "    The job's outcome (task_id, job_id, credits): `stored`, with the result's key, URL and provenance "
            "record, or",
            "    `submitted` when `options.wait` is False.",
        )
    ),
    "refused_before_spending": "\n".join(
        (
            "InputValidationError: An input or parameter is unusable (the message names the field); nothing was spent.",
            "BudgetExceeded: The estimate is over `options.max_credits`; nothing was submitted.",
            "ConsentRefused: `options.require_consent` is on and a face photo is not registered.",
        )
    ),
    "after_submitting": "\n".join(
        (
            "SubmissionOutcomeUnknown: The submission's outcome stayed unknown (see `options.on_unknown_outcome`).",
            "CallbackTimeout: No callback within `options.timeout_seconds` (with `options.wait`).",
            "JobFailed: The service reported that the job failed.",
        )
    ),
}


def shared_sections(function: F) -> F:
    """``function`` with each docstring line that is only ``{name}`` replaced by ``SECTIONS[name]``, indented as
    that line is."""
    lines: list[str] = []
    for line in (function.__doc__ or "").splitlines():
        name = line.strip()
        section = SECTIONS.get(name[1:-1]) if name.startswith("{") and name.endswith("}") else None
        if section is None:
            lines.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        lines += [indent + part for part in section.splitlines()]
    function.__doc__ = "\n".join(lines)
    return function
