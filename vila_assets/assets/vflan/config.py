"""Run config of the VFLAN assets, with production defaults. Where FLAN and M3IT come from (location,
revision, FLAN sample size and seed) is not here: it is the ``flan_source`` / ``m3it_source`` resources; the
data policy and training world size are the ``data_policy`` resource."""

import dagster as dg


class M3itChecks(dg.Config):
    max_invalid_fraction: float = 0.05  # invalid_records warns above this share of lines


class M3itConfig(dg.Config):
    checks: M3itChecks = M3itChecks()


class VflanChunksChecks(dg.Config):
    max_duplicate_fraction: float = 0.05  # duplicates warns above this share of identical records


class VflanChunksConfig(dg.Config):
    # vila: random.seed(seed) before random.shuffle, as split_vflan.py (VILA: 1); curated: the hash seed
    seed: int = 1
    checks: VflanChunksChecks = VflanChunksChecks()
