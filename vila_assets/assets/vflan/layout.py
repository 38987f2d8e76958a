"""Where VFLAN's files live under the data root: the one place that names them.

    staging/vflan/new-vflan/<stem>.pkl        per-file VILA pickles (VILA's split script read ``new-vflan``)
    staging/vflan/parquet/<stem>.parquet      their row-addressable copies + ``<stem>.json`` sidecars
    staging/vflan/spill/<run id>/             scratch of one vflan_chunks run (never published)
    manifests/vflan/m3it_invalid.parquet      M3IT records we could not use, with file, line and reason
    manifests/vflan/shuffle_plan.parquet      the shuffle index: (source, row) -> position, chunk
    manifests/vflan/chunks/part-%05d.parquet  per-chunk manifests (the duplicate report reads them)
    playground/data/vlm-flan-clean-text1m-nosqa-sharded/part-%05d.{pkl,count}   what VILA trains on
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vila_assets.core.vflan import PerFileLayout, chunk_manifest_path, chunk_stem
from vila_assets.core.vila_format import registry_path
from vila_assets.resources.storage import DataRoot

FAMILY = "vflan"
REGISTRY_NAME = "vflan"


@dataclass(frozen=True)
class VflanLayout:
    data_root: DataRoot

    # --- per-file outputs of flan_1m and m3it_tasks ------------------------------------------------------

    @property
    def per_file(self) -> PerFileLayout:
        """The per-file directories as ``core.vflan`` takes them."""
        return PerFileLayout(self.data_root.staging(FAMILY, "new-vflan"), self.data_root.staging(FAMILY, "parquet"))

    def per_file_outputs(self, stem: str) -> tuple[Path, Path, Path]:
        """Pickle, Parquet copy and sidecar of one source file."""
        per_file = self.per_file
        return per_file.pickle(stem), per_file.parquet(stem), per_file.sidecar(stem)

    @property
    def m3it_invalid(self) -> Path:
        return self.data_root.manifests(FAMILY, "m3it_invalid.parquet")

    # --- vflan_chunks ------------------------------------------------------------------------------------

    @property
    def shuffle_plan(self) -> Path:
        return self.data_root.manifests(FAMILY, "shuffle_plan.parquet")

    @property
    def chunk_manifests(self) -> Path:
        return self.data_root.manifests(FAMILY, "chunks")

    def chunk_manifest(self, chunk: int) -> Path:
        return chunk_manifest_path(self.chunk_manifests, chunk)

    def spill(self, run_id: str) -> Path:
        return self.data_root.staging(FAMILY, "spill", run_id)

    @property
    def chunks_dir(self) -> Path:
        """VILA's registry directory for VFLAN: only ``.pkl``/``.count`` pairs may live here."""
        return registry_path(REGISTRY_NAME, self.data_root.path())

    def chunk_count(self, chunk: int) -> Path:
        return self.chunks_dir / f"{chunk_stem(chunk)}.count"
