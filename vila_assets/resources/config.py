"""Default resources, configured from the environment so one code location serves a laptop, the
sample world and a cluster. Variables (all optional):

- ``VILA_DATA_ROOT``: data root path or fsspec URL (default ``./data``)
- ``VILA_HF_ENDPOINT``: Hugging Face endpoint (default: the real hub); ``VILA_HF_CACHE``: download cache
- ``VILA_ALLOW_NETWORKS``: comma-separated CIDRs the crawler may reach despite being private/loopback
- ``VILA_CLIP_MODEL`` / ``VILA_CLIP_PRETRAINED`` / ``VILA_CLIP_DEVICE`` / ``VILA_CLIP_PRECISION``
"""

from __future__ import annotations

import os

from vila_assets.resources.clip import ClipScorer
from vila_assets.resources.crawler import ImageCrawler
from vila_assets.resources.hub import HubClient
from vila_assets.resources.storage import DataRoot


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None else value


def default_resources() -> dict[str, object]:
    root = _env("VILA_DATA_ROOT", "./data")
    data_root = DataRoot(root=root)
    allow = tuple(c.strip() for c in (_env("VILA_ALLOW_NETWORKS", "") or "").split(",") if c.strip())
    pretrained = _env("VILA_CLIP_PRETRAINED", "openai")
    return {
        "data_root": data_root,
        "hub": HubClient(
            endpoint=_env("VILA_HF_ENDPOINT"),
            cache_dir=_env("VILA_HF_CACHE", str(data_root.cache("hf"))),
        ),
        "crawler": ImageCrawler(allow_networks=list(allow)),
        "clip": ClipScorer(
            model=_env("VILA_CLIP_MODEL", "ViT-B-32"),
            pretrained=pretrained or None,
            device=_env("VILA_CLIP_DEVICE", "auto"),
            precision=_env("VILA_CLIP_PRECISION", "auto"),
            cache_dir=str(data_root.cache("clip")),
            hf_endpoint=_env("VILA_HF_ENDPOINT"),
        ),
    }
