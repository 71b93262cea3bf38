"""What the service will touch: the storage and the URL it fetches inputs from, the receiver behind
``public_url`` (it must hold this block's secret, and be able to keep a callback), and the reachability rules."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

import anyio.to_thread
import httpx

from faceswap_flows.blocks import AIFaceSwapCredentials, MediaStorage, WebhookReceiver
from faceswap_flows.flows.blocks_config import check_reachable
from faceswap_flows.flows.doctor.report import Check, failed, ok
from faceswap_flows.flows.exceptions import UnreachableUrl
from faceswap_flows.flows.media.reachability import STORAGE_FIX, WEBHOOK_FIX, Reach
from faceswap_flows.receiver.app import CHALLENGE_PATH
from faceswap_flows.receiver.tokens import challenge_answer

HTTP_SECONDS = 15.0
START_RECEIVER = (
    "start the receiver (faceswap-flows receiver) with FACESWAP_RECEIVER_SECRET set to this block's signing_secret, "
    "and set public_url to where the service reaches it (your tunnel or ingress)"
)


def shown(url: str) -> str:
    """A URL without its query (a presigned URL's signature) or credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"


def check_storage(storage: MediaStorage, name: str) -> list[Check]:
    """Write, read back, fetch over HTTP from the URL the service would be given, delete."""
    key = f"doctor/probe-{secrets.token_hex(8)}.txt"
    content = f"faceswap-flows doctor probe {key}\n".encode()
    where = storage.basepath
    try:
        storage.write_bytes(key, content)
        read = storage.read_bytes(key)
    except Exception as error:  # whatever the filesystem raises (permissions, credentials, no bucket)
        fix = f"check the MediaStorage block {name!r}: basepath, credentials, endpoint_url"
        return [failed("storage", f"cannot write and read {where}: {type(error).__name__}: {error}", fix)]
    try:
        rows = [_fetched(storage, key, content, name)]
    finally:
        storage.delete(key)
    if read != content:
        return [failed("storage", f"{where}: what was read back differs from what was written", "check the storage")]
    if storage.exists(key):
        return [failed("storage", f"{where}: a deleted probe is still there", "check the storage's permissions"), *rows]
    return [ok("storage", f"{where}: a probe was written, read back and deleted"), *rows]


def _fetched(storage: MediaStorage, key: str, content: bytes, name: str) -> Check:
    check = "storage URL"
    try:
        url = storage.url_for(key)
    except Exception as error:
        return failed(check, f"no URL the service can fetch: {error}", STORAGE_FIX)
    fix = (
        f"set public_base_url of the MediaStorage block {name!r} to where basepath is served over HTTP "
        "(for the sandbox: faceswap-flows media-server), or use S3 without public_base_url (presigned URLs)"
    )
    try:
        response = httpx.get(url, timeout=HTTP_SECONDS)
    except httpx.HTTPError as error:
        return failed(check, f"{shown(url)} cannot be fetched: {type(error).__name__}: {error}", fix)
    if response.status_code != 200 or response.content != content:
        what = f"HTTP {response.status_code}" + (", other bytes" if response.status_code == 200 else "")
        return failed(check, f"{shown(url)} does not serve what was stored ({what})", fix)
    return ok(check, f"{shown(url)} serves the stored bytes")


async def check_receiver(receiver: WebhookReceiver, name: str) -> list[Check]:
    """A random nonce to ``public_url``: only a receiver holding this block's secret answers its HMAC (the secret
    itself never travels); that receiver also says whether it can write a callback to its inbox."""
    nonce = secrets.token_hex(16)
    url = f"{receiver.public_url.rstrip('/')}{CHALLENGE_PATH}"
    check = "receiver"
    try:
        async with httpx.AsyncClient(timeout=HTTP_SECONDS) as client:
            response = await client.post(url, json={"nonce": nonce})
    except httpx.HTTPError as error:
        result = f"nothing answers at {receiver.public_url}: {type(error).__name__}: {error}"
        return [failed(check, result, START_RECEIVER)]
    try:
        answer = response.json()
        given, inbox = str(answer["answer"]), answer["inbox"]
    except (ValueError, KeyError, TypeError):
        result = (
            f"{receiver.public_url} answers (HTTP {response.status_code}) but not the receiver's challenge: "
            "it is not a faceswap-flows receiver"
        )
        return [failed(check, result, START_RECEIVER)]
    expected = challenge_answer(receiver.signing_secret.get_secret_value(), nonce)
    if not hmac.compare_digest(given.encode(), expected.encode()):
        result = (
            f"a receiver answers at {receiver.public_url} but holds another secret than the signing_secret of the "
            f"block {name!r}: it would refuse every callback (403)"
        )
        fix = "start the receiver with FACESWAP_RECEIVER_SECRET=<the block's signing_secret>, or save the block with "
        return [failed(check, result, fix + "the receiver's secret")]
    rows = [ok(check, f"{receiver.public_url} answers the challenge with the secret of the block {name!r}")]
    if inbox.get("writable") is True:
        return [*rows, ok("receiver inbox", "the receiver can write a callback to its inbox")]
    fix = "give the receiver a writable --inbox path (the disk, its permissions, another process holding the lock)"
    return [*rows, failed("receiver inbox", f"the receiver cannot write to its inbox: {inbox.get('error')}", fix)]


def check_reach(credentials: AIFaceSwapCredentials, storage: MediaStorage, receiver: WebhookReceiver) -> Check:
    """The reachability rules the flows apply before paying (flows/media/reachability.py)."""
    reach = Reach.for_credentials(credentials)
    check = "reachability"
    if not reach.checked:
        why = "allow_private_urls is set" if credentials.allow_private_urls else "it is on a private or loopback host"
        return ok(check, f"the service at {credentials.base_url} is reached over your network ({why}): no rule")
    try:
        check_reachable(reach, storage, receiver)
    except UnreachableUrl as error:
        return failed(check, str(error), WEBHOOK_FIX if error.field.startswith("WebhookReceiver") else STORAGE_FIX)
    return ok(check, f"the webhook and the storage URLs are public: the service at {credentials.base_url} reaches them")


async def storage_rows(storage: MediaStorage, name: str) -> list[Check]:
    return await anyio.to_thread.run_sync(check_storage, storage, name)
