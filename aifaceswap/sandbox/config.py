"""How a sandbox is set up: its keys and balances, its pace, and the faults it injects for drills."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FaultConfig(BaseModel):
    """Faults injected on purpose, each a share of calls or jobs between 0 and 1. All off by default."""

    model_config = ConfigDict(extra="forbid")

    fail_rate: float = Field(default=0.0, ge=0, le=1, description="Jobs that end with success 0.")
    drop_webhook_rate: float = Field(default=0.0, ge=0, le=1, description="Jobs whose callback is never sent.")
    duplicate_webhook_rate: float = Field(default=0.0, ge=0, le=1, description="Callbacks sent twice.")
    delay_webhook_rate: float = Field(default=0.0, ge=0, le=1, description="Callbacks held back.")
    delay_webhook_seconds: float = Field(
        default=0.0, ge=0, description="How long a delayed callback waits (30 s and more: past every task retry)."
    )
    server_error_rate: float = Field(default=0.0, ge=0, le=1, description="Calls refused with HTTP 500.")
    rate_limit_rate: float = Field(default=0.0, ge=0, le=1, description="Calls refused with HTTP 429.")
    server_error_burst: int = Field(default=0, ge=0, description="The next N calls answered 500.")
    rate_limit_burst: int = Field(default=0, ge=0, description="The next N calls answered 429.")
    retry_after_seconds: float = Field(default=1.0, ge=0, description="Retry-After sent with a 429.")
    lose_response_rate: float = Field(
        default=0.0, ge=0, le=1, description="Accepted (charged, started) jobs whose answer comes too late."
    )
    lose_response_seconds: float = Field(default=30.0, ge=0, description="How late a lost answer comes.")
    error_after_accept_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Paid calls answered 500 (the API's envelope) after being accepted and charged.",
    )
    bad_gateway_after_accept_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Paid calls answered 502 with an HTML page (a gateway) after being accepted.",
    )
    close_after_accept_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Paid calls whose connection is closed without an answer after being accepted.",
    )
    seed: int | None = Field(default=None, description="Seed of the fault dice, for repeatable drills.")


class SandboxConfig(BaseModel):
    """The sandbox's settings. ``keys`` maps each accepted API key to its starting balance in credits."""

    model_config = ConfigDict(extra="forbid")

    keys: dict[str, int] = Field(default_factory=lambda: {"sandbox-key": 1000})
    public_url: str | None = Field(
        default=None, description="Base URL of result links; default: the address the server listens on."
    )
    processing_delay: float = Field(default=0.0, ge=0, description="Seconds each job waits before working.")
    concurrency: int = Field(default=2, ge=1, description="Jobs processed at once.")
    result_ttl_seconds: float = Field(default=3600.0, gt=0, description="How long result URLs stay valid.")
    webhook_retries: int = Field(default=3, ge=0, description="Re-deliveries of a callback that failed.")
    webhook_backoff_seconds: float = Field(default=0.5, ge=0, description="First wait between deliveries.")
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    fetch_timeout_seconds: float = Field(default=30.0, gt=0, description="Timeout to fetch an input URL.")
    fetch_total_seconds: float = Field(
        default=300.0, gt=0, description="Longest time one input download may take, however slowly it trickles."
    )
    max_image_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    max_video_bytes: int = Field(default=500 * 1024 * 1024, gt=0)
    results_dir: str | None = Field(default=None, description="Where results are kept; default: a temp folder.")
    faults: FaultConfig = Field(default_factory=FaultConfig)
    result_cache: bool = Field(
        default=False,
        description="Content-addressed result cache for image swaps: a request with the same input bytes (by SHA-256) "
        "and the same options reuses the first real swap's result bytes instead of computing again. Each job still "
        "gets its own task_id, charge, result URL and callback. For load tests that measure everything but the CV.",
    )
    hold_callbacks: bool = Field(
        default=False,
        description="Start with callbacks held: jobs finish, but their callbacks wait until released "
        "(PUT /sandbox/callbacks, or faceswap_flows.aifaceswap.sandbox.admin.release_callbacks).",
    )
    release_concurrency: int = Field(default=64, ge=1, description="Held callbacks delivered at once after a release.")
