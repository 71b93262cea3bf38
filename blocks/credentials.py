"""The block that holds the API key and builds the client."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from faceswap_flows.aifaceswap.client import DEFAULT_BASE_URL, AIFaceSwapClient, shared_http_client
from faceswap_flows.blocks.documentation import DOCUMENTATION_URL


class AIFaceSwapCredentials(Block):
    """The aifaceswap API key and where the API lives (the real service or the sandbox).

    Example:
        ```python
        from faceswap_flows.blocks import AIFaceSwapCredentials

        AIFaceSwapCredentials(api_key="sk-...", base_url="http://127.0.0.1:8700").save("sandbox", overwrite=True)
        async with AIFaceSwapCredentials.load("sandbox").get_client() as client:
            faces = await client.extract_face("https://example.com/team.jpg")
        ```
    """

    _block_type_name = "AIFaceSwap Credentials"
    _block_type_slug = "aifaceswap-credentials"
    _description = "API key and base URL of the aifaceswap.io API (or of its offline sandbox)."
    _documentation_url = DOCUMENTATION_URL
    _code_example = """
        ```python
        from faceswap_flows.blocks import AIFaceSwapCredentials

        credentials = AIFaceSwapCredentials.load("BLOCK_NAME")
        async with credentials.get_client() as client:
            faces = await client.extract_face("https://example.com/team.jpg")
        ```
    """

    api_key: SecretStr = Field(description="The API key from the aifaceswap API management page.")
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description="Where the API lives: the real service, or the sandbox (e.g. http://127.0.0.1:8700).",
    )
    timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for an answer to one call.")
    max_retries: int = Field(
        default=2, ge=0, le=10, description="Retries of calls that certainly had no effect (no connection, 429)."
    )

    rate_limit: str | None = Field(
        default="aifaceswap-api",
        description="Prefect global rate limit every API call takes a slot of (shared by all flows and workers); "
        "create it with: prefect gcl create aifaceswap-api --limit 5 --slot-decay-per-second 2. "
        "While it does not exist, calls are not limited.",
    )

    allowed_result_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts the flows may download results from besides the service's own domain (and the sandbox "
        "when it is the base URL): exact names or *.domain patterns.",
    )
    allow_private_result_addresses: bool = Field(
        default=False,
        description="Download results from private, loopback or link-local addresses even when the base URL is "
        "the real service (refused by default: a forged result URL must not reach inside your network).",
    )
    allow_private_urls: bool = Field(
        default=False,
        description="Hand the service URLs on private, loopback or link-local addresses (inputs, the webhook) even "
        "when the base URL is a public host: for a service reached over a private network. Refused by default: the "
        "real service could never fetch or call them, and the job would be paid for nothing.",
    )
    max_result_bytes: int = Field(default=2 * 1024**3, gt=0, description="Largest result download, in bytes.")
    result_download_timeout_seconds: float = Field(
        default=600.0, gt=0, description="Longest time one result download may take, however slowly it trickles."
    )

    def get_client(self, *, pooled: bool = False) -> AIFaceSwapClient:
        """A new client with this block's key, base URL and timeout; use it as an async context manager.
        ``pooled``: its HTTP client is the event loop's shared one for paid calls (a new connection per call: a
        kept-alive one closed by the server as idle would make a call's outcome unknown)."""
        return AIFaceSwapClient(
            self.api_key.get_secret_value(),
            base_url=self.base_url,
            timeout=self.timeout,
            max_retries=self.max_retries,
            http_client=shared_http_client(keep_alive=False) if pooled else None,
        )
