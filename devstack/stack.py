"""The embedded default, in one piece: sandbox, webhook receiver and media server on loopback, with the three
blocks saved under the flows' default names, and a development Content Credentials signing key (a local CA in
``.faceswap/signing``, see ``devstack.signing_certs``). The demo, the tests and the benchmarks all start it this way.

The Prefect API must be chosen (PREFECT_API_URL) before Prefect is imported; see ``devstack.prefect_server``.
"""

from __future__ import annotations

import secrets
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from faceswap_flows.aifaceswap.sandbox import SandboxConfig, SandboxServer
from faceswap_flows.blocks import AIFaceSwapCredentials, MediaStorage, WebhookReceiver
from faceswap_flows.devstack.media_server import MediaServer
from faceswap_flows.devstack.prefect_server import port_is_free
from faceswap_flows.devstack.signing_certs import dev_signing_key
from faceswap_flows.flows.blocks_config import DEFAULT_CREDENTIALS, DEFAULT_RECEIVER, DEFAULT_STORAGE
from faceswap_flows.flows.defaults import DEFAULT_SIGNING
from faceswap_flows.receiver import ReceiverServer


def _port(preferred: int | None) -> int:
    return preferred if preferred and port_is_free(preferred) else 0


class LocalStack:
    """Start with ``with LocalStack(folder, api_key="k") as stack: ...``; everything stops on exit."""

    def __init__(
        self,
        folder: str | Path,
        *,
        api_key: str = "sandbox-key",
        credits: int = 1000,
        sandbox: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        ports: tuple[int | None, int | None, int | None] = (None, None, None),
        secret: str | None = None,
    ) -> None:
        self.folder = Path(folder).resolve()
        self.media_dir = self.folder / "faceswap-media"
        self.inbox_path = self.folder / ".faceswap" / "inbox.sqlite"
        self.signing_dir = self.folder / ".faceswap" / "signing"
        self.api_key = api_key
        self.secret = secret or secrets.token_urlsafe(24)
        self._sandbox_config = SandboxConfig(keys={api_key: credits}, **(sandbox or {}))
        self._credentials_options = credentials or {}
        self._ports = ports
        self._stack = ExitStack()
        self.blocks: dict[str, Any] = {}

    def __enter__(self) -> LocalStack:
        sandbox_port, receiver_port, media_port = (_port(p) for p in self._ports)
        try:
            self.sandbox = self._stack.enter_context(SandboxServer(self._sandbox_config, port=sandbox_port))
            self.receiver = self._stack.enter_context(ReceiverServer(self.inbox_path, self.secret, port=receiver_port))
            self.media_server = self._stack.enter_context(MediaServer(self.media_dir, port=media_port))
        except BaseException:
            self._stack.close()
            raise
        self.storage = MediaStorage(basepath=str(self.media_dir), public_base_url=self.media_server.url)
        self.blocks = {
            DEFAULT_CREDENTIALS: AIFaceSwapCredentials(
                api_key=self.api_key, base_url=self.sandbox.url, **self._credentials_options
            ),
            DEFAULT_STORAGE: self.storage,
            DEFAULT_RECEIVER: WebhookReceiver(public_url=self.receiver.url, signing_secret=self.secret),
            DEFAULT_SIGNING: dev_signing_key(self.signing_dir),
        }
        self.save_blocks()
        return self

    def save_blocks(self) -> None:
        """Save (again) the stack's blocks under the default names."""
        for name, block in self.blocks.items():
            block.save(name, overwrite=True)

    def restart_receiver(self) -> ReceiverServer:
        """Stop the receiver and start a new one on the same port and inbox (nothing acknowledged is lost)."""
        port = self.receiver.port
        self.receiver.stop()
        self.receiver = ReceiverServer(self.inbox_path, self.secret, port=port).start()
        self._stack.callback(self.receiver.stop)
        return self.receiver

    def spent(self) -> int:
        return int(self.sandbox.ledger(self.api_key)["spent"])

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()
