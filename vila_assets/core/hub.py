"""Downloads from a Hugging Face hub through ``huggingface_hub``: revision-pinned, cached, endpoint-aware.

The endpoint is passed explicitly on every call (``huggingface_hub`` reads ``HF_ENDPOINT`` only at import
time), so one process can talk to the real hub or to the sample world's loopback hub.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError


class HubError(RuntimeError):
    """A hub download or listing failed; the message names the repo, revision and file."""


@dataclass(frozen=True)
class HubLocation:
    endpoint: str | None = None  # None -> huggingface.co (or HF_ENDPOINT as read at import)
    cache_dir: str | None = None
    token: str | None = None

    def api(self) -> HfApi:
        return HfApi(endpoint=self.endpoint, token=self.token)

    def resolve_revision(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> str:
        """The commit sha that ``revision`` names now; pin downstream reads to it."""
        try:
            info = self.api().repo_info(repo_id, revision=revision, repo_type=repo_type)
        except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
            raise HubError(f"{repo_type} {repo_id}@{revision}: {exc}") from exc
        if not info.sha:
            raise HubError(f"{repo_type} {repo_id}@{revision}: hub returned no commit sha")
        return info.sha

    def list_files(
        self, repo_id: str, revision: str, repo_type: str = "dataset", pattern: str | None = None
    ) -> list[str]:
        """Sorted file paths in the repo at ``revision`` (optionally only those matching a glob)."""
        try:
            files = self.api().list_repo_files(repo_id, revision=revision, repo_type=repo_type)
        except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
            raise HubError(f"{repo_type} {repo_id}@{revision}: {exc}") from exc
        if pattern:
            files = [f for f in files if fnmatch.fnmatchcase(f, pattern)]
        return sorted(files)

    def download(self, repo_id: str, filename: str, revision: str, repo_type: str = "dataset") -> Path:
        """Download (or reuse from cache) one file; returns its local path."""
        try:
            path = hf_hub_download(
                repo_id,
                filename,
                repo_type=repo_type,
                revision=revision,
                cache_dir=self.cache_dir,
                endpoint=self.endpoint,
                token=self.token,
            )
        except EntryNotFoundError as exc:
            raise HubError(f"{repo_type} {repo_id}@{revision}: no file {filename!r}") from exc
        except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
            raise HubError(f"{repo_type} {repo_id}@{revision} ({filename}): {exc}") from exc
        return Path(path)
