"""Run config of the MMC4 assets, with production defaults; check thresholds in ``checks`` sections.
Which rules merge a shard is the ``data_policy`` resource's choice; the switches here tune ``curated``."""

import dagster as dg


class AnnotationsConfig(dg.Config):
    strict: bool = False  # raise on the first invalid doc (file:line) instead of counting it


class ImagesChecks(dg.Config):
    # ok images / images of valid docs; the live web loses ~40-50 % of MMC4 links
    min_image_yield: float = 0.4


class ImagesConfig(dg.Config):
    recrawl: bool = False  # crawl again even if samples.parquet was made from the same input and settings
    checks: ImagesChecks = ImagesChecks()


class CoreShardChecks(dg.Config):
    min_doc_yield: float = 0.15  # docs written / docs read (all-or-nothing on today's web: ~0.2-0.3)
    near_duplicate_distance: int = 3  # pHash hamming distance counted as a near duplicate
    max_near_duplicate_rate: float = 0.1
    # records VILA's loader reads from pkl-core at data_policy.train_world_size / records there (a warning)
    min_usable_share: float = 0.95


class CoreShardConfig(dg.Config):
    # curated only (vila is all-or-nothing): keep docs with >= 1 surviving image, dropping the failed ones
    keep_partial_docs: bool = True
    # curated only (VILA never deduplicates): byte-identical images across a shard's docs, first kept wins
    dedup_images: bool = True
    checks: CoreShardChecks = CoreShardChecks()
