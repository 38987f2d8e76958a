"""Where FLAN and M3IT come from, and how big the FLAN sample is."""

from __future__ import annotations

import dagster as dg

from vila_assets.core.flan import DEFAULT_SAMPLE_SIZE, FLAN_REPO
from vila_assets.core.m3it import M3IT_REPO


class FlanSource(dg.ConfigurableResource):
    """``Open-Orca/FLAN`` at ``revision``; ``sample_size`` rows are sampled (VILA: 1M of ~378M) with
    ``seed`` (a different seed gives a different sample)."""

    repo: str = FLAN_REPO
    revision: str = "main"
    sample_size: int = DEFAULT_SAMPLE_SIZE
    seed: int = 0


class M3itSource(dg.ConfigurableResource):
    """``MMInstruction/M3IT`` at ``revision``."""

    repo: str = M3IT_REPO
    revision: str = "main"
