"""Nothing is sent that cannot come back: pointed at the real service (a public base URL), a webhook or an input on
a loopback, private or link-local address is refused before any credit is spent, naming the field and the fix;
the sandbox on loopback keeps working."""

from __future__ import annotations

import uuid

import pytest

from faceswap_flows.blocks import AIFaceSwapCredentials, MediaStorage, WebhookReceiver
from faceswap_flows.flows.exceptions import UnreachableUrl
from faceswap_flows.flows.media.reachability import STORAGE_FIX, WEBHOOK_FIX, Reach

REAL = "https://aifaceswap.io"


def reach(base_url: str = REAL, **fields: object) -> Reach:
    return Reach.for_credentials(AIFaceSwapCredentials(api_key="k", base_url=base_url, **fields))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8701/callbacks/t",
        "http://localhost:8702/inputs/a.png",
        "http://10.1.2.3/a.png",
        "http://172.16.0.9/a.png",
        "http://192.168.1.5/a.png",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8701/x",
        "http://[fe80::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://0.0.0.0/x",
        "ftp://93.184.216.34/a.png",
        "file:///etc/passwd",
    ],
)
def test_the_real_service_is_never_handed_what_it_cannot_reach(url: str) -> None:
    with pytest.raises(UnreachableUrl, match=r"source_image: .*Nothing was sent|source_image: .*not an http\(s\) URL"):
        reach().check(url, "source_image", "give a public URL")


def test_the_message_names_the_block_field_and_the_fix() -> None:
    with pytest.raises(UnreachableUrl) as refused:
        reach().check("http://127.0.0.1:8701/callbacks/secret-token", "WebhookReceiver.public_url", WEBHOOK_FIX)
    message = str(refused.value)
    assert message.startswith("WebhookReceiver.public_url: http://127.0.0.1:8701 cannot be reached")
    assert "secret-token" not in message, "a job's signed token is never shown"
    assert "tunnel or an ingress" in message and "allow_private_urls" in message and refused.value.field
    with pytest.raises(UnreachableUrl) as hidden:
        reach().check("http://10.0.0.1/a.png?X-Amz-Signature=abc", "MediaStorage.public_base_url", STORAGE_FIX)
    assert "X-Amz-Signature" not in str(hidden.value) and "S3 storage" in str(hidden.value)


def test_public_urls_pass_and_names_that_do_not_resolve_are_refused() -> None:
    reach().check("https://93.184.216.34/media/a.png?sig=1", "source_image", "x")
    with pytest.raises(UnreachableUrl, match="does not resolve"):
        reach().check("https://no-such-host.invalid/a.png", "source_image", "x")


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8700", "http://localhost:8700", "http://10.0.0.7:8700"])
def test_a_service_on_the_same_network_is_handed_anything(base_url: str) -> None:
    assert not reach(base_url).checked
    reach(base_url).check("http://127.0.0.1:8701/callbacks/t", "WebhookReceiver.public_url", WEBHOOK_FIX)


def test_a_service_reached_over_a_private_network_is_a_block_field() -> None:
    allowed = reach(allow_private_urls=True)
    allowed.check("http://10.1.2.3/a.png", "source_image", "x")
    assert reach().checked and not allowed.checked


def test_every_url_of_a_request_is_checked_with_its_field() -> None:
    import base64
    import io

    from PIL import Image

    from faceswap_flows.aifaceswap.models import MultiVideoFaceSwapRequest, validate_model

    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")

    request = validate_model(
        MultiVideoFaceSwapRequest,
        {
            "source_video": "https://93.184.216.34/v.mp4",
            "ref_info": [
                {"face_ref": base64.b64encode(png.getvalue()).decode(), "face_url": "http://192.168.0.2/f.png"}
            ],
            "duration": 2.0,
            "enhance": 0,
            "webhook": "https://93.184.216.34/callbacks/t",
        },
    )
    with pytest.raises(UnreachableUrl, match=r"^ref_info\[0\]\.face_url: http://192.168.0.2/f.png"):
        reach().check_request(request)


async def test_a_flow_pointed_at_the_real_service_with_a_loopback_receiver_spends_nothing(stack) -> None:
    """The demo's receiver (127.0.0.1) with the real service's base URL: refused at the start of the flow, before
    any upload or paid call (here a face detection by reference photo would come first), and the ledger of
    credits has no new send (every send is written before it goes)."""
    from faceswap_flows.flows.image import multi_faceswap
    from faceswap_flows.flows.ledger import every_send
    from faceswap_flows.flows.options import BlockNames

    name = f"real-{uuid.uuid4().hex[:6]}"
    await AIFaceSwapCredentials(api_key="real-key", base_url=REAL).asave(name, overwrite=True)
    sends = len(every_send(stack.storage))
    files = stack.files
    with pytest.raises(UnreachableUrl, match=r"^WebhookReceiver.public_url: http://127\.0\.0\.1"):
        await multi_faceswap(
            str(files["group"]), [str(files["grace"])], reference_images=[str(files["astronaut"])],
            blocks=BlockNames(credentials=name),
        )  # fmt: skip
    assert len(every_send(stack.storage)) == sends


async def test_a_loopback_media_server_or_input_url_is_refused_before_spending(stack, tmp_path) -> None:
    from faceswap_flows.flows.batch.flow import batch_faceswap
    from faceswap_flows.flows.image import faceswap
    from faceswap_flows.flows.ledger import every_send
    from faceswap_flows.flows.options import BlockNames

    name = f"real-{uuid.uuid4().hex[:6]}"
    await AIFaceSwapCredentials(api_key="real-key", base_url=REAL).asave(name, overwrite=True)
    await WebhookReceiver(public_url="https://93.184.216.34", signing_secret="s").asave(name, overwrite=True)
    blocks = BlockNames(credentials=name, receiver=name)
    sends = len(every_send(stack.storage))
    with pytest.raises(UnreachableUrl, match=r"^MediaStorage.public_base_url: http://127\.0\.0\.1"):
        await faceswap(str(stack.files["astronaut"]), str(stack.files["grace"]), blocks=blocks)
    with pytest.raises(UnreachableUrl, match=r"MediaStorage\.public_base_url"):
        await batch_faceswap(source=str(stack.files["astronaut"].parent), face_image=str(stack.files["grace"]),
                             blocks=blocks)  # fmt: skip
    public = MediaStorage(basepath=str(tmp_path / "media"), public_base_url="https://93.184.216.34/media")
    await public.asave(name, overwrite=True)
    blocks = BlockNames(credentials=name, receiver=name, storage=name)
    with pytest.raises(UnreachableUrl, match=r"^source_image: http://192\.168\.0\.10/team\.jpg"):
        await faceswap("http://192.168.0.10/team.jpg", str(stack.files["grace"]), blocks=blocks)
    assert len(every_send(stack.storage)) == sends and not every_send(public)
