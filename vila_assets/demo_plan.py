"""How a family tells the demo what to materialize on the sample world (no Dagster objects here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DemoStep:
    """One in-process run: ``assets`` (asset key strings, "a/b" for multi-part keys) over ``partitions``.

    ``partitions`` None means unpartitioned; a list of keys runs them as ONE ranged run (first..last in
    the partitions definition's order), the way a ``BackfillPolicy`` batches a backfill.
    ``dynamic_partitions`` maps a dynamic partitions-def name to keys to register before the run.
    """

    name: str
    assets: tuple[str, ...]
    partitions: tuple[str, ...] | None = None
    run_config: dict[str, Any] = field(default_factory=dict)
    dynamic_partitions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    order: int = 100  # lower runs first; families use it to respect cross-family lineage
