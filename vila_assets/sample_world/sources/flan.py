"""Miniature ``Open-Orca/FLAN``: the 14 ``*_data`` folders of ``part.N.parquet`` files.

Columns as in the real repo: ``inputs, targets, _template_idx, _task_source, _task_name, _template_type``.
``flan_fsopt_data`` has 12 parts, so lexicographic (``part.0, part.1, part.10, part.11, part.2``) and
numeric order differ. Some rows are exact duplicates of earlier ones (real FLAN has many), and a README
and a non-``_data`` folder exist beside the data, as upstream.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from vila_assets.core.flan import FLAN_FOLDERS, FLAN_REPO
from vila_assets.sample_world.sources import SourceContext

# The real dataset's repo and its 14 folders (one list, shared with the reader).
REPO, FOLDERS = FLAN_REPO, FLAN_FOLDERS
MANY_PARTS_FOLDER = "flan_fsopt_data"
_TOPICS = ("rivers", "prime numbers", "the French revolution", "photosynthesis", "chess openings", "volcanoes")
_TASKS = ("anli_r1", "cosmos_qa", "gsm8k", "squad_v1", "wiki_dialog", "task1391_winogrande")


def _row(rng, folder: str, part: int, i: int) -> dict:
    topic = rng.choice(_TOPICS)
    task = rng.choice(_TASKS)
    few_shot = "fs" in folder.split("_")[1]
    q = f"Question {part}.{i} about {topic}: what is the key fact number {rng.randint(1, 999)}?"
    if few_shot:
        q = f"Example: what are {rng.choice(_TOPICS)}? Answer: a topic.\n\n{q}"
    if folder.startswith("cot"):
        q += " Let's think step by step."
    return {
        "inputs": q,
        "targets": f"The answer about {topic} is {rng.randint(1, 10_000)}.",
        "_template_idx": rng.randint(0, 9),
        "_task_source": folder.split("_")[0].capitalize(),
        "_task_name": task,
        "_template_type": folder.split("_")[1].removesuffix("data") or "zsopt",
    }


def build(ctx: SourceContext) -> None:
    root = ctx.repo_dir(REPO)
    (root / "README.md").write_text("# FLAN (miniature)\nThe FLAN collection as parquet parts, one folder per submix.\n")
    (root / "notes").mkdir(exist_ok=True)
    (root / "notes" / "not_data.parquet").write_bytes(b"")  # not under a *_data folder: never read
    rows_per_part = ctx.pick(test=8, demo=150)
    recent: list[dict] = []
    for folder in FOLDERS:
        n_parts = ctx.pick(test=12, demo=12) if folder == MANY_PARTS_FOLDER else ctx.pick(test=2, demo=3)
        (root / folder).mkdir(exist_ok=True)
        for part in range(n_parts):
            rng = ctx.rng("flan", folder, part)
            rows = []
            for i in range(rows_per_part):
                if recent and rng.random() < 0.05:
                    rows.append(dict(rng.choice(recent)))  # an exact duplicate, as upstream has
                else:
                    rows.append(_row(rng, folder, part, i))
            recent = rows[-20:]
            table = pa.Table.from_pylist(rows)
            pq.write_table(table, root / folder / f"part.{part}.parquet", row_group_size=max(1, rows_per_part // 2))
