"""The commands built from a flow's parameters, by their path on the command line: the flow each one runs."""

from __future__ import annotations

from faceswap_flows.flows.batch import batch_faceswap
from faceswap_flows.flows.image import extract_faces, faceswap, multi_faceswap
from faceswap_flows.flows.video import multi_video_faceswap, video_faceswap

RUN_COMMANDS = {
    ("run", "faceswap"): faceswap,
    ("run", "extract-faces"): extract_faces,
    ("run", "multi-faceswap"): multi_faceswap,
    ("run", "video-faceswap"): video_faceswap,
    ("run", "multi-video-faceswap"): multi_video_faceswap,
    ("run", "batch"): batch_faceswap,
    ("plan",): batch_faceswap,
}
