"""Synthetic data at scale for benchmarks and memory tests (the sample world's sources are small and
hand-planted; these are big and random). Never used by the assets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vila_assets.core.atomic import atomic_path
from vila_assets.core.coyo import COYO_SCHEMA


def write_synthetic_shard(path: str | os.PathLike[str], rows: int, seed: int = 0, chunk_rows: int = 500_000) -> Path:
    """A COYO-schema shard of ``rows`` random rows, written in chunks (bench and memory tests).

    Scores are rounded to 3 decimals, so there are many ties; about a quarter of rows pass the 0.6 gate,
    like the real data (column means 0.291 / 0.255).
    """
    rng = np.random.default_rng(seed)
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, COYO_SCHEMA, compression="snappy") as writer:
        for start in range(0, rows, chunk_rows):
            m = min(chunk_rows, rows - start)
            ids = (np.arange(start, start + m, dtype=np.int64) * 7919 + seed) % 10**13
            words = rng.integers(3, 20, m)
            cols = {
                "id": ids,
                "url": [f"https://img{int(i) % 97}.example.com/{int(i):013d}.jpg" for i in ids],
                "text": [f"picture number {int(i)} of a thing" for i in ids],
                "width": rng.integers(200, 2000, m).astype(np.int32),
                "height": rng.integers(200, 2000, m).astype(np.int32),
                "image_phash": [f"{int(x):016x}" for x in rng.integers(0, 2**63, m)],
                "text_length": (words * 6).astype(np.int32),
                "word_count": words.astype(np.int32),
                "num_tokens_bert": (words + 2).astype(np.int32),
                "num_tokens_gpt": (words + 1).astype(np.int32),
                "num_faces": rng.integers(0, 3, m).astype(np.int32),
                "clip_similarity_vitb32": rng.normal(0.301, 0.05, m).round(3).astype(np.float32),
                "clip_similarity_vitl14": rng.normal(0.265, 0.05, m).round(3).astype(np.float32),
                "nsfw_score_opennsfw2": rng.random(m).astype(np.float32) * 0.1,
                "nsfw_score_gantman": rng.random(m).astype(np.float32) * 0.1,
                "watermark_score": rng.random(m).astype(np.float32) * 0.3,
                "aesthetic_score_laion_v2": rng.normal(4.8, 0.6, m).astype(np.float32),
            }
            writer.write_table(pa.table(cols, schema=COYO_SCHEMA), row_group_size=128_000)
    return Path(path)
