"""Shared test fixtures. Servers bind 127.0.0.1 only; nothing here touches any other address."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from vila_assets.sample_world.world import world_env  # noqa: F401  (re-exported for tests)

# Keep huggingface_hub away from the real hub and from the user's cache, before anything imports it.
os.environ.setdefault("HF_HUB_OFFLINE", "0")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def tiny_clip_cache(tmp_path_factory) -> Path:
    """One tiny CLIP training per test session, shared by every world that needs it."""
    return tmp_path_factory.mktemp("tiny-clip-cache")


@pytest.fixture
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance
