"""The sandbox's operations: check the key and the balance, load and check inputs, charge, then work.

Nothing is charged until the request and its inputs have been checked; swap endpoints answer with a
``task_id`` at once and finish in the background.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import uuid
from functools import partial
from pathlib import Path

import httpx
import numpy as np

from faceswap_flows.aifaceswap.models import (
    ApiRequest,
    CallbackType,
    ExtractBase64FaceData,
    ExtractBase64FaceRequest,
    ExtractFaceData,
    ExtractFaceRequest,
    FaceBox,
    FaceSwapRequest,
    MultiFaceSwapRequest,
    MultiVideoFaceSwapRequest,
    SubmitData,
    SubmitRequest,
    VideoFaceSwapRequest,
)
from faceswap_flows.aifaceswap.sandbox.cache import Compute, ResultCache, cache_key
from faceswap_flows.aifaceswap.sandbox.config import FaultConfig, SandboxConfig
from faceswap_flows.aifaceswap.sandbox.faults import FaultDice
from faceswap_flows.aifaceswap.sandbox.inputs import InputError, InputLoader
from faceswap_flows.aifaceswap.sandbox.jobs import Job, JobRunner, Work
from faceswap_flows.aifaceswap.sandbox.ledger import Ledger
from faceswap_flows.aifaceswap.sandbox.results import ResultStore
from faceswap_flows.aifaceswap.sandbox.vision import FaceEngine, encode_image
from faceswap_flows.aifaceswap.sandbox.webhooks import WebhookSender

logger = logging.getLogger("aifaceswap.sandbox")


class Sandbox:
    """The state and operations behind the sandbox's HTTP API."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.ledger = Ledger(config.keys)
        self.dice = FaultDice(config.faults)
        self.base_url = config.public_url or "http://127.0.0.1"
        self._tmp = tempfile.TemporaryDirectory(prefix="aifaceswap-sandbox-")
        workdir = Path(self._tmp.name)
        self.results = ResultStore(
            Path(config.results_dir) if config.results_dir else workdir / "results", config.result_ttl_seconds
        )
        self._workdir = workdir
        self.cache = ResultCache(workdir / "cache") if config.result_cache else None
        self._engine: FaceEngine | None = None
        self._http: httpx.AsyncClient | None = None
        self.runner: JobRunner | None = None
        self.webhooks: WebhookSender | None = None
        self.loader: InputLoader | None = None

    @property
    def engine(self) -> FaceEngine:
        if self._engine is None:
            self._engine = FaceEngine()
            logger.info("sandbox face engine: %s", self._engine.backend)
        return self._engine

    async def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=self.config.fetch_timeout_seconds)
        self.loader = InputLoader(
            self._http,
            max_image_bytes=self.config.max_image_bytes,
            max_video_bytes=self.config.max_video_bytes,
            workdir=self._workdir,
            total_seconds=self.config.fetch_total_seconds,
        )
        self.webhooks = WebhookSender(self._http, self.config, self.dice)
        self.runner = JobRunner(
            concurrency=self.config.concurrency,
            processing_delay=self.config.processing_delay,
            results=self.results,
            ledger=self.ledger,
            webhooks=self.webhooks,
            dice=self.dice,
            result_base_url=lambda: self.base_url,
        )
        await asyncio.to_thread(lambda: self.engine)

    async def stop(self) -> None:
        if self.runner:
            await self.runner.close()
        if self.webhooks:
            await self.webhooks.close()
        if self._http:
            await self._http.aclose()
        self._tmp.cleanup()

    def set_faults(self, faults: FaultConfig) -> None:
        self.dice.configure(faults)

    async def handle(self, key: str, request: ApiRequest) -> ExtractFaceData | ExtractBase64FaceData | SubmitData:
        """Run one validated request for an authenticated key (raises InputError / NotEnoughCredits)."""
        price = request.estimated_credits()
        self.ledger.ensure(key, price)
        match request:
            case ExtractFaceRequest():
                boxes = await self._detect(await self._loader().image(request.img, "img"))
                self.ledger.charge(key, request.operation, price)
                return ExtractFaceData(faces=boxes, points=price)
            case ExtractBase64FaceRequest():
                boxes = await self._detect(InputLoader.base64_image(request.base64_img, "base64_img"))
                self.ledger.charge(key, request.operation, price)
                return ExtractBase64FaceData(pos=boxes, points=price)
            case FaceSwapRequest():
                work, cleanup, suffix = await self._faceswap_work(request)
            case MultiFaceSwapRequest():
                work, cleanup, suffix = await self._multi_faceswap_work(request)
            case VideoFaceSwapRequest():
                work, cleanup, suffix = await self._video_work(request)
            case MultiVideoFaceSwapRequest():
                work, cleanup, suffix = await self._multi_video_work(request)
            case _:
                raise TypeError(f"unknown request {type(request).__name__}")
        assert isinstance(request, SubmitRequest)
        return self._start_job(key, request, price, work, cleanup, suffix)

    def _loader(self) -> InputLoader:
        if self.loader is None:
            raise RuntimeError("the sandbox is not started")
        return self.loader

    async def _detect(self, image: np.ndarray) -> list[FaceBox]:
        boxes = await asyncio.to_thread(self.engine.detect, image)
        return [FaceBox.model_validate(list(box)) for box in boxes]

    def _start_job(
        self, key: str, request: SubmitRequest, price: int, work: Work, cleanup: list[Path], suffix: str
    ) -> SubmitData:
        task_id = uuid.uuid4().hex
        try:
            self.ledger.charge(key, request.operation, price, task_id)
        except BaseException:
            for path in cleanup:
                path.unlink(missing_ok=True)
            raise
        multi = isinstance(request, MultiFaceSwapRequest | MultiVideoFaceSwapRequest)
        job = Job(
            task_id=task_id,
            key=key,
            operation=request.operation,
            callback_type=CallbackType.MULTIPLE if multi else CallbackType.SINGLE,
            webhook=request.webhook,
            work=work,
            suffix=suffix,
            cleanup=cleanup,
        )
        assert self.runner is not None
        self.runner.submit(job)
        logger.info("job %s (%s) accepted for %d credits", task_id, request.operation, price)
        return SubmitData(task_id=task_id, points=price)

    def _work(self, key: str | None, compute: Compute, suffix: str) -> Work:
        """The job's work: through the result cache when it is on (``key`` given), else computed here."""
        if key is not None and self.cache is not None:
            return self.cache.add(key, suffix, compute).write

        def work(output: Path) -> None:
            output.write_bytes(compute())

        return work

    def _cached(self, request: SubmitRequest, inputs: list[bytes], fields: set[str]) -> tuple[str | None, Work | None]:
        """The request's cache key (None with the cache off) and, on a hit, the work that copies the result."""
        if self.cache is None:
            return None, None
        options = request.model_dump(mode="json", exclude={"webhook", *fields})
        key = cache_key(str(request.operation), inputs, options)
        entry = self.cache.get(key)
        return key, entry.write if entry is not None else None

    async def _faceswap_work(self, request: FaceSwapRequest) -> tuple[Work, list[Path], str]:
        loader = self._loader()
        source_bytes, face_bytes = await asyncio.gather(
            loader.image_bytes(request.source_image, "source_image"),
            loader.image_bytes(request.face_image, "face_image"),
        )
        key, hit = self._cached(request, [source_bytes, face_bytes], {"source_image", "face_image"})
        if hit is not None:  # the same bytes decoded and were accepted before: no need to decode them again
            return hit, [], ".png"
        source = InputLoader.decode(source_bytes, "source_image")
        face = InputLoader.decode(face_bytes, "face_image")

        def compute() -> bytes:
            return encode_image(self.engine.swap(source, face), "png")

        return self._work(key, compute, ".png"), [], ".png"

    async def _multi_faceswap_work(self, request: MultiFaceSwapRequest) -> tuple[Work, list[Path], str]:
        loader = self._loader()
        source_bytes, *face_bytes = await asyncio.gather(
            loader.image_bytes(request.source_image, "source_image"),
            *(loader.image_bytes(url, f"face_image[{i}]") for i, url in enumerate(request.face_image)),
        )
        key, hit = self._cached(request, [source_bytes, *face_bytes], {"source_image", "face_image"})
        if hit is not None:  # same bytes and indexes: they were decoded and checked when first accepted
            return hit, [], ".png"
        source = InputLoader.decode(source_bytes, "source_image")
        faces = [InputLoader.decode(data, f"face_image[{i}]") for i, data in enumerate(face_bytes)]
        found = len(await self._detect(source))
        for position, index in enumerate(request.index):
            if index >= found:
                raise InputError(
                    f"index[{position}]",
                    f"face {index} does not exist: source_image has {found} face(s), numbered 0 to {found - 1} "
                    "from left to right as extract_face returns them",
                )

        def compute() -> bytes:
            return encode_image(self.engine.multi_swap(source, faces, list(request.index)), "png")

        return self._work(key, compute, ".png"), [], ".png"

    async def _video_work(self, request: VideoFaceSwapRequest) -> tuple[Work, list[Path], str]:
        loader = self._loader()
        face = await loader.image(request.face_image, "face_image")
        video, _info = await loader.video(request.source_video, "source_video")
        work = partial(self._swap_video, video, face, int(request.enhance))
        return work, [video], ".mp4"

    def _swap_video(self, video: Path, face: np.ndarray, enhance: int, output: Path) -> None:
        self.engine.swap_video(video, output, face, enhance=enhance)

    async def _multi_video_work(self, request: MultiVideoFaceSwapRequest) -> tuple[Work, list[Path], str]:
        loader = self._loader()
        crops = [
            InputLoader.base64_image(ref.face_ref, f"ref_info[{i}].face_ref") for i, ref in enumerate(request.ref_info)
        ]
        faces = await asyncio.gather(
            *(loader.image(ref.face_url, f"ref_info[{i}].face_url") for i, ref in enumerate(request.ref_info))
        )
        video, _info = await loader.video(request.source_video, "source_video")
        refs = list(zip(crops, faces, strict=True))

        def work(output: Path) -> None:
            self.engine.swap_video_multi(video, output, refs, enhance=int(request.enhance))

        return work, [video], ".mp4"
