"""Data policies: chosen per profile, overridable per run, and documented by a table generated from code."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest

from vila_assets.core.policy import FAMILY_MODULES, README_MARKERS, Policy, as_policy, differences, differences_markdown
from vila_assets.resources.policy import DataPolicy

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = README_MARKERS


def test_readme_policy_table_is_the_generated_one():
    text = README.read_text()
    assert START in text and END in text, "README lacks the data-policy table markers"
    table = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert table == differences_markdown(), ("README's policy table differs from the code; regenerate it with "
                                              "`python -m vila_assets.core.policy --update-readme README.md`")


def test_every_family_declares_its_differences():
    families = {d.family for d in differences()}
    for name in ("MMC4", "COYO", "FLAN", "M3IT", "VFLAN", "ShareGPT4V"):
        assert any(name in f for f in families), f"no policy row for {name}"
    for d in differences():
        assert d.step and d.vila_script and d.vila and d.curated


def test_family_modules_import():
    import importlib

    for name in FAMILY_MODULES:
        importlib.import_module(name)


def test_policy_names():
    assert as_policy("vila") is Policy.vila and as_policy(Policy.curated) is Policy.curated
    with pytest.raises(ValueError, match="unknown data policy 'strict'"):
        as_policy("strict")


def test_a_run_overrides_the_profile_policy():
    seen = []

    @dg.asset
    def probe(data_policy: DataPolicy) -> None:
        seen.append((data_policy.policy, data_policy.train_world_size))

    profile_default = DataPolicy(train_world_size=4)
    assert dg.materialize([probe], resources={"data_policy": profile_default}).success
    # Run config replaces the resource's whole config (Dagster does not merge it with the bound values):
    # a run that picks a policy names the world size too, as the README says.
    override = {"resources": {"data_policy": {"config": {"policy": "vila", "train_world_size": 4}}}}
    assert dg.materialize([probe], resources={"data_policy": profile_default}, run_config=override).success
    assert seen == [(Policy.curated, 4), (Policy.vila, 4)]


def test_markdown_escapes_cells():
    assert all(re.fullmatch(r"\|.*\|", line) for line in differences_markdown().splitlines())
