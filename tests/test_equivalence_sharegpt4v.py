"""The ``vila`` policy gives what VILA's own steps give for ShareGPT4V, record for record and byte for byte.

VILA's steps (data README; registry, reference notes §6): download ``mit-han-lab/ShareGPT4V``; v1's
``sharegpt4v_sft`` reads ``./playground/data/sharegpt4v/sharegpt4v_mix738k_remove_sa.json``, and 1.5's
``sharegpt4v_pretrain`` reads ``./playground/data/ShareGPT4V/jason-filter-share-captioner_...json``, which is
the hub's ``filter-share-captioner_...json`` under an internal name. :func:`vila_steps` transcribes that with
``huggingface_hub`` alone, none of this project's code. The ``curated`` policy differs exactly where
``POLICY_DIFFERENCES`` says it does.
"""

import json
import re
from pathlib import Path

import dagster as dg
import pytest

from tests.dagster_runs import check_results, checks_passed, defs_for, failure_text, materializations, run
from vila_assets.assets.sharegpt4v.checks import CHECKS
from vila_assets.core import policy
from vila_assets.core.sharegpt4v import POLICY_DIFFERENCES, FilterRules
from vila_assets.sample_world.sources import sharegpt4v as s4_world
from vila_assets.sample_world.world import SampleWorld

SFT = "playground/data/sharegpt4v/sharegpt4v_mix738k_remove_sa.json"
PT = "playground/data/ShareGPT4V/jason-filter-share-captioner_coco_lcs_sam_1246k_1107.json"
VILA_RUN = {"resources": {"data_policy": {"config": {"policy": "vila"}}}}


def vila_steps(endpoint: str, work) -> dict[str, bytes]:
    """VILA's README and registry, transcribed: ``huggingface-cli download mit-han-lab/ShareGPT4V
    --repo-type dataset``, then the file each registry entry names (the PT file renamed to its registry
    name). Returns ``{registry path: bytes}``."""
    from huggingface_hub import snapshot_download

    local = Path(snapshot_download("mit-han-lab/ShareGPT4V", repo_type="dataset", endpoint=endpoint,
                                   cache_dir=work / "hf-cache", local_dir=work / "download"))
    return {SFT: (local / "sharegpt4v_mix738k_remove_sa.json").read_bytes(),
            PT: (local / "filter-share-captioner_coco_lcs_sam_1246k_1107.json").read_bytes()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with SampleWorld(tmp_path_factory.mktemp("s4-eq-world"), scale="test", clip=False,
                     families=["llava", "sharegpt4v"]) as w:
        yield w


@pytest.fixture(scope="module")
def runs(world, tmp_path_factory):
    """One vila run (policy chosen per run, on a fresh root: it needs no mix665k) and one curated run."""
    roots = {p: tmp_path_factory.mktemp(f"s4-eq-{p}") / "root" for p in ("vila", "curated")}
    with dg.instance_for_test() as instance:
        vila = run(defs_for(world, roots["vila"]), instance, ("sharegpt4v_filtered",), run_config=VILA_RUN)
        curated = run(defs_for(world, roots["curated"]), instance, ("llava_mix665k", "sharegpt4v_filtered"))
    return {"vila": (roots["vila"], vila), "curated": (roots["curated"], curated)}


@pytest.mark.slow
def test_vila_policy_gives_what_vilas_steps_give(world, runs, tmp_path):
    root, result = runs["vila"]
    assert result.success, failure_text(result)
    expected = vila_steps(world.endpoint, tmp_path)
    for rel, data in expected.items():
        published = (root / rel).read_bytes()
        assert json.loads(published) == json.loads(data), rel  # the same records in the same order
        assert published == data, rel  # and the same bytes
    md = materializations(result)["sharegpt4v_filtered"]
    assert md["policy"] == "vila" and md["records"] == len(json.loads(expected[SFT]))
    assert md["pretrain_records"] == len(json.loads(expected[PT]))
    assert not (root / "playground/data/llava_v1_5_mix665k.json").exists()


@pytest.mark.slow
def test_vila_checks_vouch_for_fidelity_and_report_what_curated_rules_would_remove(world, runs):
    _, result = runs["vila"]
    passed = checks_passed(result)
    assert {k for k in passed if k.startswith("sharegpt4v_filtered:")} == {f"sharegpt4v_filtered:{c.name}" for c in CHECKS}
    results = check_results(result)
    # warn-level findings are upstream facts; everything the vila policy promises holds
    assert all(v for k, v in passed.items() if results[k].severity == dg.AssetCheckSeverity.ERROR), passed
    assert passed["sharegpt4v_filtered:recombination"]  # no detail-23k sample left in VILA's SFT file
    rules = results["sharegpt4v_filtered:no_rule_violations"].metadata
    assert rules["enforced"].value is False
    violations = rules["violations"].value
    # the loops and duplicates VILA's filter (our stand-in) let through are what the curated rules catch
    sft = json.loads((runs["vila"][0] / SFT).read_text())
    caps, answer = s4_world.cap100k_records(world.ctx)
    in_sft = {r["id"] for r in sft}
    for rule in ("phrase_loop", "duplicate_conversation"):
        planted = sum(1 for rid, why in answer.items() if why == rule and rid in in_sft)
        assert planted > 0 and violations.get(f"sharegpt4v_mix738k_remove_sa.json:{rule}") == planted, rule


@pytest.mark.slow
def test_curated_differs_from_vila_exactly_where_declared(world, runs):
    (vroot, _), (croot, curated) = runs["vila"], runs["curated"]
    assert curated.success, failure_text(curated)
    assert materializations(curated)["sharegpt4v_filtered"]["policy"] == "curated"
    vila = {r["id"]: r for r in json.loads((vroot / SFT).read_text())}
    ours = {r["id"]: r for r in json.loads((croot / SFT).read_text())}
    _, answer = s4_world.cap100k_records(world.ctx)
    # vila only: what the curated rules remove (phrase loops, duplicates)
    assert set(vila) - set(ours) and all(answer.get(rid) in ("phrase_loop", "duplicate_conversation")
                                         for rid in set(vila) - set(ours))
    # curated only: SAM-id near misses (visa_2024, usa_7) that VILA's broader filter drops and ours keeps
    sam = re.compile(FilterRules().sam_id_pattern)
    only_ours = [ours[rid] for rid in set(ours) - set(vila)]
    assert only_ours and all(re.search(r"sa_\d", r["conversations"][1]["value"]) and
                             not sam.search(r["conversations"][1]["value"]) for r in only_ours)
    # everything else is the same record
    assert all(vila[rid] == ours[rid] for rid in set(vila) & set(ours))


def test_the_family_declares_its_policy_differences():
    assert "vila_assets.core.sharegpt4v" in policy.FAMILY_MODULES
    rows = [d for d in policy.differences() if d.family == "ShareGPT4V"]
    assert rows == list(POLICY_DIFFERENCES) and len(rows) >= 3
    assert all(d.step and d.vila_script and d.vila and d.curated for d in rows)
    assert all(d.vila.startswith("same") for d in rows)  # vila publishes VILA's data unchanged
    table = policy.differences_markdown()
    assert all(d.step.replace("|", "\\|") in table for d in rows)
