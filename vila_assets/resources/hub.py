"""Hugging Face hub access as a resource (endpoint, cache and token configurable)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from vila_assets.core.hub import HubLocation


class HubClient(dg.ConfigurableResource):
    """Downloads through ``huggingface_hub``. ``endpoint`` None means the real hub; ``token`` is a secret:
    give it as ``dg.EnvVar("HF_TOKEN")`` (the profiles do), never as a literal. None lets huggingface_hub
    use its own login cache."""

    endpoint: str | None = None
    cache_dir: str | None = None
    token: str | None = None

    @property
    def location(self) -> HubLocation:
        return HubLocation(endpoint=self.endpoint, cache_dir=self.cache_dir, token=self.token)

    def resolve_revision(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> str:
        return self.location.resolve_revision(repo_id, revision, repo_type)

    def list_files(self, repo_id: str, revision: str, repo_type: str = "dataset", pattern: str | None = None) -> list[str]:
        return self.location.list_files(repo_id, revision, repo_type, pattern)

    def download(self, repo_id: str, filename: str, revision: str, repo_type: str = "dataset") -> Path:
        return self.location.download(repo_id, filename, revision, repo_type)
