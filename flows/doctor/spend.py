"""``--spend``: one real swap of two small photos through the ``faceswap`` flow, as a user's first run would go:
the credits it cost (from the ledger of credits), how long the callback took after the submission, and where the
result is stored."""

from __future__ import annotations

from pathlib import Path

import anyio.to_thread
import httpx

from faceswap_flows.aifaceswap.pricing import estimate_credits
from faceswap_flows.blocks import MediaStorage, WebhookReceiver
from faceswap_flows.flows.doctor.report import Check, DoctorBlocks, failed, ok, warn
from faceswap_flows.flows.ledger import SWAP, job_bill, job_sends
from faceswap_flows.flows.options import BlockNames, OutputOptions, SwapOptions

CHECK = "paid swap"


async def callback_received_at(receiver: WebhookReceiver, job_id: str) -> float | None:
    """When the receiver kept the job's callback (epoch seconds), as its inbox says."""
    secret = receiver.signing_secret.get_secret_value()
    async with httpx.AsyncClient(timeout=15.0) as client:
        response = await client.get(
            f"{receiver.public_url.rstrip('/')}/jobs/{job_id}", headers={"Authorization": f"Bearer {secret}"}
        )
    return float(response.json()["received_at"]) if response.status_code == 200 else None


async def paid_swap(
    names: DoctorBlocks, photos: tuple[Path, Path], storage: MediaStorage, receiver: WebhookReceiver
) -> Check:
    """One faceswap of ``photos`` (source, face), paid: the flow's own path, from staging to the stored result."""
    from faceswap_flows.flows.image import faceswap

    expected = estimate_credits("faceswap")
    blocks = BlockNames(credentials=names.credentials, storage=names.storage, receiver=names.receiver)
    try:
        outcome = await faceswap(
            str(photos[0]),
            str(photos[1]),
            options=SwapOptions(max_credits=expected, timeout_seconds=300),
            output=OutputOptions(signing_block=names.signing_block),
            blocks=blocks,
        )
    except Exception as error:  # the flow's own errors name the job and what to do
        return failed(CHECK, f"the swap failed: {type(error).__name__}: {error}", "see the flow run in the Prefect UI")
    bill = await anyio.to_thread.run_sync(job_bill, storage, outcome.job_id)
    sends = await anyio.to_thread.run_sync(job_sends, storage, outcome.job_id)
    submitted = min((send.sent_at for send in sends if send.purpose == SWAP), default=None)
    received = await callback_received_at(receiver, outcome.job_id)
    delay = f"{received - submitted:.1f} s" if received is not None and submitted is not None else "unknown"
    result = (
        f"job {outcome.job_id}, task {outcome.task_id}: {bill.charged} credits charged (ledger of credits), "
        f"callback {delay} after the submission, result stored at {outcome.result_key}"
    )
    stored = outcome.result_key is not None and await anyio.to_thread.run_sync(storage.exists, outcome.result_key)
    if not stored:
        return failed(CHECK, f"{result}, but it is not in storage", "see the flow run in the Prefect UI")
    if bill.charged != expected or bill.possibly_charged:
        fix = f"compare with `faceswap-flows credits` and the service's own bill (a faceswap costs {expected})"
        return warn(CHECK, f"{result}; {bill.possibly_charged} more possibly charged", fix)
    return ok(CHECK, result)
