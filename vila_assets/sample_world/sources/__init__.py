"""Format-faithful miniature sources, one module per dataset family.

Each module defines ``build(ctx: SourceContext) -> None`` that writes its hub repos under
``ctx.repo_dir(repo_id)`` using the same repo ids, file names and record shapes as the real datasets.
Image URLs point at the hostile image web (``ctx.image_base``). Everything is a pure function of
``ctx.seed``, ``ctx.scale`` and ``ctx.image_base``.
"""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
import random
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

SCALES = ("test", "demo")


@dataclass(frozen=True)
class SourceContext:
    hub_root: Path
    image_base: str
    seed: int = 0
    scale: str = "demo"

    def repo_dir(self, repo_id: str, repo_type: str = "dataset") -> Path:
        d = self.hub_root / f"{repo_type}s" / repo_id
        d.mkdir(parents=True, exist_ok=True)
        return d

    def rng(self, *key: object) -> random.Random:
        """A ``random.Random`` seeded from the world seed and ``key`` (stable across Python versions)."""
        digest = hashlib.sha256(repr((self.seed, *key)).encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "little"))

    def pick(self, test: int, demo: int) -> int:
        """A size by scale: small for tests, larger for the demo."""
        return test if self.scale == "test" else demo


def builders() -> list[ModuleType]:
    """Every source module, in name order."""
    mods = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "build"):
            mods.append(mod)
    return mods
