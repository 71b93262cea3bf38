"""The webhook receiver: turns the API's callbacks into Prefect events, durably.

Start it with ``faceswap-flows receiver --port 8701`` or, in tests, ``ReceiverServer(inbox, secret)``.
"""

from faceswap_flows.receiver.app import ReceiverServer, create_app
from faceswap_flows.receiver.events import FAILED, SUBMITTED, SUCCEEDED, task_resource_id
from faceswap_flows.receiver.tokens import JobToken, TokenError, sign, verify

__all__ = [
    "FAILED",
    "SUBMITTED",
    "SUCCEEDED",
    "JobToken",
    "ReceiverServer",
    "TokenError",
    "create_app",
    "sign",
    "task_resource_id",
    "verify",
]
