"""The sample-world demo against a real S3-compatible server on 127.0.0.1 (moto in server mode): every
family publishes through the fsspec data root, and what is read back from the bucket follows VILA's
layout rules."""

from __future__ import annotations

import json
import pickle

import pytest

from tests.s3_server import S3Server
from vila_assets.core import vila_format as vf
from vila_assets.demo import run_demo
from vila_assets.resources.storage import REMOTE_TMP, FsspecDataRoot

# One output per family, as VILA's registry names it (plus the SFT manifest).
FAMILY_OUTPUTS = {
    "llava cc3m": "playground/data/LLaVA-Pretrain/LLaVA-CC3M-Pretrain-595K.json",
    "llava mix665k": "playground/data/llava_v1_5_mix665k.json",
    "sharegpt4v": "playground/data/sharegpt4v/sharegpt4v_mix738k_remove_sa.json",
    "sft mixture": "manifests/sft/sft_mixture.json",
}
SHARD_DIRS = ("mmc4core", "coyo", "vflan")


@pytest.mark.slow
def test_demo_publishes_every_family_to_s3(tmp_path, monkeypatch, dagster_instance, tiny_clip_cache):
    with S3Server(monkeypatch) as s3:
        prefix = f"{s3.bucket}/vila"
        root = FsspecDataRoot(url_root=f"s3://{prefix}", local_cache=str(tmp_path / "work"),
                              storage_options=s3.storage_options)
        summary = run_demo(tmp_path / "work", scale="test", instance=dagster_instance,
                           data_root_resource=root, model_cache=tiny_clip_cache)
        assert summary.success, summary.render()
        fs = s3.fs()
        stored = {p.removeprefix(prefix + "/") for p in fs.find(prefix)}
        for family, rel in FAMILY_OUTPUTS.items():
            assert rel in stored, f"{family}: {rel} not in the bucket"
        assert not [p for p in stored if p.startswith(REMOTE_TMP + "/")], "temporary objects left behind"
        # read every sharded output back from the bucket into an empty folder, then check it as VILA would
        readback = tmp_path / "readback"
        for name in SHARD_DIRS:
            rel = vf.REGISTRY[name].data_path.removeprefix("./")
            names = sorted(p for p in stored if p.startswith(rel + "/"))
            assert names, f"{name}: nothing under {rel}"
            for p in names:
                (readback / p).parent.mkdir(parents=True, exist_ok=True)
                (readback / p).write_bytes(fs.cat_file(f"{prefix}/{p}"))
            local = readback / rel
            assert vf.validate_shard_dir(local) == [], name
            for shard in vf.loader_shards(local):
                with open(shard.pkl, "rb") as fh:
                    assert len(pickle.load(fh)) == shard.count
        # the bucket holds the same bytes as the working copy (published, not just written locally)
        for rel in FAMILY_OUTPUTS.values():
            assert fs.cat_file(f"{prefix}/{rel}") == (tmp_path / "work" / rel).read_bytes()
        json.loads(fs.cat_file(f"{prefix}/{FAMILY_OUTPUTS['llava mix665k']}"))
