"""Shared test fixtures. Servers bind 127.0.0.1 only; nothing here touches any other address.

One sample world (every family, test scale) and one tiny CLIP training per test session: tests that
only read the world share ``sample_world``; tests that edit the world's files start their own with
``make_world`` (same trained model, no retraining).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from vila_assets.sample_world.world import SampleWorld

# Keep huggingface_hub away from the real hub and from the user's cache, before anything imports it.
os.environ.setdefault("HF_HUB_OFFLINE", "0")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def tiny_clip_cache(tmp_path_factory) -> Path:
    """One tiny CLIP training per test session, shared by every world that needs it."""
    return tmp_path_factory.mktemp("tiny-clip-cache")


@pytest.fixture(scope="session")
def sample_world(tmp_path_factory, tiny_clip_cache) -> Iterator[SampleWorld]:
    """The whole sample world at test scale, read-only for the tests that share it."""
    with SampleWorld(tmp_path_factory.mktemp("sample-world"), scale="test", model_cache=tiny_clip_cache) as world:
        yield world


@pytest.fixture
def make_world(tmp_path_factory, tiny_clip_cache):
    """A private world a test may edit: ``make_world(families=[...], clip=False)``; stopped after the test."""
    worlds = []

    def make(**kwargs) -> SampleWorld:
        kwargs.setdefault("scale", "test")
        kwargs.setdefault("model_cache", tiny_clip_cache)
        world = SampleWorld(tmp_path_factory.mktemp("own-world"), **kwargs).start()
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        world.stop()


@pytest.fixture
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance
