"""The flows' parameter groups: how a swap runs (`SwapOptions`), what is done to its result (`OutputOptions`), the
video edits (`VideoOptions`), what is done to a video's result (`VideoOutputOptions`: no watermark) and the
blocks it uses (`BlockNames`).

Every field has a default and a description, so the Prefect UI shows each group as a described, nested form, a
deployment overrides one group without repeating the others, and the command line builds its options from the
same fields (`faceswap_flows.cli.flow_options`).

Example:
    ```python
    from faceswap_flows.flows import faceswap
    from faceswap_flows.flows.options import OutputOptions, SwapOptions

    faceswap("team.jpg", "me.jpg", options=SwapOptions(max_credits=2), output=OutputOptions(watermark="AI"))
    ```
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from faceswap_flows.aifaceswap.models import Enhance, EnhanceLevel
from faceswap_flows.flows.defaults import DEFAULT_CREDENTIALS, DEFAULT_RECEIVER, DEFAULT_SIGNING, DEFAULT_STORAGE

WatermarkCorner = Literal["bottom-right", "bottom-left", "top-right", "top-left"]
OnUnknownOutcome = Literal["at-most-once", "resubmit"]
"""What a submission does when its outcome stays unknown after the grace: ``at-most-once`` (default) fails with
SubmissionOutcomeUnknown and sends nothing more (the job may have to be collected by hand); ``resubmit`` sends it
again (a result is more likely, and the job may be charged twice)."""
AT_MOST_ONCE: OnUnknownOutcome = "at-most-once"
IMAGE_TIMEOUT_SECONDS = 900
VIDEO_TIMEOUT_SECONDS = 3600
__all__ = ["BlockNames", "OutputOptions", "SwapOptions", "VideoOptions", "VideoOutputOptions"]
WATERMARK_FIELDS = {"watermark", "watermark_corner"}
NO_VIDEO_WATERMARK = "videos get no visible watermark"


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SwapOptions(_Group):
    """How a swap is run: waiting for its result, the budget, the unknown-outcome policy and consent."""

    wait: bool = Field(
        True,
        description="Wait for the job's callback and store the result in this run. False ends the run once the job "
        "is submitted; the store-result deployment (or the store-results sweep) stores the result when it arrives.",
    )
    timeout_seconds: float | None = Field(
        None,
        gt=0,
        description="How long to wait for a job's callback before failing with CallbackTimeout (the job may still "
        "finish: `faceswap-flows collect TASK_ID` stores it later). None: 900 s for images, 3600 s for videos.",
    )
    max_credits: int | None = Field(
        None,
        ge=0,
        description="The budget, checked before anything is spent: a swap estimated over it is refused; a batch "
        "skips the items beyond it. None: no limit.",
    )
    on_unknown_outcome: OnUnknownOutcome = Field(
        AT_MOST_ONCE,
        description="When a submission's answer proves nothing (a 5xx, a lost answer) and no callback comes within "
        "the receiver's grace: `at-most-once` fails with SubmissionOutcomeUnknown naming the job to collect later; "
        "`resubmit` sends it again (it may be charged twice).",
    )
    require_consent: bool = Field(
        False,
        description="Refuse face photos missing from the consent register (`faceswap-flows consent add`), before "
        "any credit is spent.",
    )

    def timeout_for(self, kind: Literal["image", "video"]) -> float:
        """The callback timeout of a job of this kind."""
        if self.timeout_seconds is not None:
            return self.timeout_seconds
        return VIDEO_TIMEOUT_SECONDS if kind == "video" else IMAGE_TIMEOUT_SECONDS


class VideoOutputOptions(_Group):
    """What is done to a video result before it is stored: the synthetic-media label and the signed C2PA manifest
    (both on unless explicitly turned off). No visible watermark: drawing one means re-encoding every frame."""

    label: bool = Field(
        True,
        description="Label the result as synthetic media (embedded IPTC/XMP metadata) and write its provenance "
        "record. False stores it unlabelled (logged).",
    )
    sign: bool = Field(
        True,
        description="Embed a C2PA manifest (Content Credentials) signed with the `signing_block` key. False: "
        "unsigned (logged and recorded).",
    )
    signing_block: str = Field(DEFAULT_SIGNING, description="Name of the ContentSigningKey block that signs.")

    @model_validator(mode="before")
    @classmethod
    def _no_watermark(cls, given: Any) -> Any:
        """A saved video deployment's ``output`` may still hold the image-only watermark fields (the video flows
        took them, and refused a watermark, before): empty ones are dropped, a watermark is refused by name."""
        if cls is not VideoOutputOptions or not isinstance(given, dict) or not WATERMARK_FIELDS & set(given):
            return given
        asked = given.get("watermark")
        if asked and str(asked).strip():
            raise ValueError(f"output.watermark: {NO_VIDEO_WATERMARK} (asked for {asked!r}); leave it out")
        logging.getLogger(__name__).warning(
            "output.watermark, output.watermark_corner: no longer parameters of the video flows (%s): left out; "
            "remove them from the saved deployment's output",
            NO_VIDEO_WATERMARK,
        )
        return {name: value for name, value in given.items() if name not in WATERMARK_FIELDS}

    def for_storing(self) -> OutputOptions:
        """These choices as the output options the storing tasks take (no watermark)."""
        return OutputOptions(**self.model_dump(include=set(VideoOutputOptions.model_fields)))


class OutputOptions(VideoOutputOptions):
    """What is done to a result before it is stored: the synthetic-media label and the signed C2PA manifest (both
    on unless explicitly turned off), and an optional visible watermark (images only)."""

    watermark: str | None = Field(
        None, description="A visible text drawn on image results (videos get none). None: no visible watermark."
    )
    watermark_corner: WatermarkCorner = Field("bottom-right", description="The corner the watermark is drawn in.")

    @field_validator("watermark")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


class VideoOptions(_Group):
    """The video edits: face enhancement (priced per second) and the cut made before submitting."""

    enhance: EnhanceLevel = Field(
        Enhance.NONE, description="Face enhancement, priced per second: 0 none, 1 up to 1080p, 2 up to 2k."
    )
    trim_start: float | None = Field(
        None, description="Cut the video to start at this second before submitting. None: from the start."
    )
    trim_end: float | None = Field(
        None, description="Cut the video to end at this second before submitting. None: to the end."
    )


class BlockNames(_Group):
    """The names of the saved blocks a flow loads (`faceswap-flows blocks create` saves them under these names)."""

    credentials: str = Field(
        DEFAULT_CREDENTIALS, min_length=1, description="Name of the AIFaceSwapCredentials block (API key, base URL)."
    )
    storage: str = Field(
        DEFAULT_STORAGE,
        min_length=1,
        description="Name of the MediaStorage block that stages the inputs and stores the results.",
    )
    receiver: str = Field(
        DEFAULT_RECEIVER,
        min_length=1,
        description="Name of the WebhookReceiver block whose URL the service calls back.",
    )
