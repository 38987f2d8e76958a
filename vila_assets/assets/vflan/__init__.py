"""VFLAN for SFT: FLAN sampled to 1M rows, the 14 M3IT tasks, and the shuffled parts VILA trains on.

Every asset follows the ``data_policy`` resource: ``vila`` reproduces VILA's scripts' data from the same
inputs, ``curated`` keeps our improvements (the differences: ``POLICY_DIFFERENCES`` in ``core.flan``,
``core.m3it`` and ``core.vflan``). Sources are resources (``flan_source``, ``m3it_source``): a hub repo, a
local directory or an fsspec URL. Files: ``layout.py``.

- ``flan_1m``: the ``*_data`` folders of ``Open-Orca/FLAN`` sampled to ``flan_source.sample_size`` rows
  (VILA: 1,000,000) -> ``text_flan_1m.pkl`` + Parquet copy in staging. vila: VILA's ``torch.linspace``
  rows over VILA's file order; curated: a seeded hash of (file path, row). Both stream. See ``core.flan``.
- ``m3it_tasks``: the 14 M3IT tasks VILA uses, read from the task files (per-task names and fields in
  ``core.m3it.TASKS``) -> ``{type}_{name}_train.pkl`` (+ Parquet copies); problem records listed in a
  manifest.
- ``vflan_chunks``: FLAN + M3IT shuffled into ``part-%05d.pkl`` + ``.count`` at VILA's registry path
  (nothing else in that directory), one partition per part (``partitions.py``). vila: ``split_vflan.py``'s
  ``random.seed(1)`` shuffle and ``N // 128``-record parts (remainder dropped and reported; below 16,384
  records VILA writes more than 128 parts, and partition ``00127`` writes those past it); curated: a
  seeded shuffle laid out for ``data_policy.train_world_size`` so every record is usable. The shuffle
  index and per-part manifests (for the duplicate report) are manifests. See ``core.vflan``.

The per-file pickles stay in staging (why: ``core.vflan`` docstring). Checks: ``checks.py``; their
thresholds and the shuffle seed: ``config.py``.
"""

import dagster as dg

from vila_assets.assets.vflan.assets import flan_1m, m3it_tasks, vflan_chunks
from vila_assets.assets.vflan.partitions import CHUNK_KEYS

__all__ = ["CHUNK_KEYS", "defs", "flan_1m", "m3it_tasks", "vflan_chunks"]

defs = dg.Definitions(assets=[flan_1m, m3it_tasks, vflan_chunks])
