"""The package's optional parts: which extra installs which modules, and the one-line error naming the extra when
one is missing. ``pip install faceswap-flows`` alone runs every flow against the real service."""

from __future__ import annotations

from importlib.util import find_spec

EXTRAS: dict[str, tuple[str, ...]] = {
    # the offline sandbox server: classical computer vision, form uploads
    "sandbox": ("cv2", "dlib", "face_recognition_models", "python_multipart"),
    # the public-domain demo photos
    "photos": ("skimage", "matplotlib"),
}


class MissingExtra(ModuleNotFoundError):
    """A module of an extra is not installed; the message is one line naming the ``pip install`` to run."""


def install_command(*extras: str) -> str:
    return f"pip install 'faceswap-flows[{','.join(extras)}]'"


def missing_modules(*extras: str) -> list[str]:
    return [module for extra in extras for module in EXTRAS[extra] if find_spec(module) is None]


def require_extras(what: str, *extras: str) -> None:
    """Raise MissingExtra (before anything is imported or started) unless every module of ``extras`` is installed."""
    missing = missing_modules(*extras)
    if missing:
        raise MissingExtra(
            f"{what} needs {', '.join(missing)} (not installed): {install_command(*extras)}", name=missing[0]
        )
