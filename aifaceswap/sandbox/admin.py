"""Client side of the sandbox's admin routes (sandbox only, not part of the real API): hold and release callbacks.

>>> hold_callbacks("http://127.0.0.1:8700", "sandbox-key")               # doctest: +SKIP
>>> release_callbacks("http://127.0.0.1:8700", "sandbox-key", concurrency=64)   # doctest: +SKIP
{'hold': False, 'held': 10000, 'delivered': 0}
"""

from __future__ import annotations

from typing import Any

import httpx


def _callbacks(base_url: str, api_key: str, body: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
    url = f"{base_url.rstrip('/')}/sandbox/callbacks"
    headers = {"Authorization": f"Bearer {api_key}"}
    if body is None:
        response = httpx.get(url, headers=headers, timeout=timeout)
    else:
        response = httpx.put(url, json=body, headers=headers, timeout=timeout)
    response.raise_for_status()
    return dict(response.json()["data"])


def callback_status(base_url: str, api_key: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """``{"hold": bool, "held": callbacks waiting, "delivered": callbacks accepted so far, "retried": task ids whose
    callback was sent again after a failed delivery}`` (+ ``cache`` stats)."""
    return _callbacks(base_url, api_key, None, timeout)


def hold_callbacks(base_url: str, api_key: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """Hold every callback from now on: jobs still finish, their callbacks wait for ``release_callbacks``."""
    return _callbacks(base_url, api_key, {"hold": True}, timeout)


def release_callbacks(
    base_url: str,
    api_key: str,
    *,
    concurrency: int | None = None,
    per_second: float | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Deliver every held callback, ``concurrency`` at once (default: the sandbox's ``release_concurrency``), and
    ``per_second`` started a second when given. The answer's ``held`` is how many were waiting when released."""
    body: dict[str, Any] = {"hold": False}
    if concurrency is not None:
        body["concurrency"] = concurrency
    if per_second is not None:
        body["per_second"] = per_second
    return _callbacks(base_url, api_key, body, timeout)
