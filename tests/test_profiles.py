"""Deployment profiles: one setting picks the resources; nothing in the asset layer or the core reads the
environment; secrets are EnvVar references."""

import re
from pathlib import Path

import dagster as dg
import pytest

from vila_assets.profiles import LOOPBACK, WorldInfo, load_profile, production, sample_world
from vila_assets.resources.storage import FsspecDataRoot, LocalDataRoot

PACKAGE = Path(__file__).parents[1] / "vila_assets"


def _python_files(*dirs):
    for d in dirs:
        yield from sorted((PACKAGE / d).rglob("*.py"))


def test_no_environment_reads_in_the_asset_layer_or_the_core():
    pattern = re.compile(r"os\.environ|os\.getenv|getenv\(|environ\[")
    offenders = [f"{p.relative_to(PACKAGE)}:{i}" for p in _python_files("assets", "core")
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_no_asset_module_imports_demo_or_sample_world_code():
    pattern = re.compile(r"^\s*(from|import)\s+vila_assets\.(demo|sample_world)")
    offenders = [f"{p.relative_to(PACKAGE)}:{i}" for p in _python_files("assets", "core", "resources")
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_production_profile_uses_the_real_hub_and_pretrained_clip(tmp_path):
    p = load_profile("production", str(tmp_path))
    assert p.name == "production"
    assert isinstance(p.data_root, LocalDataRoot) and p.data_root.local_base() == tmp_path.resolve()
    assert p.resources["hub"].endpoint is None
    assert (p.resources["clip"].model, p.resources["clip"].pretrained) == ("ViT-B-32", "openai")
    assert p.resources["crawler"].allow_networks == []  # private addresses stay blocked
    assert p.resources["flan_source"].sample_size == 1_000_000
    assert p.partitions == {} and p.run_config == {}


def test_an_fsspec_url_gives_a_remote_data_root(tmp_path):
    p = load_profile("production", "s3://bucket/vila")
    assert isinstance(p.data_root, FsspecDataRoot) and p.data_root.url_root == "s3://bucket/vila"


def test_sample_world_profile_points_every_source_at_the_world(tmp_path):
    root = LocalDataRoot(root=str(tmp_path))
    WorldInfo(endpoint="http://127.0.0.1:1234", scale="test", archive_base="http://127.0.0.1:4321").save(root)
    p = load_profile("sample_world", str(tmp_path))
    assert p.resources["hub"].endpoint == "http://127.0.0.1:1234"
    clip = p.resources["clip"]
    assert clip.model.startswith("hf-hub:") and clip.hf_endpoint == "http://127.0.0.1:1234"
    assert clip.min_fresh_score != production().resources["clip"].min_fresh_score  # the tiny model's own scale
    assert p.resources["crawler"].allow_networks == [LOOPBACK]
    assert p.resources["flan_source"].sample_size < 1_000_000
    mirrors = p.resources["image_roots_source"].mirrors
    assert mirrors and set(mirrors.values()) == {"http://127.0.0.1:4321"}  # every official archive host
    assert p.resources["data_policy"].train_world_size < production().resources["data_policy"].train_world_size


def test_sample_world_profile_without_a_served_world_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="world.json"):
        load_profile("sample_world", str(tmp_path))


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="unknown profile 'staging'"):
        load_profile("staging")


def test_hub_token_is_an_env_var_reference_never_a_value(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    token = production().resources["hub"].token
    assert isinstance(token, dg.EnvVar) and token.env_var_name == "HF_TOKEN"
    monkeypatch.delenv("HF_TOKEN")
    assert production().resources["hub"].token is None


def test_world_info_round_trips(tmp_path):
    root = LocalDataRoot(root=str(tmp_path))
    info = WorldInfo(endpoint="http://127.0.0.1:5", scale="demo")
    info.save(root)
    assert WorldInfo.load(root) == info
    assert sample_world(info, root).name == "sample_world"
