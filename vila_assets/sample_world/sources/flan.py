"""Miniature ``Open-Orca/FLAN`` with the real repo's layout (reference: upstream-sources §4).

- 14 Dask folders ``{cot,dialog}_{fs,zs}opt_data``, ``flan_{fs,zs}{opt,noopt}_data``, ``niv2_{fs,zs}opt_data``,
  ``t0_{fs,zs}{opt,noopt}_data`` holding only ``part.N.parquet`` (N not zero-padded). ``flan_fsopt_data`` has
  12 parts, so VILA's string order (``part.0, part.1, part.10, part.11, part.2``) and numeric order differ;
  ``cot_fsopt_data`` has a single ``part.0.parquet``, as upstream.
- Columns as upstream: ``inputs, targets, _template_idx, _task_source, _task_name, _template_type``.
  Some rows are exact duplicates of earlier ones (real FLAN has many).
- Beside the folders, the files VILA's whole-repo download fetches but never reads: six top-level
  ``*_submix_data.json`` files (small here; tens of GB upstream), ``README.md``, ``OOFlanLogo.png`` and
  ``.gitattributes``.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from vila_assets.sample_world.sources import SourceContext

REPO = "Open-Orca/FLAN"
# Written out here, independently of the reader's list, so the world does not copy the reader's view.
FOLDERS = (
    "cot_fsopt_data", "cot_zsopt_data", "dialog_fsopt_data", "dialog_zsopt_data",
    "flan_fsnoopt_data", "flan_fsopt_data", "flan_zsnoopt_data", "flan_zsopt_data",
    "niv2_fsopt_data", "niv2_zsopt_data",
    "t0_fsnoopt_data", "t0_fsopt_data", "t0_zsnoopt_data", "t0_zsopt_data",
)
MANY_PARTS_FOLDER = "flan_fsopt_data"
SINGLE_PART_FOLDER = "cot_fsopt_data"
UNUSED_JSONS = (
    "cot_zs_submix_data.json", "flan2021_zsnoopt_submix_data.json", "flan2021_zsopt_submix_data.json",
    "niv2_zs_submix_data.json", "t0_zsnoopt_submix_data.json", "t0_zsopt_submix_data.json",
)
_TOPICS = ("rivers", "prime numbers", "the French revolution", "photosynthesis", "chess openings", "volcanoes")
_TASKS = ("anli_r1", "cosmos_qa", "gsm8k", "squad_v1", "wiki_dialog", "task1391_winogrande")
_GITATTRIBUTES = "*.parquet filter=lfs diff=lfs merge=lfs -text\n*.json filter=lfs diff=lfs merge=lfs -text\n" \
                 "*.png filter=lfs diff=lfs merge=lfs -text\n"


def _row(rng, folder: str, part: int, i: int) -> dict:
    topic = rng.choice(_TOPICS)
    task = rng.choice(_TASKS)
    few_shot = "fs" in folder.split("_")[1]
    q = f"Question {folder}.{part}.{i} about {topic}: what is the key fact number {rng.randint(1, 999)}?"
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


def _n_parts(ctx: SourceContext, folder: str) -> int:
    if folder == MANY_PARTS_FOLDER:
        return 12
    if folder == SINGLE_PART_FOLDER:
        return 1
    return ctx.pick(test=2, demo=3)


def _write_folders(ctx: SourceContext, root) -> None:
    rows_per_part = ctx.pick(test=8, demo=150)
    recent: list[dict] = []
    for folder in FOLDERS:
        (root / folder).mkdir(exist_ok=True)
        for part in range(_n_parts(ctx, folder)):
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


def _write_top_level(ctx: SourceContext, root) -> None:
    (root / "README.md").write_text("# FLAN (miniature)\nThe FLAN collection as Dask Parquet folders, one per submix.\n")
    (root / ".gitattributes").write_text(_GITATTRIBUTES)
    logo = io.BytesIO()
    Image.new("RGB", (16, 16), (240, 120, 20)).save(logo, format="PNG")
    (root / "OOFlanLogo.png").write_bytes(logo.getvalue())
    for name in UNUSED_JSONS:  # never read by VILA: their names contain "_data" but do not end in it
        rng = ctx.rng("flan-json", name)
        (root / name).write_text(json.dumps([_row(rng, "flan_zsopt_data", 0, i) for i in range(2)]))


def build(ctx: SourceContext) -> None:
    root = ctx.repo_dir(REPO)
    _write_top_level(ctx, root)
    _write_folders(ctx, root)
