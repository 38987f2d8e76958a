"""Hold a sample-world repo's file listing against a layout table transcribed from the real upstream repo.

A family's layout test (``tests/test_layout_<family>.py``) lists, per fake repo, the paths the real repo
has (``required``: exact paths or ``re:`` regular expressions that must each match at least one file) and
what must not be there (``forbidden``). ``only`` (regexes) says which files may exist at all, so the world
cannot grow files of our own invention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RepoLayout:
    repo_id: str
    required: tuple[str, ...]
    forbidden: tuple[str, ...] = ()
    only: tuple[str, ...] = ()  # regexes; when given, every file must match one
    repo_type: str = "dataset"
    notes: dict[str, str] = field(default_factory=dict)  # path -> why (reference tag [V]/[I]/[U])


def listing(hub_root: Path, repo_id: str, repo_type: str = "dataset") -> list[str]:
    root = Path(hub_root) / f"{repo_type}s" / repo_id
    assert root.is_dir(), f"the sample world has no {repo_type} repo {repo_id} under {hub_root}"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _matches(pattern: str, path: str) -> bool:
    return re.fullmatch(pattern[3:], path) is not None if pattern.startswith("re:") else pattern == path


def layout_problems(hub_root: Path, layout: RepoLayout) -> list[str]:
    files = listing(hub_root, layout.repo_id, layout.repo_type)
    problems = [f"{layout.repo_id}: missing {p}" for p in layout.required if not any(_matches(p, f) for f in files)]
    problems += [f"{layout.repo_id}: has forbidden {f} ({p})" for p in layout.forbidden for f in files if _matches(p, f)]
    if layout.only:
        problems += [f"{layout.repo_id}: unexpected file {f}" for f in files
                     if not any(re.fullmatch(p, f) for p in layout.only)]
    return problems
