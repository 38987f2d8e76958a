"""The data policy a run follows, and the training world size its sharded outputs are laid out for."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from vila_assets.core.policy import DEFAULT_POLICY, Policy


class DataPolicy(dg.ConfigurableResource):
    """``policy``: ``vila`` reproduces VILA's scripts' data from the same inputs; ``curated`` keeps our
    improvements (README, "Data policies"). ``train_world_size``: the number of training ranks the
    sharded outputs (MMC4 pickles, COYO parts, VFLAN chunks) are checked (and, under ``curated``, laid
    out) for. A profile sets both; a run may override them in the launchpad's resources section."""

    policy: Policy = Field(default=DEFAULT_POLICY, description="vila or curated")
    train_world_size: int = Field(default=128, ge=1, description="training ranks (GPUs) reading the shards")

    @property
    def is_vila(self) -> bool:
        return self.policy == Policy.vila

    @property
    def is_curated(self) -> bool:
        return self.policy == Policy.curated
