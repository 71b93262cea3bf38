"""The block that says where the webhook receiver is and how job tokens are signed."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from faceswap_flows.blocks.documentation import DOCUMENTATION_URL
from faceswap_flows.receiver.app import CALLBACK_PATH
from faceswap_flows.receiver.tokens import JobToken, sign


class WebhookReceiver(Block):
    """The public URL of the webhook receiver and the secret it verifies job tokens with.

    Example:
        ```python
        from faceswap_flows.blocks import WebhookReceiver

        WebhookReceiver(public_url="https://hooks.example.com", signing_secret="long-random").save("default")
        ```
    """

    _block_type_name = "Faceswap Webhook Receiver"
    _block_type_slug = "faceswap-webhook-receiver"
    _description = "Where the aifaceswap API calls back (the receiver's public URL) and the job-token secret."
    _documentation_url = DOCUMENTATION_URL
    _code_example = """
        ```python
        from faceswap_flows.blocks import WebhookReceiver

        receiver = WebhookReceiver.load("BLOCK_NAME")
        print(receiver.public_url)
        ```
    """

    public_url: str = Field(
        default="http://127.0.0.1:8701",
        description="The receiver's URL as the API sees it (behind a tunnel or ingress for the real service).",
    )
    signing_secret: SecretStr = Field(description="Shared with the receiver; signs each job's callback URL.")
    lost_answer_grace_seconds: float = Field(
        default=300.0,
        gt=0,
        description="When a submission's answer is lost, how long to wait for its callback before giving up "
        "(it is never submitted again).",
    )

    def callback_url(self, job: JobToken) -> str:
        """The unguessable callback URL of one job."""
        token = sign(job, self.signing_secret.get_secret_value())
        return f"{self.public_url.rstrip('/')}{CALLBACK_PATH}/{token}"
