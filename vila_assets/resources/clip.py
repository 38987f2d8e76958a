"""CLIP scoring as a resource: which model, on which device, at which precision; plus GPU step tags.

The model is loaded lazily, once per process and spec (``load_clip_cached``), so several assets or
partitions materialized in one process share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np

if TYPE_CHECKING:  # torch and open_clip load on first use: code servers and the daemon never need them
    from vila_assets.core.clip_scoring import ClipModelSpec, ClipPairScorer, LoadedClip, PairScores


class ClipScorer(dg.ConfigurableResource):
    """Cosine similarity of (image bytes, caption) pairs with an open_clip model.

    ``model``: open_clip name (with ``pretrained`` tag), ``hf-hub:org/name`` or ``local-dir:/path``.
    ``device``/``precision``: ``auto`` picks cuda + bf16 on a GPU, and bf16 on a CPU only where it has
    bf16 hardware (else fp32).
    """

    model: str = "ViT-B-32"
    pretrained: str | None = "openai"
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 64
    num_workers: int = 2
    cache_dir: str | None = None
    hf_endpoint: str | None = None
    # Fresh-score threshold: a property of the model's score scale, so it lives with the model. 0.28 is
    # LAION-5B's English cut for ViT-B-32/openai (COYO's own vitb32 column averages 0.291; placeholders and
    # unrelated pictures score ~0.1-0.2). Another model needs its own value (the sample world's tiny CLIP
    # has its measured TINY_CLIP_THRESHOLD).
    min_fresh_score: float = 0.28

    @property
    def spec(self) -> ClipModelSpec:
        from vila_assets.core.clip_scoring import ClipModelSpec

        return ClipModelSpec(self.model, self.pretrained, self.device, self.precision, self.cache_dir, self.hf_endpoint)

    def loaded(self) -> LoadedClip:
        from vila_assets.core.clip_scoring import load_clip_cached

        return load_clip_cached(self.spec)

    def core(self) -> ClipPairScorer:
        from vila_assets.core.clip_scoring import ClipPairScorer

        return ClipPairScorer(self.loaded(), self.batch_size, self.num_workers)

    def score_pairs(
        self, images: Iterable[bytes | None], texts: Iterable[str | None], batch_size: int | None = None
    ) -> np.ndarray:
        """float32 cosine of image i with text i; NaN where the image could not be decoded."""
        return self.core().score_pairs(images, texts, batch_size)

    def score_pairs_detailed(
        self, images: Iterable[bytes | None], texts: Iterable[str | None], batch_size: int | None = None
    ) -> PairScores:
        """Scores plus, per pair, ``None`` or the reason it got NaN."""
        return self.core().score_pairs_detailed(images, texts, batch_size)

    def iter_batches(
        self, pairs: Iterable[tuple[bytes | None, str | None]], batch_size: int | None = None
    ) -> Iterator[PairScores]:
        """Streaming variant for inputs that do not fit in memory; batches come back in input order."""
        return self.core().iter_batches(pairs, batch_size)

    def describe(self) -> dict[str, str | int | None]:
        """Model, weights, device and precision actually used (loads the model), for asset metadata."""
        return {**self.loaded().describe(), "batch_size": self.batch_size, "num_workers": self.num_workers,
                "min_fresh_score": self.min_fresh_score}


def gpu_op_tags(gpus: int = 1) -> dict[str, dict]:
    """Op tags that make dagster-k8s run a step in a pod with ``gpus`` NVIDIA GPUs (limit and request).

    Pass as ``op_tags=`` on a GPU asset; Dagster serializes dict values to the JSON string that
    ``dagster_k8s.job.get_user_defined_k8s_config`` parses.
    """
    gpu = {"nvidia.com/gpu": str(gpus)}
    return {"dagster-k8s/config": {"container_config": {"resources": {"limits": gpu, "requests": gpu}}}}
