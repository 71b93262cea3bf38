"""The blocks through a real Prefect API, and MediaStorage against a real S3 server (moto) and a local folder."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from faceswap_flows.aifaceswap import AIFaceSwapClient
from faceswap_flows.blocks import AIFaceSwapCredentials, MediaStorage, StorageError
from faceswap_flows.devstack.media_server import MediaServer
from tests.support import S3_SECRET


def test_credentials_round_trip_through_prefect(prefect_api: str) -> None:
    AIFaceSwapCredentials(api_key="sk-secret", base_url="http://127.0.0.1:8700", timeout=5).save(
        "test-creds", overwrite=True
    )
    loaded = AIFaceSwapCredentials.load("test-creds")
    assert loaded.api_key.get_secret_value() == "sk-secret"
    client = loaded.get_client()
    assert isinstance(client, AIFaceSwapClient) and client.base_url == "http://127.0.0.1:8700"
    documents = httpx.post(f"{prefect_api}/block_documents/filter", json={}).json()
    stored = next(doc for doc in documents if doc["name"] == "test-creds")
    assert stored["data"]["api_key"] == "********", "the key must be stored as a secret"


def test_storage_round_trip_through_prefect(prefect_api: str, s3_storage: MediaStorage) -> None:
    s3_storage.save("test-media", overwrite=True)
    loaded = MediaStorage.load("test-media")
    assert loaded.basepath == s3_storage.basepath
    assert loaded.aws_secret_access_key.get_secret_value() == S3_SECRET
    loaded.write_bytes("check.txt", b"ok")
    assert s3_storage.read_bytes("check.txt") == b"ok"


def test_blocks_register_with_the_cli(prefect_api: str) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "blocks"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    slugs = {t["slug"] for t in httpx.post(f"{prefect_api}/block_types/filter", json={}).json()}
    assert {"aifaceswap-credentials", "faceswap-media-storage"} <= slugs


def test_s3_upload_presigned_url_list_and_results(s3_storage: MediaStorage, tmp_path: Path) -> None:
    source = tmp_path / "team.jpg"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    key = s3_storage.upload(source, "inputs/team.jpg")
    assert key == "inputs/team.jpg"
    url = s3_storage.url_for(key, expires=120)
    assert "X-Amz-Signature" in url and "X-Amz-Expires=120" in url
    fetched = httpx.get(url, timeout=30)
    assert fetched.status_code == 200 and fetched.content == source.read_bytes()

    s3_storage.write_bytes("results/out.png", b"png-bytes")
    s3_storage.write_chunks("results/video.mp4", [b"a" * 10, b"b" * 5])
    s3_storage.write_bytes("inputs/notes.txt", b"x")
    assert s3_storage.list("inputs", suffixes=[".jpg"]) == ["inputs/team.jpg"]
    assert s3_storage.list("results") == ["results/out.png", "results/video.mp4"]
    assert s3_storage.size("results/video.mp4") == 15
    assert s3_storage.uri("results/out.png").startswith("s3://")


async def test_storage_is_a_prefect_result_storage(s3_storage: MediaStorage) -> None:
    s3_storage.write_path("prefect-results/abc", b"payload")
    assert s3_storage.read_path("prefect-results/abc") == b"payload"
    await s3_storage.awrite_path("prefect-results/def", b"async")
    assert await s3_storage.aread_path("prefect-results/def") == b"async"


def test_local_folder_with_a_file_server(tmp_path: Path) -> None:
    storage = MediaStorage(basepath=str(tmp_path / "media"))
    source = tmp_path / "face.png"
    source.write_bytes(b"\x89PNG fake")
    key = storage.upload(source)
    assert key == "inputs/face.png"
    assert (tmp_path / "media" / "inputs" / "face.png").read_bytes() == b"\x89PNG fake"
    with pytest.raises(StorageError, match="public_base_url"):
        storage.url_for(key)
    with MediaServer(tmp_path / "media") as server:
        published = storage.model_copy(update={"public_base_url": server.url})
        url = published.url_for(key)
        assert url == f"{server.url}/inputs/face.png"
        assert httpx.get(url).content == b"\x89PNG fake"
    storage.write_bytes("results/a b.png", b"1")
    assert storage.list() == ["inputs/face.png", "results/a b.png"]
    assert storage.list("results", suffixes=[".PNG"]) == ["results/a b.png"]


@pytest.mark.parametrize("key", ["../escape.txt", "a/../../b", ""])
def test_keys_cannot_leave_basepath(tmp_path: Path, key: str) -> None:
    with pytest.raises(StorageError, match="leaves basepath"):
        MediaStorage(basepath=str(tmp_path)).write_bytes(key, b"x")


def test_storage_errors_name_the_fix(tmp_path: Path) -> None:
    storage = MediaStorage(basepath=str(tmp_path))
    with pytest.raises(StorageError, match="no such file"):
        storage.upload(tmp_path / "missing.jpg")
    with pytest.raises(StorageError, match="upload it first"):
        storage.url_for("inputs/missing.jpg")
    with pytest.raises(ValueError, match="names no bucket"):
        MediaStorage(basepath="s3://")
    with pytest.raises(ValueError, match="local folder or s3"):
        MediaStorage(basepath="gcs://bucket/x")


async def test_a_missing_block_names_itself_and_the_command_that_creates_it(prefect_api: str) -> None:
    """What `run faceswap` says before the blocks exist: which block, of which type, and how to create it."""
    from faceswap_flows.flows.blocks_config import load_services
    from faceswap_flows.flows.exceptions import BlockNotFound

    with pytest.raises(BlockNotFound) as missing:
        await load_services(credentials_block="never-saved-credentials")
    message = str(missing.value)
    assert message.startswith(
        "blocks.credentials: there is no AIFaceSwapCredentials block named 'never-saved-credentials'"
    )
    assert "faceswap-flows blocks create" in message and "Unable to find block document" not in message
    assert f"on the Prefect server at {prefect_api}:" in message, "it names the server it asked"
    assert (missing.value.block_type, missing.value.block_name) == ("AIFaceSwapCredentials", "never-saved-credentials")
