"""Benchmark: streaming a large file into S3 (moto's server) through MediaStorage.upload, against a plain s3fs
``put`` of the same file as the baseline (what ``aws s3 cp`` does), each in a fresh process so that peak memory
(RSS) is its own. moto runs as a separate process (it keeps objects in memory).

Run: ``.venv/bin/python benchmarks/bench_storage.py [--size-mb 1024]``. Target: peak RSS < 200 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEY_ID, SECRET = "bench-key", "bench-secret"


def child(mode: str, endpoint: str, path: str, bucket: str) -> None:
    """One upload in this (fresh) process; prints seconds and peak RSS as JSON."""
    import s3fs

    from faceswap_flows.blocks import MediaStorage

    started = time.perf_counter()
    if mode == "media-storage":
        storage = MediaStorage(
            basepath=f"s3://{bucket}/media",
            endpoint_url=endpoint,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )
        storage.upload(path, "inputs/big.bin")
    else:
        fs = s3fs.S3FileSystem(key=KEY_ID, secret=SECRET, client_kwargs={"endpoint_url": endpoint})
        fs.put(path, f"{bucket}/plain/big.bin")
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb}))


def run_child(mode: str, endpoint: str, path: Path, bucket: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, endpoint, str(path), bucket],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    from faceswap_flows.devstack.prefect_server import free_port

    port = free_port()
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        import s3fs

        fs = s3fs.S3FileSystem(key=KEY_ID, secret=SECRET, client_kwargs={"endpoint_url": endpoint})
        fs.mkdir("bench")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "big.bin"
            chunk = os.urandom(8 * 1024 * 1024)
            with path.open("wb") as handle:
                for _ in range(args.size_mb // 8):
                    handle.write(chunk)
            size_mb = path.stat().st_size / 2**20
            baseline = run_child("s3fs-put", endpoint, path, "bench")
            ours = run_child("media-storage", endpoint, path, "bench")
        print(f"storage: {size_mb:.0f} MB file to moto's S3 server on loopback ({time.strftime('%Y-%m-%d')})")
        print(f"{'case':34}  {'MB/s':>7}  {'peak RSS':>9}  target")
        print(f"{'MediaStorage.upload':34}  {size_mb / ours['seconds']:7.1f}  {ours['peak_rss_mb']:7.0f} MB  < 200 MB")
        print(
            f"{'baseline: plain s3fs put':34}  {size_mb / baseline['seconds']:7.1f}  {baseline['peak_rss_mb']:7.0f} MB"
        )
    finally:
        os.killpg(moto.pid, signal.SIGTERM)
        moto.wait(10)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:6])
    else:
        main()
