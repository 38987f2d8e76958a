"""CLIP image-text scoring: load an open_clip model once, score (image bytes, caption) pairs.

Dagster-free. The resource in ``vila_assets.resources.clip`` only configures and caches what lives here.

The pipeline per batch is decode (JPEG bytes -> PIL, shrunk by ``Image.draft`` inside the decoder) ->
open_clip preprocess -> tokenize, done on a thread pool while the main thread runs the model on the
previous batch. Pillow and torch release the GIL, so on a GPU the card never waits for the CPU and on a
CPU the decode work hides in the gaps of the forward pass.

A pair whose image cannot be decoded gets a NaN score and a reason; the batch goes on without it.
"""

from __future__ import annotations

import functools
import io
import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES_HELP = "'auto', 'cpu', 'cuda' or 'cuda:N'"

# Our precision names -> open_clip's. "pure_*" casts every weight (LayerNorm included); open_clip's own
# "bf16" keeps a mixed model whose CPU matmuls gain nothing.
_OPEN_CLIP_PRECISION = {"fp32": "fp32", "bf16": "pure_bf16", "fp16": "pure_fp16"}
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# --------------------------------------------------------------------------------------------- device


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else is validated and returned."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" or device == "cuda" or device.startswith("cuda:"):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but torch sees no CUDA device")
        return device
    raise ValueError(f"unknown device {device!r}; expected {DEVICES_HELP}")


def _cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (AMX-BF16 or AVX512-BF16).

    Without it torch emulates bf16 matmuls and they run *slower* than fp32, so ``auto`` must not pick
    bf16 on such a CPU (the 2-core AMD EPYC dev machine has neither flag).
    """
    return bool({"amx_bf16", "avx512_bf16"} & _cpu_flags())


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> bf16 on CUDA (fp16 on cards without bf16) and on CPUs with bf16 hardware, else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


# ---------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ClipModelSpec:
    """What to load. ``model`` is an open_clip name (``ViT-B-32``), ``hf-hub:org/name`` or ``local-dir:/path``."""

    model: str = "ViT-B-32"
    pretrained: str | None = "openai"
    device: str = "auto"
    precision: str = "auto"
    cache_dir: str | None = None
    hf_endpoint: str | None = None  # hub for ``hf-hub:`` names; None -> huggingface.co / HF_ENDPOINT at import


@dataclass
class LoadedClip:
    spec: ClipModelSpec
    model: torch.nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    device: str
    precision: str
    image_size: int

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.precision]

    def describe(self) -> dict[str, str | int | None]:
        """What actually runs, for asset metadata."""
        return {
            "model": self.spec.model,
            "pretrained": self.spec.pretrained,
            "device": self.device,
            "precision": self.precision,
            "image_size": self.image_size,
        }

    @torch.inference_mode()
    def cosine(self, pixels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Row-wise cosine of image i with text i, as float32 on the CPU."""
        non_blocking = self.device.startswith("cuda")
        pixels = pixels.to(self.device, dtype=self.dtype, non_blocking=non_blocking)
        tokens = tokens.to(self.device, non_blocking=non_blocking)
        img = self.model.encode_image(pixels, normalize=True).float()
        txt = self.model.encode_text(tokens, normalize=True).float()
        return (img * txt).sum(dim=-1).cpu()


def _schema(model: str) -> str | None:
    for prefix in ("hf-hub:", "local-dir:"):
        if model.startswith(prefix):
            return prefix[:-1]
    return None


def load_clip(
    model: str = "ViT-B-32",
    pretrained: str | None = "openai",
    device: str = "auto",
    precision: str = "auto",
    cache_dir: str | None = None,
    hf_endpoint: str | None = None,
) -> LoadedClip:
    """Build an open_clip model in eval mode on the resolved device and precision.

    ``pretrained`` is a tag (``openai``) or a weights file for built-in names and ignored for
    ``hf-hub:``/``local-dir:``, whose folder carries ``open_clip_config.json`` +
    ``open_clip_model.safetensors``. ``pretrained=None`` gives random weights (benchmarks only).
    With ``hf_endpoint`` an ``hf-hub:`` model's two files are fetched from that hub (e.g. the sample
    world's loopback hub) and loaded as a local folder; without it open_clip asks huggingface_hub itself.
    Weights that a spec names but that fail to load raise, rather than silently scoring with a random model.
    """
    import open_clip  # heavy import (torchvision, timm): only when a model is really needed

    spec = ClipModelSpec(model, pretrained, device, precision, cache_dir, hf_endpoint)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    schema = _schema(model)
    if schema == "hf-hub" and hf_endpoint:
        model = f"local-dir:{_fetch_from_hub(model.removeprefix('hf-hub:'), hf_endpoint, cache_dir)}"
        schema = "local-dir"
    if schema == "local-dir" and not any(Path(model.removeprefix("local-dir:")).glob("*.safetensors")):
        raise FileNotFoundError(f"{model}: no *.safetensors weights in the folder")
    clip, _, preprocess = open_clip.create_model_and_transforms(
        model,
        pretrained=None if schema else pretrained,
        precision=_OPEN_CLIP_PRECISION[prec],
        device=dev,
        cache_dir=cache_dir,
        # open_clip only *warns* when an hf-hub repo lacks weights and then returns a random model.
        require_pretrained=schema is not None or pretrained is not None,
    )
    clip.eval()
    tokenizer = open_clip.get_tokenizer(model, cache_dir=cache_dir)
    size = clip.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    return LoadedClip(spec, clip, preprocess, tokenizer, dev, prec, size)


def _fetch_from_hub(repo_id: str, endpoint: str, cache_dir: str | None) -> Path:
    from vila_assets.core.hub import HubLocation

    hub = HubLocation(endpoint=endpoint, cache_dir=cache_dir)
    revision = hub.resolve_revision(repo_id, "main", repo_type="model")
    config = hub.download(repo_id, "open_clip_config.json", revision, repo_type="model")
    hub.download(repo_id, "open_clip_model.safetensors", revision, repo_type="model")
    return config.parent  # both files sit in the same snapshot folder


_CACHE: dict[ClipModelSpec, LoadedClip] = {}
_CACHE_LOCK = threading.Lock()


def load_clip_cached(spec: ClipModelSpec) -> LoadedClip:
    """One model per spec per process: Dagster steps in the same process share it."""
    with _CACHE_LOCK:
        if spec not in _CACHE:
            _CACHE[spec] = load_clip(
                spec.model, spec.pretrained, spec.device, spec.precision, spec.cache_dir, spec.hf_endpoint
            )
        return _CACHE[spec]


# ------------------------------------------------------------------------------------- preprocessing


def decode_image(data: bytes, size: int) -> Image.Image:
    """Decode image bytes to an upright RGB picture at no less than ``size`` px on the short side.

    ``draft`` makes the JPEG decoder itself downscale by 1/2, 1/4 or 1/8 (2-3x faster on 640x480);
    it never goes below the requested size, so the model's own resize still does the final step.
    """
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (size, size))
    img = ImageOps.exif_transpose(img)
    if img.mode != "RGB":
        # Palette/LA/RGBA: flatten onto white like a browser would, rather than onto black.
        if img.mode in ("RGBA", "LA", "PA", "P"):
            img = img.convert("RGBA")
            canvas = Image.new("RGB", img.size, (255, 255, 255))
            canvas.paste(img, mask=img.getchannel("A"))
            img = canvas
        else:
            img = img.convert("RGB")
    return img


@dataclass
class PreparedBatch:
    """A batch ready for the model: pixels/tokens of the decodable pairs, and where they go."""

    size: int  # pairs in the batch, decodable or not
    rows: list[int]  # position in the batch of each pixels/tokens row
    pixels: torch.Tensor | None
    tokens: torch.Tensor | None
    errors: list[str | None]  # one per pair; None where it decoded


def prepare_batch(loaded: LoadedClip, images: Sequence[bytes | None], texts: Sequence[str | None]) -> PreparedBatch:
    """Decode, preprocess and tokenize one batch; failures become reasons, not exceptions."""
    rows: list[int] = []
    tensors: list[torch.Tensor] = []
    captions: list[str] = []
    errors: list[str | None] = [None] * len(images)
    for i, (data, text) in enumerate(zip(images, texts, strict=True)):
        if text is None:
            errors[i] = "missing caption"
            continue
        if not data:
            errors[i] = "missing image bytes"
            continue
        try:
            tensors.append(loaded.preprocess(decode_image(data, loaded.image_size)))
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a per-pair outcome
            errors[i] = f"undecodable image: {type(exc).__name__}: {exc}"[:300]
            continue
        rows.append(i)
        captions.append(text)
    pixels = torch.stack(tensors) if tensors else None
    tokens = loaded.tokenizer(captions) if captions else None
    if pixels is not None and loaded.device.startswith("cuda"):
        pixels, tokens = pixels.pin_memory(), tokens.pin_memory()
    return PreparedBatch(len(images), rows, pixels, tokens, errors)


# ------------------------------------------------------------------------------------------- scoring


@dataclass
class PairScores:
    """Cosine similarity of image i with caption i (NaN where the pair could not be scored) and why not."""

    scores: np.ndarray  # float32
    errors: list[str | None] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return sum(e is not None for e in self.errors)

    @staticmethod
    def concat(parts: Iterable[PairScores]) -> PairScores:
        parts = list(parts)
        if not parts:
            return PairScores(np.zeros(0, dtype=np.float32), [])
        return PairScores(
            np.concatenate([p.scores for p in parts]).astype(np.float32, copy=False),
            [e for p in parts for e in p.errors],
        )


def _chunks(pairs: Iterable[tuple[bytes | None, str | None]], n: int) -> Iterator[tuple[list, list]]:
    it = iter(pairs)
    while chunk := list(itertools.islice(it, n)):
        images, texts = zip(*chunk)
        yield list(images), list(texts)


class ClipPairScorer:
    """Scores (image bytes, caption) pairs with a loaded model, preparing batch N+1 while batch N runs."""

    def __init__(self, loaded: LoadedClip, batch_size: int = 64, num_workers: int = 2):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.loaded = loaded
        self.batch_size = batch_size
        self.num_workers = max(0, num_workers)

    def iter_batches(
        self, pairs: Iterable[tuple[bytes | None, str | None]], batch_size: int | None = None
    ) -> Iterator[PairScores]:
        """Stream scores batch by batch, in input order; memory stays at ~``num_workers + 1`` batches."""
        chunks = _chunks(pairs, batch_size or self.batch_size)
        if self.num_workers == 0:
            for images, texts in chunks:
                yield self._run(prepare_batch(self.loaded, images, texts))
            return
        pending: deque[Future[PreparedBatch]] = deque()
        with ThreadPoolExecutor(self.num_workers, thread_name_prefix="clip-prep") as pool:
            try:
                for images, texts in chunks:
                    pending.append(pool.submit(prepare_batch, self.loaded, images, texts))
                    # Keep every worker busy plus one batch ready, then consume the oldest: FIFO = input order.
                    if len(pending) > self.num_workers:
                        yield self._run(pending.popleft().result())
                while pending:
                    yield self._run(pending.popleft().result())
            finally:
                for fut in pending:
                    fut.cancel()

    def score_pairs_detailed(
        self, images: Iterable[bytes | None], texts: Iterable[str | None], batch_size: int | None = None
    ) -> PairScores:
        return PairScores.concat(self.iter_batches(zip(images, texts, strict=True), batch_size))

    def score_pairs(
        self, images: Iterable[bytes | None], texts: Iterable[str | None], batch_size: int | None = None
    ) -> np.ndarray:
        """float32 cosine similarities, image i with text i; NaN for pairs that could not be scored."""
        return self.score_pairs_detailed(images, texts, batch_size).scores

    def _run(self, batch: PreparedBatch) -> PairScores:
        scores = np.full(batch.size, np.nan, dtype=np.float32)
        if batch.pixels is not None:
            scores[batch.rows] = self.loaded.cosine(batch.pixels, batch.tokens).numpy()
        return PairScores(scores, batch.errors)


def score_parquet(
    scorer: ClipPairScorer,
    path: str | Path,
    image_col: str = "jpg",
    text_col: str = "caption",
    read_rows: int = 4096,
) -> PairScores:
    """Score a parquet file's (image bytes, caption) columns, reading ``read_rows`` rows at a time.

    The result is in row order, so it can be attached to the file's other columns as a new column.
    """
    import pyarrow.parquet as pq

    def pairs() -> Iterator[tuple[bytes | None, str | None]]:
        with pq.ParquetFile(path) as pf:
            for rb in pf.iter_batches(batch_size=read_rows, columns=[image_col, text_col]):
                yield from zip(rb.column(image_col).to_pylist(), rb.column(text_col).to_pylist())

    return PairScores.concat(scorer.iter_batches(pairs()))
