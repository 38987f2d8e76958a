"""Data policies: ``vila`` reproduces what VILA's scripts make from the same inputs; ``curated`` keeps our
improvements. Both are first-class; a deployment profile picks one, a run may pick the other.

Every difference between VILA's scripts, the ``vila`` policy and the ``curated`` policy is declared by
the family that makes it (``POLICY_DIFFERENCES`` in its core module, a tuple of :class:`Difference`);
:func:`differences` collects them and :func:`differences_markdown` renders the README's table, which a
test holds against the README.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from enum import Enum


class Policy(str, Enum):
    vila = "vila"  # member names are what run config and the launchpad show
    curated = "curated"


DEFAULT_POLICY = Policy.curated

# the core modules that declare POLICY_DIFFERENCES, in README order
FAMILY_MODULES = (
    "vila_assets.core.mmc4_merge",
    "vila_assets.core.coyo",
    "vila_assets.core.flan",
    "vila_assets.core.m3it",
    "vila_assets.core.vflan",
    "vila_assets.core.sharegpt4v",
    "vila_assets.core.llava_json",
    "vila_assets.core.image_roots",
    "vila_assets.core.train_layout",
)


@dataclass(frozen=True)
class Difference:
    """One step where VILA's script, the ``vila`` policy and the ``curated`` policy may differ."""

    family: str
    step: str
    vila_script: str  # what VILA's script does
    vila: str  # what the vila policy does ("same" when identical to the script's data)
    curated: str  # what the curated policy does


def differences() -> list[Difference]:
    rows: list[Difference] = []
    for name in FAMILY_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        rows.extend(getattr(mod, "POLICY_DIFFERENCES", ()))
    return rows


def differences_markdown() -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| family | step | VILA's script | `vila` | `curated` |", "|---|---|---|---|---|"]
    for d in differences():
        lines.append(f"| {cell(d.family)} | {cell(d.step)} | {cell(d.vila_script)} | {cell(d.vila)} | "
                     f"{cell(d.curated)} |")
    return "\n".join(lines)


def as_policy(value: Policy | str) -> Policy:
    try:
        return Policy(value.value if isinstance(value, Policy) else value)
    except ValueError:
        raise ValueError(f"unknown data policy {value!r}; have {', '.join(p.value for p in Policy)}") from None


README_MARKERS = ("<!-- policy-table:start -->", "<!-- policy-table:end -->")


def update_readme(path: str) -> None:
    """Rewrite the table between the README's policy-table markers."""
    from vila_assets.core.atomic import atomic_write_text

    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    start, end = README_MARKERS
    if start not in text or end not in text:
        raise ValueError(f"{path}: no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    atomic_write_text(path, f"{head}{start}\n{differences_markdown()}\n{end}{tail}")


if __name__ == "__main__":  # `python -m vila_assets.core.policy [--update-readme README.md]`
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--update-readme":
        update_readme(sys.argv[2])
    else:
        print(differences_markdown())
