"""The doctor's checks in order; a check whose block did not load is left out (its block's row says why)."""

from __future__ import annotations

from pathlib import Path

import anyio.to_thread

from faceswap_flows.flows.doctor import prefect_checks
from faceswap_flows.flows.doctor.deployment_checks import check_reach, check_receiver, storage_rows
from faceswap_flows.flows.doctor.report import DoctorBlocks, DoctorReport, failed
from faceswap_flows.flows.doctor.signing_check import check_signing
from faceswap_flows.flows.doctor.spend import CHECK as SPEND_CHECK
from faceswap_flows.flows.doctor.spend import paid_swap


async def run_doctor(names: DoctorBlocks, spend_photos: tuple[Path, Path] | None = None) -> DoctorReport:
    """Every check of the deployment named by ``names``; with ``spend_photos`` (source, face), one paid swap too,
    only when nothing else failed."""
    report = DoctorReport(api_url=prefect_checks.api_source()[0])
    report.rows.append(await prefect_checks.check_api())
    if not report.ok:
        return report
    report.rows.append(await prefect_checks.check_events())
    rows, blocks = await prefect_checks.load_blocks(names, report.api_url)
    report.rows += rows
    if "storage" in blocks:
        report.rows += await storage_rows(blocks["storage"], names.storage)
    if "receiver" in blocks:
        report.rows += await check_receiver(blocks["receiver"], names.receiver)
    if {"credentials", "storage", "receiver"} <= blocks.keys():
        report.rows.append(check_reach(blocks["credentials"], blocks["storage"], blocks["receiver"]))
    if "signing" in blocks:
        report.rows += await anyio.to_thread.run_sync(check_signing, blocks["signing"], names.signing_block)
    if "credentials" in blocks:
        report.rows.append(await prefect_checks.check_rate_limit(blocks["credentials"]))
    if spend_photos is None:
        return report
    if not report.ok:
        report.rows.append(failed(SPEND_CHECK, "not sent: a check above failed", "fix the failures above first"))
        return report
    report.rows.append(await paid_swap(names, spend_photos, blocks["storage"], blocks["receiver"]))
    return report
