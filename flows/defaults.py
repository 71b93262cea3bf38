"""The flows' default block names: the ground floor of ``faceswap_flows.flows``, imported by the options, the
block loading, the result downloads, the signing and the command line (it imports nothing, Prefect included)."""

from __future__ import annotations

DEFAULT_CREDENTIALS = "aifaceswap"
DEFAULT_STORAGE = "faceswap-media"
DEFAULT_RECEIVER = "faceswap-receiver"
DEFAULT_SIGNING = "faceswap-signing"
