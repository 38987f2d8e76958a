"""The pinned dependency set is what is installed (an unpinned dagster-k8s resolves a 2021 release)."""

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

PINS = {
    "dagster": "1.13.27",
    "dagster-webserver": "1.13.27",
    "dagster-k8s": "0.29.27",
    "torch": "2.14.1",
    "torchvision": "0.29.1",
    "open_clip_torch": "3.3.0",
}


@pytest.mark.parametrize("dist,expected", sorted(PINS.items()))
def test_installed_version_matches_pin(dist, expected):
    # torch wheels carry a local build tag (2.14.1+cu130): compare the public part.
    assert version(dist).split("+")[0] == expected


def test_pyproject_pins_the_resolving_set():
    deps = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["dependencies"]
    for dist, expected in PINS.items():
        assert f"{dist}=={expected}" in deps, f"{dist} must be pinned to {expected}"


def test_dagster_k8s_is_the_modern_release():
    import dagster_k8s

    assert version("dagster-k8s").startswith("0.29.")
    assert hasattr(dagster_k8s, "K8sRunLauncher")
