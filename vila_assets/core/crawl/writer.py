"""The samples.parquet contract: schema and fixed writer settings (deterministic bytes)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

SAMPLE_STATUSES = ("ok", "failed_download", "failed_decode", "filtered", "opted_out", "blocked")

SAMPLES_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("caption", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("http_status", pa.int32()),
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("orig_width", pa.int32()),
        pa.field("orig_height", pa.int32()),
        pa.field("sha256", pa.string()),
        pa.field("phash", pa.string()),
        pa.field("image", pa.binary()),
    ]
)
# Checkpoint chunks carry the input index (the resume key) and the downloaded byte count as well.
CHUNK_SCHEMA = pa.schema([pa.field("index", pa.int64(), nullable=False), *SAMPLES_SCHEMA, pa.field("nbytes", pa.int64())])

ROW_GROUP_ROWS = 512
# JPEG bytes do not compress; everything else is small text that does. Fixed settings = fixed bytes.
_COMPRESSION = {name: ("none" if name == "image" else "zstd") for name in SAMPLES_SCHEMA.names}


def rows_to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def open_writer(path, schema: pa.Schema) -> pq.ParquetWriter:
    if schema is CHUNK_SCHEMA:
        # Checkpoint chunks are read back once, by the assembly: no compression, dictionaries or
        # statistics to compute (they cost more than the write itself).
        return pq.ParquetWriter(path, schema, compression="none", use_dictionary=False, write_statistics=False)
    return pq.ParquetWriter(
        path,
        schema,
        compression={n: _COMPRESSION[n] for n in schema.names},
        compression_level=None,
        use_dictionary=["status", "error"],
        write_statistics=[n for n in schema.names if n not in ("image", "phash", "sha256", "caption", "url")],
    )


def write_table(path, rows: list[dict], schema: pa.Schema) -> None:
    table = rows_to_table(rows, schema)
    with open_writer(path, schema) as writer:
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
