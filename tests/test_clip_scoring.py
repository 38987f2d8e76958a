"""CLIP scoring plumbing: loading, devices, precision, bad bytes, ordering, GPU pod tags.

Uses the tiny architecture with random weights (instant); quality is tested in test_tiny_clip.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vila_assets.core import clip_scoring
from vila_assets.core.clip_scoring import ClipPairScorer, load_clip, resolve_device, resolve_precision
from vila_assets.resources.clip import ClipScorer, gpu_op_tags
from vila_assets.sample_world.images import COLORS, SHAPES, caption, encode, render_photo, render_placeholder
from vila_assets.sample_world.tiny_clip import new_tiny_model, write_open_clip_dir


@pytest.fixture(scope="module")
def random_tiny_dir(tmp_path_factory):
    return write_open_clip_dir(new_tiny_model(seed=3), tmp_path_factory.mktemp("tiny-random"))


@pytest.fixture(scope="module")
def pairs():
    combos = [(c, s) for c in COLORS for s in SHAPES]
    images = [encode(render_photo(c, s, seed=3_000_000 + i, width=320, height=240)) for i, (c, s) in enumerate(combos)]
    texts = [caption(c, s) for c, s in combos]
    return images, texts


def test_device_auto_is_cpu_without_gpu_and_cuda_with_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    with pytest.raises(ValueError):
        resolve_device("tpu")


def test_precision_auto_follows_device_and_cpu_bf16_hardware(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "cuda") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "cuda") == "fp16"
    monkeypatch.setattr(clip_scoring, "cpu_has_fast_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(clip_scoring, "cpu_has_fast_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError):
        resolve_precision("int8", "cpu")


def test_local_dir_without_weights_refuses_to_score_with_a_random_model(tmp_path, random_tiny_dir):
    (tmp_path / "open_clip_config.json").write_text((random_tiny_dir / "open_clip_config.json").read_text())
    with pytest.raises(FileNotFoundError):
        load_clip(f"local-dir:{tmp_path}", None, device="cpu")


def test_undecodable_and_missing_images_get_nan_and_a_reason(random_tiny_dir, pairs):
    images, texts = pairs
    scorer = ClipPairScorer(load_clip(f"local-dir:{random_tiny_dir}", None, "cpu", "fp32"), batch_size=4, num_workers=2)
    bad = [images[0], b"\xff\xd8\xff\xe0 truncated jpeg", images[1], b"", None, b"<html>404</html>", images[2]]
    result = scorer.score_pairs_detailed(bad, texts[: len(bad)])
    assert result.scores.dtype == np.float32
    assert np.isnan(result.scores[[1, 3, 4, 5]]).all()
    assert np.isfinite(result.scores[[0, 2, 6]]).all()
    assert result.errors[0] is None and result.errors[6] is None
    assert result.errors[1].startswith("undecodable image")
    assert result.errors[3] == result.errors[4] == "missing image bytes"
    assert result.n_failed == 4


def test_overlapped_workers_keep_input_order(random_tiny_dir, pairs):
    images, texts = pairs
    loaded = load_clip(f"local-dir:{random_tiny_dir}", None, "cpu", "fp32")
    # Reference: one pair at a time, no thread pool.
    one_by_one = np.array([ClipPairScorer(loaded, 1, 0).score_pairs([i], [t])[0] for i, t in zip(images, texts)])
    # Shuffle captions so every pair has a distinct score pattern, then score with prefetching workers.
    rolled = texts[5:] + texts[:5]
    ref_rolled = np.array([ClipPairScorer(loaded, 1, 0).score_pairs([i], [t])[0] for i, t in zip(images, rolled)])
    overlapped = ClipPairScorer(loaded, batch_size=5, num_workers=3)
    np.testing.assert_allclose(overlapped.score_pairs(images, texts), one_by_one, atol=1e-5)
    np.testing.assert_allclose(overlapped.score_pairs(images, rolled), ref_rolled, atol=1e-5)
    assert not np.allclose(one_by_one, ref_rolled)


def test_bf16_scores_track_fp32(random_tiny_dir, pairs):
    images, texts = pairs
    rolled = texts[1:] + texts[:1]
    fp32 = ClipPairScorer(load_clip(f"local-dir:{random_tiny_dir}", None, "cpu", "fp32"), 8)
    bf16 = ClipPairScorer(load_clip(f"local-dir:{random_tiny_dir}", None, "cpu", "bf16"), 8)
    assert next(bf16.loaded.model.parameters()).dtype == torch.bfloat16
    a = np.concatenate([fp32.score_pairs(images, texts), fp32.score_pairs(images, rolled)])
    b = np.concatenate([bf16.score_pairs(images, texts), bf16.score_pairs(images, rolled)])
    assert np.abs(a - b).max() < 0.05


def test_resource_loads_once_and_describes_what_runs(random_tiny_dir, pairs):
    images, texts = pairs
    res = ClipScorer(model=f"local-dir:{random_tiny_dir}", pretrained=None, device="auto", batch_size=4)
    scores = res.score_pairs(images + [encode(render_placeholder())], texts + ["a photo of a red circle"])
    assert scores.shape == (len(images) + 1,) and np.isfinite(scores).all()
    assert res.loaded() is res.loaded()
    desc = res.describe()
    assert desc["device"] == "cpu" and desc["precision"] in ("fp32", "bf16")
    assert desc["model"] == f"local-dir:{random_tiny_dir}" and desc["batch_size"] == 4


def test_gpu_op_tags_build_a_k8s_job_requesting_one_gpu():
    from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

    # Dagster stores non-string op tag values as JSON strings; dagster-k8s reads them back from that.
    tags = {k: v if isinstance(v, str) else json.dumps(v) for k, v in gpu_op_tags().items()}
    user_config = get_user_defined_k8s_config(tags)
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image="vila-assets:test", dagster_home="/opt/dagster/dagster_home", instance_config_map="dagster-instance"),
        ["dagster", "api", "execute_step"],
        "vila-clip-step",
        user_config,
    )
    resources = job.spec.template.spec.containers[0].resources
    assert resources.limits["nvidia.com/gpu"] == "1"
    assert resources.requests["nvidia.com/gpu"] == "1"
