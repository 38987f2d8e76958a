"""Deployment profiles: one named set of resources per deployment, as in Dagster's fully-featured example.

- ``production``: the real Hugging Face hub, the real pretrained CLIP (ViT-B-32/openai), a local data
  root by default (any fsspec URL, e.g. ``s3://bucket/vila``, makes it an :class:`FsspecDataRoot`).
- ``sample_world``: every source pointed at the bundled sample world on 127.0.0.1 (fake hub, hostile
  image web), the tiny CLIP model with its own threshold, and the small partition ranges the demo runs.

A profile is only data: resources (every source location, revision, size and threshold a run uses, all
visible in the launchpad), the partition ranges the demo materializes, and the demo's run config.
``definitions.py`` picks one by the ``VILA_PROFILE`` setting; tests and the demo build them directly.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from vila_assets.assets.coyo.sources import CoyoSource
from vila_assets.assets.llava.sources import ImageRootsSource, LlavaSource
from vila_assets.assets.mmc4.sources import Mmc4Source
from vila_assets.assets.sharegpt4v.sources import ShareGPT4VSource
from vila_assets.assets.vflan.sources import FlanSource, M3itSource
from vila_assets.resources.clip import ClipScorer
from vila_assets.resources.crawler import ImageCrawler
from vila_assets.resources.hub import HubClient
from vila_assets.resources.policy import DataPolicy
from vila_assets.resources.storage import DataRoot, FsspecDataRoot, LocalDataRoot

PROFILES = ("production", "sample_world")
DEFAULT_PROFILE = "production"
LOOPBACK = "127.0.0.0/8"
WORLD_FILE = "sample_world/world.json"  # under the data root: where a served sample world says where it is


@dataclass(frozen=True)
class Profile:
    """``partitions``: asset group -> the partition keys the demo materializes for that group's
    partitioned assets (a group not named: every key). ``run_config``: op config per asset key string,
    for the demo's runs."""

    name: str
    resources: dict[str, Any]
    partitions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    run_config: dict[str, dict] = field(default_factory=dict)

    @property
    def data_root(self) -> DataRoot:
        return self.resources["data_root"]


def data_root_at(root: str, local_cache: str | None = None, storage_options: dict | None = None) -> DataRoot:
    """A local path gives a :class:`LocalDataRoot`; any other fsspec URL an :class:`FsspecDataRoot`
    working in ``local_cache`` (default ``./data``)."""
    if "://" not in root or root.startswith("file://"):
        return LocalDataRoot(root=str(Path(root.removeprefix("file://")).expanduser().resolve()))
    return FsspecDataRoot(url_root=root, local_cache=local_cache or "./data", storage_options=storage_options or {})


def _hub_token():
    # Only a reference to the secret, resolved by Dagster when the run starts; absent, huggingface_hub
    # falls back to its own login cache.
    return dg.EnvVar("HF_TOKEN") if "HF_TOKEN" in os.environ else None


def _source_resources(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "mmc4_source": Mmc4Source(),
        "coyo_source": CoyoSource(),
        "flan_source": FlanSource(),
        "m3it_source": M3itSource(),
        "llava_source": LlavaSource(),
        "image_roots_source": ImageRootsSource(),
        "sharegpt4v_source": ShareGPT4VSource(),
    }
    base.update(overrides)
    return base


def production(data_root: DataRoot | None = None) -> Profile:
    data_root = data_root or LocalDataRoot()
    cache = data_root.cache()
    return Profile(
        name="production",
        resources={
            "data_root": data_root,
            "hub": HubClient(cache_dir=str(cache / "hf"), token=_hub_token()),
            "crawler": ImageCrawler(),
            "clip": ClipScorer(cache_dir=str(cache / "clip")),
            "data_policy": DataPolicy(),
            **_source_resources(),
        },
    )


# --- the sample world ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldInfo:
    """Where a started sample world is and how big it is: all a profile needs to point at it."""

    endpoint: str  # the fake hub, http://127.0.0.1:<port>
    scale: str = "demo"  # "test" or "demo"
    archive_base: str | None = None  # the archive host (image-root archives at official paths), http://127.0.0.1:<port>

    def save(self, data_root: DataRoot) -> Path:
        from vila_assets.core.vila_format import write_json

        return write_json(data_root.path(WORLD_FILE), asdict(self))

    @classmethod
    def load(cls, data_root: DataRoot) -> WorldInfo:
        path = data_root.path(WORLD_FILE)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no sample world is served for this data root; start one with "
                                    "`vila-assets world --data-root ...`")
        return cls(**json.loads(path.read_text()))


def sample_world(world: WorldInfo, data_root: DataRoot) -> Profile:
    """Everything pointed at the sample world at ``world.endpoint``; outputs under ``data_root``."""
    from vila_assets.sample_world import sizes
    from vila_assets.sample_world.archive_web import image_roots_source
    from vila_assets.sample_world.tiny_clip import TINY_CLIP_REPO, TINY_CLIP_THRESHOLD

    cache = data_root.cache()
    return Profile(
        name="sample_world",
        resources={
            "data_root": data_root,
            "hub": HubClient(endpoint=world.endpoint, cache_dir=str(cache / "hf")),
            # the world's image web is on loopback, which the crawler otherwise refuses
            "crawler": ImageCrawler(allow_networks=[LOOPBACK]),
            "clip": ClipScorer(model=f"hf-hub:{TINY_CLIP_REPO}", pretrained=None, hf_endpoint=world.endpoint,
                               cache_dir=str(cache / "clip"), min_fresh_score=TINY_CLIP_THRESHOLD),
            # a handful of shards per family: a world size they divide
            "data_policy": DataPolicy(train_world_size=sizes.TRAIN_WORLD_SIZE),
            **_source_resources(
                flan_source=FlanSource(sample_size=sizes.flan_sample_size(world.scale)),
                # every official archive host (and OCR-VQA's cover host) mapped to the world's archive host
                image_roots_source=image_roots_source(world.archive_base) if world.archive_base else ImageRootsSource(),
            ),
        },
        partitions={"coyo": sizes.coyo_demo_shards(world.scale)},
        # ~150 samples survive in the sample world: small parts show the equal-size + remainder layout
        run_config={"coyo_split": {"samples_per_part": sizes.COYO_SAMPLES_PER_PART}},
    )


def load_profile(name: str | None = None, data_root: str | None = None) -> Profile:
    """The profile named ``name`` (default ``production``) over the data root ``data_root`` (default
    ``./data``); what ``definitions.py`` calls with the ``VILA_PROFILE`` / ``VILA_DATA_ROOT`` settings."""
    name = name or DEFAULT_PROFILE
    root = data_root_at(data_root or "./data")
    if name == "production":
        return production(root)
    if name == "sample_world":
        return sample_world(WorldInfo.load(root), root)
    raise ValueError(f"unknown profile {name!r}; have {', '.join(PROFILES)}")
