"""The computer-vision engine of the sandbox: detect and swap faces in images and videos, on CPU.

Pure functions over numpy arrays (BGR ``uint8``, OpenCV's convention) and files; no HTTP, no Prefect,
no model download at run time.

* Detection (:mod:`.detect`, :mod:`.scan`): dlib's HOG frontal-face detector at the scale where the
  smallest wanted face (40 px) is ~60 px (1.5x), in strips on 2 threads, weak finds confirmed enlarged; with
  dlib's 5-point landmark model (``face-recognition-models``, CC0); without dlib, OpenCV's Haar cascade
  (a warning is logged) and landmarks estimated from the box.  The 68-point model shipped by the same
  package is never loaded (its iBUG 300-W training data excludes commercial use).
* Swap (:mod:`.swap`): similarity transform from the landmarks, YCrCb colour transfer, feathered
  alpha blend inside a face ellipse, computed on the face's region only.
* Video (:mod:`.video`, :mod:`.tracking`): PyAV decode/encode (H.264 + AAC), a full detection every N
  frames and landmark tracking in between.
* Multi-face video (:mod:`.matching`): faces matched to ``face_ref`` crops by appearance.

>>> from faceswap_flows.aifaceswap.sandbox.vision import FaceEngine, decode_image, encode_image
>>> engine = FaceEngine()                       # doctest: +SKIP
>>> engine.backend                              # doctest: +SKIP
'dlib-hog+5pt'
>>> png = encode_image(engine.swap(decode_image(target_bytes), decode_image(face_bytes)))  # doctest: +SKIP
"""

from .engine import MAX_REFS, FaceEngine
from .errors import FaceIndexOutOfRange, NoFaceFound, NotAnImage, NotAVideo, TooManyRefs, VisionError
from .faces import Box, Face
from .images import decode_image, encode_image
from .video import VideoInfo, probe_video

__all__ = [
    "MAX_REFS",
    "Box",
    "Face",
    "FaceEngine",
    "FaceIndexOutOfRange",
    "NoFaceFound",
    "NotAVideo",
    "NotAnImage",
    "TooManyRefs",
    "VideoInfo",
    "VisionError",
    "decode_image",
    "encode_image",
    "probe_video",
]
