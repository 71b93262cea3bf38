"""The rows of a doctor's report: one per check, ``ok``, ``warn`` (does not fail the deployment) or ``fail``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from faceswap_flows.flows.defaults import DEFAULT_CREDENTIALS, DEFAULT_RECEIVER, DEFAULT_SIGNING, DEFAULT_STORAGE

Status = Literal["ok", "warn", "fail"]


class Check(BaseModel):
    """One check: what was checked, what was found and, unless it is ok, how to fix it."""

    check: str
    status: Status
    result: str
    fix: str = ""


def ok(check: str, result: str) -> Check:
    return Check(check=check, status="ok", result=result)


def warn(check: str, result: str, fix: str) -> Check:
    return Check(check=check, status="warn", result=result, fix=fix)


def failed(check: str, result: str, fix: str) -> Check:
    return Check(check=check, status="fail", result=result, fix=fix)


class DoctorBlocks(BaseModel):
    """The names of the blocks checked (the options of ``faceswap-flows run``)."""

    credentials: str = DEFAULT_CREDENTIALS
    storage: str = DEFAULT_STORAGE
    receiver: str = DEFAULT_RECEIVER
    signing_block: str = DEFAULT_SIGNING


class DoctorReport(BaseModel):
    """Every row; ``ok`` when none failed (warnings do not fail)."""

    api_url: str
    rows: list[Check] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(row.status != "fail" for row in self.rows)
