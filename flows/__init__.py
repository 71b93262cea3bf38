"""The Prefect flows of faceswap-flows (installed as ``faceswap_flows.flows``) and the models they return.

    from faceswap_flows.flows import faceswap, SwapOutcome

Names load on first use, so importing one (or the command line) does not import every flow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "faceswap": "image",
    "extract_faces": "image",
    "multi_faceswap": "image",
    "DetectedFaces": "image",
    "video_faceswap": "video",
    "multi_video_faceswap": "video",
    "batch_faceswap": "batch.flow",
    "BatchReport": "batch.flow",
    "ItemOutcome": "batch.flow",
    "store_result": "collect",
    "store_results": "sweep.flow",
    "StoreResultsReport": "sweep.flow",
    "SwapOutcome": "tasks.job",
    "SwapOptions": "options",
    "OutputOptions": "options",
    "VideoOptions": "options",
    "VideoOutputOptions": "options",
    "BlockNames": "options",
}

__all__ = [
    "BatchReport",
    "BlockNames",
    "DetectedFaces",
    "ItemOutcome",
    "OutputOptions",
    "StoreResultsReport",
    "SwapOptions",
    "SwapOutcome",
    "VideoOptions",
    "VideoOutputOptions",
    "batch_faceswap",
    "extract_faces",
    "faceswap",
    "multi_faceswap",
    "multi_video_faceswap",
    "store_result",
    "store_results",
    "video_faceswap",
]

if TYPE_CHECKING:
    from faceswap_flows.flows.batch.flow import BatchReport, ItemOutcome, batch_faceswap
    from faceswap_flows.flows.collect import store_result
    from faceswap_flows.flows.image import DetectedFaces, extract_faces, faceswap, multi_faceswap
    from faceswap_flows.flows.options import BlockNames, OutputOptions, SwapOptions, VideoOptions, VideoOutputOptions
    from faceswap_flows.flows.sweep.flow import StoreResultsReport, store_results
    from faceswap_flows.flows.tasks.job import SwapOutcome
    from faceswap_flows.flows.video import multi_video_faceswap, video_faceswap


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
