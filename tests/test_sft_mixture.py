"""The SFT mixture: manifest + registry over the components as VILA's loaders see them, and rebuilt by its
automation condition whenever a component materializes (evaluated tick by tick on a test instance)."""

import json
import shutil

import dagster as dg
import pytest
import yaml

from vila_assets.sample_world.world import world_env
from tests.test_llava import checks, failure_text, materializations
from vila_assets.assets import llava, sft_mixture, sharegpt4v, vflan
from vila_assets.core.sft_mixture import MixtureError, read_components
from vila_assets.core.vila_format import iter_shard_records, registry_path, write_json, write_pickle_shard
from vila_assets.resources.config import default_resources
from vila_assets.sample_world.world import SampleWorld

SFT = dg.AssetKey("sft_mixture")


def mixture_defs():
    # the real VFLAN asset (for its 128-partition definition); other families stay out of this test
    return dg.Definitions.merge(llava.defs, sharegpt4v.defs, vflan.defs, sft_mixture.defs,
                                dg.Definitions(resources=default_resources()))


def write_vflan(root, n_records=300, salt=""):
    """A VFLAN directory in VILA's sharded-pickle format (as ``vflan_chunks`` writes it), 128 parts, the
    remainder spread over the first parts. Stands in for running FLAN + M3IT here, which costs a minute."""
    directory = registry_path("vflan", root)
    recs = [{"id": f"flan{salt}-{i}", "question": f"Q{i}{salt}?", "answer": f"A{i}", "image": []} for i in range(n_records)]
    base, extra = divmod(n_records, 128)
    start = 0
    for part in range(128):
        size = base + (part < extra)
        write_pickle_shard(directory, f"part-{part:05d}", recs[start : start + size])
        start += size
    return directory


def report_vflan(instance, keys):
    for k in keys:
        instance.report_runless_asset_event(dg.AssetMaterialization("vflan_chunks", partition=k))


def run(defs, instance, keys, run_config=None):
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[dg.AssetKey(k) for k in keys], instance=instance, run_config=run_config, raise_on_error=False
    )


@pytest.fixture(scope="module")
def components(tmp_path_factory):
    """The sample world with mix665k + ShareGPT4V materialized once (real runs) into a data root."""
    base = tmp_path_factory.mktemp("sft")
    with SampleWorld(base / "world", scale="test", families=["llava", "sharegpt4v"], clip=False) as w:
        with world_env(w, base / "root"), dg.instance_for_test() as instance:
            res = run(mixture_defs(), instance, ("sft_image_roots", "llava_mix665k", "sharegpt4v_filtered"))
            assert res.success, failure_text(res)
        yield w, base / "root"


def test_materializing_a_component_triggers_the_rebuild(components, tmp_path):
    world, built_root = components
    root = tmp_path / "root"
    shutil.copytree(built_root / "playground", root / "playground")  # this test rewrites a component
    with world_env(world, root), dg.instance_for_test() as instance:
        defs = mixture_defs()
        keys = vflan.CHUNK_KEYS
        tick = None

        def evaluate():
            nonlocal tick
            tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick and tick.cursor)
            return tick.get_num_requested(SFT)

        assert evaluate() == 0  # nothing exists yet
        # the JSON components were built by the fixture's runs; this instance learns of them as reports
        for key in ("sft_image_roots", "llava_mix665k", "sharegpt4v_filtered"):
            instance.report_runless_asset_event(dg.AssetMaterialization(key))
        write_vflan(root)
        report_vflan(instance, keys[:-1])
        assert evaluate() == 0  # one VFLAN chunk still missing: wait, do not publish a partial VFLAN
        assert evaluate() == 0
        report_vflan(instance, keys[-1:])
        assert evaluate() == 1  # the latched updates fire once the last chunk lands
        res = run(defs, instance, ("sft_mixture",))
        assert res.success, failure_text(res)
        assert all(checks(res).values()) and checks(res)
        first = json.loads((root / "manifests/sft/sft_mixture.json").read_text())
        assert evaluate() == 0  # handled: no second request without a new update

        # a component materializes again (stricter filter -> different content): the mixture is requested
        res = run(defs, instance, ("sharegpt4v_filtered",),
                  {"ops": {"sharegpt4v_filtered": {"config": {"max_sentence_repeats": 10}}}})
        assert res.success
        assert evaluate() == 1
        res = run(defs, instance, ("sft_mixture",))
        assert res.success
        second = json.loads((root / "manifests/sft/sft_mixture.json").read_text())
        a, b = ({c["name"]: c for c in m["components"]} for m in (first, second))
        assert b["sharegpt4v_sft"]["samples"] == a["sharegpt4v_sft"]["samples"] + 1  # the planted loop is kept now
        assert b["sharegpt4v_sft"]["sha256"] != a["sharegpt4v_sft"]["sha256"]
        assert b["vflan"] == a["vflan"] and b["llava_1_5_sft"] == a["llava_1_5_sft"]
        assert evaluate() == 0

        # one VFLAN chunk rewritten (a partition materialization) is a component update too
        report_vflan(instance, keys[5:6])
        assert evaluate() == 1


def test_manifest_and_registry_describe_what_the_loaders_read(components):
    world, root = components
    with world_env(world, root), dg.instance_for_test() as instance:
        defs = mixture_defs()
        res = run(defs, instance, ("sft_mixture",))
        assert not res.success and "vlm-flan-clean-text1m-nosqa-sharded does not exist" in failure_text(res)
        vdir = write_vflan(root, n_records=300)
        res = run(defs, instance, ("sft_mixture",))
        assert res.success, failure_text(res)
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
