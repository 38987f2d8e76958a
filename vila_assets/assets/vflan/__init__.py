"""VFLAN for SFT: a seeded FLAN 1M sample, the 14 M3IT tasks, and the 128 shuffled chunks VILA trains on.

Assets (group ``vflan``; files named in ``layout.py``):

- ``flan_1m``: every ``*_data`` folder of ``Open-Orca/FLAN`` sampled to ``flan_source.sample_size`` rows
  (VILA: 1,000,000) by a seeded hash of (file path, row) -> the per-file ``text_flan_1m.pkl`` + Parquet
  copy in staging. Repo, revision, size and seed: the ``flan_source`` resource. See ``core.flan``.
- ``m3it_tasks``: the 14 M3IT tasks VILA uses, read from the task files (``m3it_source`` resource) ->
  ``{type}_{name}_train.pkl`` (+ Parquet copies) in staging; unusable records listed in a manifest.
  See ``core.m3it``.
- ``vflan_chunks``: FLAN + M3IT shuffled by a seeded hash of (file, row) into VILA's 128 chunks
  ``part-%05d.pkl`` + ``.count`` at VILA's registry path (nothing else in that directory), one partition
  per chunk (``partitions.py``: a backfill of all chunks is one run that scans the sources once). The
  shuffle index and per-chunk manifests (for the duplicate report) are manifests. See ``core.vflan``.

The per-file pickles stay in staging (why: ``core.vflan`` docstring). Checks: ``checks.py``; their
thresholds and the shuffle seed: ``config.py``.
"""

import dagster as dg

from vila_assets.assets.vflan.assets import flan_1m, m3it_tasks, vflan_chunks
from vila_assets.assets.vflan.partitions import CHUNK_KEYS

__all__ = ["CHUNK_KEYS", "defs", "flan_1m", "m3it_tasks", "vflan_chunks"]

defs = dg.Definitions(assets=[flan_1m, m3it_tasks, vflan_chunks])
