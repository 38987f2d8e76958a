"""The SFT mixture: manifest + registry over the components as VILA's loaders see them, and rebuilt by its
automation condition whenever a component materializes (evaluated tick by tick on a test instance)."""

import json
import shutil

import dagster as dg
import pytest
import yaml

from tests.dagster_runs import check_results, checks_passed, defs_for, failure_text, materializations, op_config, run
from vila_assets.assets.sft_mixture.checks import CHECKS
from vila_assets.assets.vflan.partitions import CHUNK_KEYS
from vila_assets.core.llava_json import sha256_file
from vila_assets.core.sft_mixture import MixtureError, read_components
from vila_assets.core.vila_format import iter_shard_records, loader_shards, registry_path, write_json, write_pickle_shard
from vila_assets.resources.policy import DataPolicy
from vila_assets.sample_world.sizes import TRAIN_WORLD_SIZE
from vila_assets.sample_world.sources import sharegpt4v as s4_world
from vila_assets.sample_world.world import SampleWorld

SFT = dg.AssetKey("sft_mixture")
COMPONENT_ASSETS = ("llava_mix665k", "sharegpt4v_filtered")


def write_vflan(root, n_records=300, salt=""):
    """A VFLAN directory in VILA's sharded-pickle format (as ``vflan_chunks`` writes it), 128 parts, the
    remainder spread over the first parts. Stands in for running FLAN + M3IT here, which costs a minute."""
    directory = registry_path("vflan", root)
    recs = [{"id": f"flan{salt}-{i}", "question": f"Q{i}{salt}?", "answer": f"A{i}", "image": []} for i in range(n_records)]
    base, extra = divmod(n_records, len(CHUNK_KEYS))
    start = 0
    for part in range(len(CHUNK_KEYS)):
        size = base + (part < extra)
        write_pickle_shard(directory, f"part-{part:05d}", recs[start : start + size])
        start += size
    return directory


def report_vflan(instance, keys):
    for k in keys:
        instance.report_runless_asset_event(dg.AssetMaterialization("vflan_chunks", partition=k))


def assert_mixture_checks_pass(result):
    passed = checks_passed(result)
    assert set(passed) == {f"sft_mixture:{c.name}" for c in CHECKS}, passed  # one result per declared check
    assert all(passed.values()), {k: v.description for k, v in check_results(result).items()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The sample world's SFT sources (LLaVA, ShareGPT4V, FLAN, M3IT), shared by this module."""
    with SampleWorld(tmp_path_factory.mktemp("sft-world"), scale="test", clip=False,
                     families=["flan", "llava", "m3it", "sharegpt4v"]) as w:
        yield w


@pytest.fixture(scope="module")
def components(world, tmp_path_factory):
    """mix665k + ShareGPT4V materialized once (real runs) into a data root."""
    root = tmp_path_factory.mktemp("sft") / "root"
    with dg.instance_for_test() as instance:
        res = run(defs_for(world, root), instance, COMPONENT_ASSETS)
        assert res.success, failure_text(res)
    return world, root


@pytest.mark.slow
def test_materializing_a_component_triggers_the_rebuild(components, tmp_path):
    world, built_root = components
    root = tmp_path / "root"
    shutil.copytree(built_root / "playground", root / "playground")  # this test rewrites a component
    defs = defs_for(world, root)
    with dg.instance_for_test() as instance:
        tick = None

        def evaluate():
            nonlocal tick
            tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick and tick.cursor)
            return tick.get_num_requested(SFT)

        assert evaluate() == 0  # nothing exists yet
        # the JSON components were built by the fixture's runs; this instance learns of them as reports
        for key in COMPONENT_ASSETS:
            instance.report_runless_asset_event(dg.AssetMaterialization(key))
        write_vflan(root)
        report_vflan(instance, CHUNK_KEYS[:-1])
        assert evaluate() == 0  # one VFLAN chunk still missing: wait, do not publish a partial VFLAN
        assert evaluate() == 0
        report_vflan(instance, CHUNK_KEYS[-1:])
        assert evaluate() == 1  # the latched updates fire once the last chunk lands
        res = run(defs, instance, ("sft_mixture",))
        assert res.success, failure_text(res)
        assert_mixture_checks_pass(res)
        first = json.loads((root / "manifests/sft/sft_mixture.json").read_text())
        assert evaluate() == 0  # handled: no second request without a new update

        # a component materializes again (looser filter -> different content): the mixture is requested
        res = run(defs, instance, ("sharegpt4v_filtered",),
                  run_config=op_config("sharegpt4v_filtered", loop_min_repeats=10))
        assert res.success, failure_text(res)
        assert evaluate() == 1
        res = run(defs, instance, ("sft_mixture",))
        assert res.success, failure_text(res)
        assert_mixture_checks_pass(res)
        second = json.loads((root / "manifests/sft/sft_mixture.json").read_text())
        a, b = ({c["name"]: c for c in m["components"]} for m in (first, second))
        loops = sum(1 for rule in s4_world.cap100k_records(world.ctx)[1].values() if rule == "phrase_loop")
        assert loops > 0 and b["sharegpt4v_sft"]["samples"] == a["sharegpt4v_sft"]["samples"] + loops  # kept now
        assert b["sharegpt4v_sft"]["sha256"] != a["sharegpt4v_sft"]["sha256"]
        assert b["vflan"] == a["vflan"] and b["llava_1_5_sft"] == a["llava_1_5_sft"]
        assert evaluate() == 0

        # one VFLAN chunk rewritten (a partition materialization) is a component update too
        report_vflan(instance, CHUNK_KEYS[5:6])
        assert evaluate() == 1


@pytest.mark.slow
def test_manifest_and_registry_describe_what_the_loaders_read(components, tmp_path):
    world, built_root = components
    root = tmp_path / "root"
    shutil.copytree(built_root / "playground", root / "playground")
    defs = defs_for(world, root)
    with dg.instance_for_test() as instance:
        res = run(defs, instance, ("sft_mixture",))
        assert not res.success and "vlm-flan-clean-text1m-nosqa-sharded does not exist" in failure_text(res)
        vdir = write_vflan(root, n_records=300)
        res = run(defs, instance, ("sft_mixture",))
        assert res.success, failure_text(res)
        assert_mixture_checks_pass(res)
        md = materializations(res)["sft_mixture"]
        manifest_bytes = (root / "manifests/sft/sft_mixture.json").read_bytes()
        # rerun: byte-identical manifest
        assert run(defs, instance, ("sft_mixture",)).success
        assert (root / "manifests/sft/sft_mixture.json").read_bytes() == manifest_bytes

    manifest = json.loads(manifest_bytes)
    comps = {c["name"]: c for c in manifest["components"]}
    for name in ("llava_1_5_sft", "sharegpt4v_sft"):
        with open(registry_path(name, root)) as fh:  # LazySupervisedDataset: json.load of a list
            assert comps[name]["samples"] == len(json.load(fh)) == md[f"samples_{name}"]
    # LazyVFlanDataset (sharded): .count = length, question/answer/image
    vrecs = list(iter_shard_records(vdir))
    assert comps["vflan"]["samples"] == len(vrecs) == 300 and comps["vflan"]["files"] == 128
    assert all(isinstance(r["question"], str) and r["image"] == [] for _, r in vrecs)
    assert manifest["mixtures"]["vflan_sharegpt4v_sft"]["samples"] == 300 + comps["sharegpt4v_sft"]["samples"]
    assert md["samples"] == manifest["mixtures"]["vflan_sharegpt4v_sft"]["samples"]

    datasets = yaml.safe_load((root / "manifests/sft/registry/datasets.yaml").read_text())
    assert datasets["sharegpt4v_sft"] == {
        "_target_": "llava.data.LLaVADataset",
        "data_path": "./playground/data/sharegpt4v/sharegpt4v_mix738k_remove_sa.json",
        "media_dir": "./playground/data",
    }
    assert datasets["vflan"]["data_path"] == "./playground/data/vlm-flan-clean-text1m-nosqa-sharded"
    for entry in datasets.values():
        assert (root / entry["data_path"]).exists()
    mixtures = yaml.safe_load((root / "manifests/sft/registry/mixtures.yaml").read_text())
    assert mixtures["vflan_sharegpt4v_sft"] == ["vflan", "sharegpt4v_sft"]
    assert not list((root / "playground").rglob("*.yaml"))  # nothing non-VILA inside playground/


def test_broken_vflan_directory_is_refused_naming_the_problem(tmp_path):
    for name in ("llava_1_5_sft", "sharegpt4v_sft"):
        write_json(registry_path(name, tmp_path), [])
    vdir = write_vflan(tmp_path, n_records=10)
    (vdir / "README.txt").write_text("extra file skews n_shards")
    with pytest.raises(MixtureError, match=r"README.txt: not a .pkl/.count file"):
        read_components(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["curated", "vila"])
def test_the_whole_sft_chain_builds_from_the_sample_world_under_each_policy(world, tmp_path, policy):
    """Every component for real (FLAN, M3IT, VFLAN chunks, mix665k, ShareGPT4V; no stand-ins), then the
    mixture, whose manifest describes what each policy published."""
    defs = defs_for(world, tmp_path, data_policy=DataPolicy(policy=policy, train_world_size=TRAIN_WORLD_SIZE))
    with dg.instance_for_test() as instance:
        for assets, keys in ((("flan_1m", "m3it_tasks", "llava_mix665k", "sharegpt4v_filtered"), None),
                             (("vflan_chunks",), CHUNK_KEYS), (("sft_mixture",), None)):
            res = run(defs, instance, assets, keys)
            assert res.success, (assets, failure_text(res))
    assert_mixture_checks_pass(res)
    manifest = json.loads((tmp_path / "manifests/sft/sft_mixture.json").read_text())
    comps = {c["name"]: c for c in manifest["components"]}
    vdir = registry_path("vflan", tmp_path)
    assert comps["vflan"]["samples"] == sum(s.count for s in loader_shards(vdir)) > 0
    sft = registry_path("sharegpt4v_sft", tmp_path)
    assert comps["sharegpt4v_sft"]["sha256"] == sha256_file(sft)
    published = world.hub_root / "datasets" / s4_world.MIT_REPO / s4_world.MIX738K
    # vila: VILA's own file; curated: our recombination of the raw captions
    assert (sha256_file(sft) == sha256_file(published)) == (policy == "vila")
    assert manifest["mixtures"]["vflan_sharegpt4v_sft"]["samples"] == (
        comps["vflan"]["samples"] + comps["sharegpt4v_sft"]["samples"])
