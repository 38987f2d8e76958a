"""One module per dataset family. Each module exposes ``defs``: a ``dagster.Definitions`` of its assets,
checks, partitions and sensors; ``vila_assets.definitions`` merges them."""
