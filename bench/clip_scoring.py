"""CLIP scoring throughput: how close does scoring from JPEG bytes come to the model's own speed?

Three rates on the same N synthetic 640x480 JPEG pairs:
  1. model only   - pre-decoded, pre-preprocessed, pre-tokenized tensors; forward passes only
  2. end to end   - ``ClipPairScorer.score_pairs`` from JPEG bytes (decode/preprocess overlapped with inference)
  3. naive fp32   - decode -> preprocess -> forward, one batch after another, no draft, no overlap

The weights are random by default (nothing can be downloaded here; speed does not depend on weight values).
Self-contained: needs no sample-world server. Last line: ``clip_end_to_end_vs_model_only: X.XX``.

    python bench/clip_scoring.py                       # ViT-B-32, auto device/precision, 512 pairs
    python bench/clip_scoring.py --device cuda --n 4096 --batch-size 256 --num-workers 8
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from vila_assets.core.clip_scoring import ClipPairScorer, LoadedClip, decode_image, load_clip  # noqa: E402
from vila_assets.sample_world.images import COLORS, SHAPES, caption, encode, render_photo  # noqa: E402


def make_pairs(n: int) -> tuple[list[bytes], list[str]]:
    combos = [(c, s) for c in COLORS for s in SHAPES]
    images, texts = [], []
    for i in range(n):
        c, s = combos[i % len(combos)]
        images.append(encode(render_photo(c, s, seed=5_000_000 + i, width=640, height=480), quality=90))
        texts.append(caption(c, s))
    return images, texts


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def model_only(loaded: LoadedClip, images: list[bytes], texts: list[str], bs: int) -> float:
    batches = [
        (
            torch.stack([loaded.preprocess(decode_image(b, loaded.image_size)) for b in images[i : i + bs]]),
            loaded.tokenizer(texts[i : i + bs]),
        )
        for i in range(0, len(images), bs)
    ]
    if loaded.device.startswith("cuda"):  # same host->device copy as end to end, from pinned memory
        batches = [(p.pin_memory(), t.pin_memory()) for p, t in batches]
    loaded.cosine(*batches[0])  # warm-up
    _sync(loaded.device)
    t0 = time.perf_counter()
    for pixels, tokens in batches:
        loaded.cosine(pixels, tokens)
    _sync(loaded.device)
    return len(images) / (time.perf_counter() - t0)


def end_to_end(scorer: ClipPairScorer, images: list[bytes], texts: list[str]) -> float:
    scorer.score_pairs(images[: scorer.batch_size], texts[: scorer.batch_size])  # warm-up
    _sync(scorer.loaded.device)
    t0 = time.perf_counter()
    scores = scorer.score_pairs(images, texts)
    _sync(scorer.loaded.device)
    elapsed = time.perf_counter() - t0
    assert not np.isnan(scores).any(), "benchmark images must all decode"
    return len(images) / elapsed


def naive(loaded: LoadedClip, images: list[bytes], texts: list[str], bs: int) -> float:
    def batch(i: int):
        pixels = torch.stack([loaded.preprocess(Image.open(io.BytesIO(b)).convert("RGB")) for b in images[i : i + bs]])
        return pixels, loaded.tokenizer(texts[i : i + bs])

    loaded.cosine(*batch(0))  # warm-up
    _sync(loaded.device)
    t0 = time.perf_counter()
    for i in range(0, len(images), bs):
        loaded.cosine(*batch(i))
    _sync(loaded.device)
    return len(images) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default=None, help="tag or weights file; default random weights")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", help="auto|fp32|bf16|fp16 for (1) and (2); (3) is always fp32")
    ap.add_argument("--n", type=int, default=512, help="pairs")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--num-workers", type=int, default=2)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    images, texts = make_pairs(args.n)
    print(f"rendered {args.n} 640x480 JPEG pairs in {time.perf_counter() - t0:.1f}s")
    loaded = load_clip(args.model, args.pretrained, args.device, args.precision)
    print(f"model={args.model} pretrained={args.pretrained} device={loaded.device} precision={loaded.precision} "
          f"batch={args.batch_size} workers={args.num_workers} torch_threads={torch.get_num_threads()} "
          f"cpu_count={os.cpu_count()}")

    mo = model_only(loaded, images, texts, args.batch_size)
    print(f"model_only_pairs_per_s: {mo:.1f}")
    e2e = end_to_end(ClipPairScorer(loaded, args.batch_size, args.num_workers), images, texts)
    print(f"end_to_end_pairs_per_s: {e2e:.1f}")
    fp32 = loaded if loaded.precision == "fp32" else load_clip(args.model, args.pretrained, args.device, "fp32")
    nv = naive(fp32, images, texts, args.batch_size)
    print(f"naive_fp32_pairs_per_s: {nv:.1f}")
    print(f"end_to_end_vs_naive_fp32: {e2e / nv:.2f}")
    print(f"clip_end_to_end_vs_model_only: {e2e / mo:.2f}")


if __name__ == "__main__":
    main()
