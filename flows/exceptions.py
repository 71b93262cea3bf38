"""Every error a flow raises: one family under ``FaceSwapFlowError``, each naming the job or task it is about.

``except FaceSwapFlowError`` catches them all; each also keeps the builtin kind it always had (a ``ValueError`` for
refused input, a ``TimeoutError`` for a wait, ``AIFaceSwapError`` for refusals the client's callers expect), so
older ``except`` clauses still work. Prefect pickles a failed state's exception: every member pickles with its
message, ``job_id``, ``task_id`` and other attributes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

from faceswap_flows.aifaceswap.errors import AIFaceSwapError, InputValidationError


def _restore(cls: type[FaceSwapFlowError], args: tuple[Any, ...], state: dict[str, Any]) -> FaceSwapFlowError:
    error = cls.__new__(cls)
    BaseException.__init__(error, *args)
    error.__dict__.update(state)
    return error


_LEADING_FIELD = re.compile(r"^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?)(?:\[\d+\])?: ")


class FaceSwapFlowError(Exception):
    """Base of every flow-level error. Its message starts with the parameter it is about (``blocks.storage: ...``)
    and quotes in backticks the parameters it asks to change (```output.sign=False```): the command line names
    the options instead (``--storage``, ``--no-sign``).

    Attributes:
        job_id: The job (one submission's identity, stable across retries) the error is about, if any.
        task_id: The service's task the error is about, if one was assigned.
        field: The parameter (``face_image``) or group field (``blocks.storage``) to change, as the Prefect UI's
            form names it; by default the name the message starts with (None when it starts with none).
    """

    def __init__(
        self, message: str, *, job_id: str | None = None, task_id: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.task_id = task_id
        leading = _LEADING_FIELD.match(message)
        self.field = field or (leading.group(1) if leading else None)

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore, (type(self), self.args, dict(self.__dict__))


# What a failed job (a callback with success 0, which gives no reason) most likely means, by operation: the service
# swaps faces it finds, in frames it can process at the enhance level asked for.
LIKELY_CAUSES = {
    "faceswap": "no face found in `face_image` or in `source_image`",
    "multi_faceswap": "no face found in one of `face_images`, or a `face_indexes` entry that is not a face of "
    "`source_image`",
    "video_faceswap": "no face found in `face_image` or in the frames of `source_video`, or a video larger than "
    "its `enhance` level takes (1: up to 1080p, 2: up to 2k)",
    "multi_video_faceswap": "a face reference not found in the frames of `source_video`, no face in one of "
    "`face_images`, or a video larger than its `enhance` level takes (1: up to 1080p, 2: up to 2k)",
}
UNKNOWN_CAUSE = "no face found in an input (the usual cause)"


class JobFailed(FaceSwapFlowError, RuntimeError):
    """The service called back with ``success: 0``: the job failed on its side (credits are its business).
    ``JobFailed.reported`` says what is known: the task, what the service said, the likely cause and the commands
    that check it."""

    @classmethod
    def reported(cls, task_id: str, *, job_id: str | None, operation: str | None) -> JobFailed:
        """The failure of ``task_id`` as its callback reported it: ``success: 0`` and no reason (the API documents
        none), so the likely cause of a failed ``operation``."""
        of_job = f" (job {job_id})" if job_id else ""
        cause = LIKELY_CAUSES.get(operation or "", UNKNOWN_CAUSE)
        return cls(
            f"task {task_id}{of_job}: the service reported that the job failed (success 0, no reason given). Likely "
            f"cause: "
            f"{cause}. Fix the input and run it again; `faceswap-flows collect {task_id}` shows what the service "
            "reported, `faceswap-flows credits --by operation` what was charged",
            job_id=job_id,
            task_id=task_id,
        )


class SubmissionOutcomeUnknown(FaceSwapFlowError, RuntimeError):
    """A submission's outcome stayed unknown (a 5xx, an answer that is not the API's, a lost answer, or an earlier
    attempt that recorded no answer) and no callback of its job came within the grace period.

    With the default ``at-most-once`` policy it is not sent again (that could charge twice). If the service did
    accept it, its callback still reaches the receiver under the job's id: collect it then (the message says how).
    """

    def __init__(self, message: str, job_id: str = "", *, task_id: str | None = None) -> None:
        super().__init__(message, job_id=job_id, task_id=task_id)


class CallbackTimeout(FaceSwapFlowError, TimeoutError):
    """No callback arrived in time. The job may still finish: collect it later by its task_id."""

    def __init__(self, task_id: str, timeout: float, *, job_id: str | None = None) -> None:
        super().__init__(
            f"no callback for task_id {task_id} within {timeout:.0f}s; the job may still finish: "
            f"collect it later with `faceswap-flows collect {task_id}` (or the store-result flow)",
            job_id=job_id,
            task_id=task_id,
        )
        self.timeout = timeout


class BudgetExceeded(FaceSwapFlowError, ValueError):
    """The estimate is over the budget; nothing was submitted (so there is no job yet)."""


class ResultNotAvailable(FaceSwapFlowError, RuntimeError):
    """The job has no stored callback event (yet), or it failed."""


class SweepTally(Protocol):
    """What ResultsNotStored reads of the sweep's report (the store-results flow's ``StoreResultsReport``): this
    module imports nothing of the flows, the report is handed in."""

    @property
    def found(self) -> int: ...
    @property
    def stored(self) -> int: ...
    @property
    def already_stored(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def failed_task_ids(self) -> Sequence[str]: ...


class ResultsNotStored(FaceSwapFlowError, RuntimeError):
    """Some results of the sweep could not be stored; ``report`` says which (``task_ids`` lists them)."""

    def __init__(self, report: SweepTally) -> None:
        names = ", ".join(report.failed_task_ids[:20]) + (" ..." if report.failed > 20 else "")
        super().__init__(
            f"{report.failed} of {report.found} result(s) could not be stored (task_ids: {names}); "
            f"{report.stored} stored, {report.already_stored} already stored. Run store-results again, or "
            "`faceswap-flows collect TASK_ID` per job, once the cause is fixed",
            task_id=report.failed_task_ids[0] if report.failed_task_ids else None,
        )
        self.report = report
        self.task_ids = list(report.failed_task_ids)


class BlockNotFound(FaceSwapFlowError, ValueError):
    """A block the flow needs is not saved on this Prefect server; the message names it and how to create it."""

    def __init__(self, message: str, *, block_type: str = "", block_name: str = "", field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.block_type = block_type
        self.block_name = block_name


class VideoError(FaceSwapFlowError, ValueError):
    """A video the flows cannot use; the message names the field and the fix."""


class DownloadRefused(FaceSwapFlowError, AIFaceSwapError, ValueError):
    """A result URL the rules do not allow, or a download over its size or time limit. Not retried."""


class ConsentRefused(FaceSwapFlowError, InputValidationError):
    """A face photo without valid consent, with require_consent on."""


class SigningNotConfigured(FaceSwapFlowError, InputValidationError):
    """Signing is on but its block cannot be loaded: refused before any credit is spent."""


class UnreachableUrl(FaceSwapFlowError, InputValidationError):
    """A URL the real service would have to fetch or call back (an input, the webhook) is on a loopback, private or
    link-local address, or is not http(s): refused before any credit is spent. ``field`` names the block field or
    flow parameter to change."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message, field=field or None)


class NotThisPackagesFlow(FaceSwapFlowError, ValueError):
    """A deployment of the in-process worker's pool whose entrypoint is not a flow of faceswap_flows: refused
    before it runs (the worker runs only the package's own flows, in its own process)."""


class FaceSelectionFailed(FaceSwapFlowError, AIFaceSwapError, ValueError):
    """The faces to replace could not be chosen from what a paid face detection found (no face in the video frame
    or the source, an index beyond the faces found, a reference photo without a face, two references matching one
    face). Unlike ``InputValidationError``, the detection was charged: the message says which call, how many
    credits, what it found and what to do. Not retried (running it again pays again for the same answer).

    Attributes:
        credits: The credits the detection calls were charged.
        call: The paid calls, e.g. ``extract_base64_face of the frame at 1.0 s of clip.mp4``.
    """

    def __init__(self, field: str, *, call: str, credits: int, found: str, advice: str) -> None:
        super().__init__(
            f"{field}: {credits} credits were charged for {call}, which found {found}: {advice}", field=field
        )
        self.credits = credits
        self.call = call


REPORT_MESSAGE_CHARS = 2000


def report_message(error: BaseException | str, limit: int = REPORT_MESSAGE_CHARS) -> str:
    """An error's message as a report keeps it: whole up to ``limit`` characters (messages quote an upstream body
    only as a short excerpt, so the job id, the credits and the command to run all fit); beyond, the middle is
    left out, never the head or the end, where those are."""
    message = str(error)
    if len(message) <= limit:
        return message
    tail = limit // 3
    head = limit - tail
    return f"{message[:head]} [... {len(message) - limit} characters left out ...] {message[-tail:]}"


__all__ = [
    "BlockNotFound",
    "BudgetExceeded",
    "CallbackTimeout",
    "ConsentRefused",
    "DownloadRefused",
    "FaceSelectionFailed",
    "FaceSwapFlowError",
    "JobFailed",
    "NotThisPackagesFlow",
    "ResultNotAvailable",
    "ResultsNotStored",
    "SigningNotConfigured",
    "SubmissionOutcomeUnknown",
    "UnreachableUrl",
    "VideoError",
]
