"""A 4.6M-parameter open_clip model trained in seconds on the sample world's synthetic photos.

No real CLIP weights can be downloaded here, and a random model scores noise. This one really learns
the sample world's 12 (colour, shape) captions, so the COYO re-score in the sample world separates
matching pairs from planted placeholders and mismatched captions the way real CLIP would on real data.

The folder it writes (``open_clip_config.json`` + ``open_clip_model.safetensors``) loads with
``local-dir:<folder>`` and, when the fake hub serves it as ``TINY_CLIP_REPO``, ``hf-hub:vila-assets/tiny-clip``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vila_assets.core.clip_scoring import decode_image
from vila_assets.sample_world.images import COLORS, SHAPES, caption, encode, render_photo, render_placeholder

TINY_CLIP_REPO = "vila-assets/tiny-clip"
TINY_CLIP_MODEL = f"hf-hub:{TINY_CLIP_REPO}"

# Fresh-score cut for the tiny model: below it, a pair is a placeholder or a mismatch.
# Measured with this config (300 steps, model seeds 0, 1, 2) on 96 unseen photos per seed (the test's 48
# 640x480 JPEGs plus 48 at 800x600, 480x640, 300x300, 1024x683), every photo against all 12 captions:
#   matched p5 0.917 / 0.917 / 0.931 (min 0.70 / 0.90 / 0.85)
#   right colour, wrong shape p95 0.50 / 0.46 / 0.63 (max 0.75 / 0.66 / 0.73)
#   wrong colour p95 0.37 / 0.36 / 0.46 (max 0.55 / 0.52 / 0.59)
#   placeholders (6 sizes x 12 captions) max 0.19 / 0.11 / 0.36
# 0.75 sits in the gap between the worst seed's mismatch p95 (0.63) and its matched p5 (0.92).
# Argmax over the 12 captions was right for all 48 640x480 photos on every seed; at other sizes 2 of 288
# photos (seed 0: blue squares at 800x600 and 256x256) went to "circle".
TINY_CLIP_THRESHOLD = 0.75

PLACEHOLDER_CAPTION = "image not available"
# Training images use seeds below this; tests and the sample world use seeds at or above it.
TRAIN_SEED_LIMIT = 1_000_000

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"

# Vision tower: open_clip's ModifiedResNet (selected by a list of layers): 3-conv stem, one bottleneck per
# stage, attention pool. The earlier 2-layer ViT (width 128, patch 8, avg pool) learnt colours but after
# 300 steps still scored right-colour/wrong-shape captions like matches (median 0.45-0.80); this CNN's training loss
# is below 0.1 by step 150-200. Width 8 was cheaper but confused a low-contrast green triangle on seed 0.
MODEL_CFG: dict = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
PREPROCESS_CFG: dict = {
    "size": 64,
    "mode": "RGB",
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}

# Placeholder renders: the picture is fixed, only its size changes what the 64 px model sees.
_PLACEHOLDER_SIZES = [(640, 480), (480, 640), (800, 600), (500, 500), (320, 240), (1024, 768), (400, 300), (256, 192)]

# Training objective: cosine scaled by a *fixed* temperature. With 1/10 the loss only gets small when the
# matching caption beats the other 12 by a wide cosine margin, which is what makes one global threshold work.
_LOGIT_SCALE = 10.0
_LR = 3e-3
_PER_CAPTION = 2  # batch = 13 captions x 2 images


@dataclass(frozen=True)
class _Sample:
    pixels: torch.Tensor
    label: int  # index into the caption list; the last one is the placeholder caption


def _captions() -> list[str]:
    return [caption(c, s) for c in COLORS for s in SHAPES] + [PLACEHOLDER_CAPTION]


def _training_set(preprocess, seed: int, per_class: int) -> list[_Sample]:
    """Photos of every (colour, shape) at varied sizes and aspect ratios, JPEG round-tripped and decoded
    exactly as the scorer decodes them, plus placeholders at the sizes dead hosts serve."""
    rng = random.Random(seed)
    samples: list[_Sample] = []
    label = 0
    for color in COLORS:
        for shape in SHAPES:
            for k in range(per_class):
                # One in five at real photo sizes: a 640 px JPEG shrunk 10x is far smoother and less noisy than
                # a 150 px render, and without them large photos of squares drifted towards "circle".
                w = rng.randint(320, 720) if k % 5 == 0 else rng.randint(72, 256)
                h = max(64, int(w * rng.choice([0.75, 1.0, 1.33, 0.56, 0.66])))
                img = render_photo(color, shape, seed * 10_000 + k, w, h)
                data = encode(img, quality=rng.randint(60, 95))
                samples.append(_Sample(preprocess(decode_image(data, 64)), label))
            label += 1
    for w, h in _PLACEHOLDER_SIZES:
        for q in (75, 90):
            data = encode(render_placeholder(w, h), quality=q)
            samples.append(_Sample(preprocess(decode_image(data, 64)), label))
    return samples


def train_tiny_clip(out_dir: Path, seed: int = 0, steps: int = 300, per_class: int = 40) -> Path:
    """Train the tiny model and write an open_clip folder to ``out_dir``; returns ``out_dir``.

    Deterministic in ``seed`` up to float summation order across threads.
    """
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2
    if seed * 10_000 + per_class >= TRAIN_SEED_LIMIT:
        raise ValueError("seed too large: training images would collide with the evaluation seeds")
    started = time.perf_counter()
    model = new_tiny_model(seed)
    # Same transform the scorer will use: build it from the config we are about to write.
    preprocess = image_transform_v2(PreprocessCfg(**PREPROCESS_CFG), is_train=False)
    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=MODEL_CFG["text_cfg"]["context_length"])

    samples = _training_set(preprocess, seed, per_class)
    pixels = torch.stack([s.pixels for s in samples])
    labels = torch.tensor([s.label for s in samples])
    captions = _captions()
    tokens = tokenizer(captions)
    # Stratified batches: every caption (placeholder included) appears PER_CAPTION times in every step,
    # so each step is a balanced 13-way contrast and no class is starved.
    by_label = [torch.nonzero(labels == c).flatten() for c in range(len(captions))]
    gen = torch.Generator().manual_seed(seed)
    # The 13 captions only use a handful of the 49408 token rows: keep the (random) token embedding fixed.
    # Updating it densely every step cost as much as the whole vision tower.
    model.token_embedding.weight.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=_LR, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=_LR, total_steps=steps, pct_start=0.1)
    model.train()
    curve: list[float] = []
    for step in range(steps):
        idx = torch.cat([ix[torch.randint(len(ix), (_PER_CAPTION,), generator=gen)] for ix in by_label])
        x = pixels[idx]
        # Horizontal flips keep every shape and colour the same caption.
        flip = torch.rand(len(idx), generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        img = model.encode_image(x, normalize=True)
        txt = model.encode_text(tokens, normalize=True)
        logits = _LOGIT_SCALE * img @ txt.T  # every image against every caption: no duplicate-caption false negatives
        y = labels[idx]
        loss_i2t = F.cross_entropy(logits, y)
        # Text -> image: each caption present in the batch should pick one of its own images.
        present = torch.unique(y)
        t2i = logits.T[present]  # (captions present, batch)
        pos = (y[None, :] == present[:, None]).float()
        loss_t2i = -(torch.logsumexp(t2i.masked_fill(pos == 0, -1e4), 1) - torch.logsumexp(t2i, 1)).mean()
        loss = loss_i2t + loss_t2i
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 25 == 0 or step == steps - 1:
            curve.append(round(loss.item(), 3))
    model.eval()
    with torch.no_grad():
        model.logit_scale.fill_(float(np.log(_LOGIT_SCALE)))

    meta = {
        "trained_by": "vila_assets.sample_world.tiny_clip.train_tiny_clip",
        "seed": seed,
        "steps": steps,
        "loss_curve": curve,
        "train_seconds": round(time.perf_counter() - started, 2),
        "threshold": TINY_CLIP_THRESHOLD,
    }
    return write_open_clip_dir(model, out_dir, meta)


def new_tiny_model(seed: int = 0):
    """The tiny architecture with random weights (for tests of plumbing, not of quality)."""
    import open_clip

    torch.manual_seed(seed)
    return open_clip.CLIP(**MODEL_CFG)


def write_open_clip_dir(model: torch.nn.Module, out_dir: Path, meta: dict | None = None) -> Path:
    """Write the two files that ``local-dir:`` and ``hf-hub:`` loading read."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_NAME))
    config = {"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG, "vila_assets": meta or {}}
    (out_dir / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    return out_dir


def ensure_tiny_clip(cache_dir: Path, seed: int = 0, steps: int = 300) -> Path:
    """The trained model folder under ``cache_dir``, training it once; concurrent callers never see half a folder."""
    cache_dir = Path(cache_dir)
    final = cache_dir / f"tiny-clip-seed{seed}-steps{steps}"
    if (final / CONFIG_NAME).is_file() and (final / WEIGHTS_NAME).is_file():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=cache_dir))
    try:
        train_tiny_clip(tmp, seed=seed, steps=steps)
        try:
            os.rename(tmp, final)  # atomic on one filesystem; fails if another process won the race
        except OSError:
            if not (final / WEIGHTS_NAME).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
