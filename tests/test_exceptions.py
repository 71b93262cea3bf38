"""One error family: every flow-level error derives from FaceSwapFlowError, names its job or task, keeps its
builtin kind, and survives pickling (Prefect persists a failed state's exception)."""

from __future__ import annotations

import ast
import importlib
import pickle
from pathlib import Path

import pytest

from faceswap_flows.aifaceswap.errors import AIFaceSwapError, InputValidationError
from faceswap_flows.flows import exceptions
from faceswap_flows.flows.exceptions import (
    BudgetExceeded,
    CallbackTimeout,
    ConsentRefused,
    DownloadRefused,
    FaceSelectionFailed,
    FaceSwapFlowError,
    JobFailed,
    ResultNotAvailable,
    SubmissionOutcomeUnknown,
    VideoError,
    report_message,
)

FLOWS = Path(__file__).resolve().parent.parent / "flows"
# The batch's retry signal is internal to the batch flow (issue 20 owns flows/batch/flow.py).
NOT_FLOW_LEVEL = {"ItemsToRetry"}


def test_every_error_class_under_flows_is_in_the_family() -> None:
    outside = []
    for path in FLOWS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            is_error = isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Name) and base.id.endswith(("Error", "Exception", "Timeout"))
                for base in node.bases
            )
            if is_error and node.name not in NOT_FLOW_LEVEL and path.name != "exceptions.py":
                outside.append(f"{path.relative_to(FLOWS)}: {node.name}")
    assert outside == [], "define flow-level errors in flows/exceptions.py"
    members = [getattr(exceptions, name) for name in exceptions.__all__]
    assert all(issubclass(error, FaceSwapFlowError) for error in members)
    assert len(members) == 15


@pytest.mark.parametrize(
    "error",
    [
        JobFailed("task t-1 failed", job_id="j-1", task_id="t-1"),
        SubmissionOutcomeUnknown("unknown outcome", "j-2"),
        CallbackTimeout("t-3", 900, job_id="j-3"),
        ResultNotAvailable("not yet", task_id="t-4"),
        BudgetExceeded("max_credits: over"),
        VideoError("source_video: empty"),
        DownloadRefused("result URL refused", task_id="t-5"),
        ConsentRefused("face_image: no consent", job_id=None),
        FaceSelectionFailed(
            "face_indexes", call="extract_base64_face of a frame", credits=2, found="no face", advice="a"
        ),
    ],
)
def test_pickles_with_its_job_and_task(error: FaceSwapFlowError) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert (back.job_id, back.task_id) == (error.job_id, error.task_id)
    assert back.__dict__ == error.__dict__


def test_keeps_the_builtin_kind_older_except_clauses_catch() -> None:
    timeout = CallbackTimeout("t-6", 30)
    assert isinstance(timeout, TimeoutError) and timeout.task_id == "t-6" and "t-6" in str(timeout)
    assert isinstance(BudgetExceeded("x"), ValueError) and isinstance(VideoError("x"), ValueError)
    refused = DownloadRefused("x")
    assert isinstance(refused, AIFaceSwapError) and not refused.retryable and refused.message == "x"
    consent = ConsentRefused("face_image: no consent")
    assert isinstance(consent, InputValidationError) and consent.errors == []
    assert SubmissionOutcomeUnknown("m", "j-7").job_id == "j-7"


def test_a_failed_face_selection_says_it_was_charged_and_is_never_retried() -> None:
    """It is not an InputValidationError ("refused locally, nothing sent"): the detection was paid; and another
    attempt would pay again for the same answer, so the batch's retry rule (worth_another_attempt) says no."""
    from faceswap_flows.flows.tasks.job import worth_another_attempt

    failed = FaceSelectionFailed(
        "face_indexes", call="extract_base64_face of the frame at 1.0 s of a.mp4", credits=2, found="no face there",
        advice="choose another frame_time",
    )  # fmt: skip
    assert not isinstance(failed, InputValidationError) and isinstance(failed, ValueError)
    assert str(failed) == (
        "face_indexes: 2 credits were charged for extract_base64_face of the frame at 1.0 s of a.mp4, which found no "
        "face there: choose another frame_time"
    )
    assert failed.credits == 2 and not failed.retryable and not worth_another_attempt(failed)


def test_a_report_keeps_the_head_and_the_end_of_a_long_message() -> None:
    advice = "job J-1: it may have charged 14 credits: collect it with `faceswap-flows collect --job J-1`"
    assert report_message(advice) == advice
    long = f"{advice}; upstream {'<p>x</p>' * 1000}; again: `faceswap-flows collect --job J-1`"
    kept = report_message(long, limit=600)
    assert kept.startswith(advice) and kept.endswith("again: `faceswap-flows collect --job J-1`")
    assert len(kept) < 700 and f"[... {len(long) - 600} characters left out ...]" in kept


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("faceswap_flows.flows.tasks.submission", "SubmissionOutcomeUnknown"),
        ("faceswap_flows.flows.tasks.api", "JobFailed"),
        ("faceswap_flows.flows.tasks.waiting", "CallbackTimeout"),
        ("faceswap_flows.flows.media.download_rules", "DownloadRefused"),
        ("faceswap_flows.flows.media.video", "VideoError"),
        ("faceswap_flows.flows.collect", "ResultNotAvailable"),
        ("faceswap_flows.flows.budget", "BudgetExceeded"),
        ("faceswap_flows.flows.sweep.flow", "ResultsNotStored"),
        ("faceswap_flows.flows.provenance.consent", "ConsentRefused"),
        ("faceswap_flows.flows.provenance.content_credentials", "SigningNotConfigured"),
    ],
)
def test_the_modules_that_raise_them_still_export_them(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(exceptions, name)


def test_an_error_names_the_parameter_it_is_about() -> None:
    """``field``: the parameter (or group field) the message starts with, as Python and the Prefect UI's form name
    it; the command line names its option instead (tests/test_cli_errors.py)."""
    assert VideoError("source_video: the file is empty").field == "source_video"
    assert BudgetExceeded("options.max_credits: this needs 4").field == "options.max_credits"
    assert ConsentRefused("face_images[1]: no consent record").field == "face_images"
    assert ResultNotAvailable("task t-1 failed on the service's side").field is None
    assert pickle.loads(pickle.dumps(VideoError("trim_end: after the end"))).field == "trim_end"


def test_a_failed_job_says_the_likely_cause_of_its_operation() -> None:
    failed = JobFailed.reported("t-8", job_id="j-8", operation="video_faceswap")
    assert (failed.task_id, failed.job_id) == ("t-8", "j-8")
    assert str(failed).startswith(
        "task t-8 (job j-8): the service reported that the job failed (success 0, no reason given). "
        "Likely cause: no face found in `face_image` or in the frames of `source_video`, or a video larger than its "
        "`enhance` level takes (1: up to 1080p, 2: up to 2k). Fix the input and run it again; "
        "`faceswap-flows collect t-8` shows"
    ), str(failed)
    unknown = str(JobFailed.reported("t-9", job_id=None, operation=None))
    assert unknown.startswith("task t-9: the service reported") and "no face found in an input" in unknown
