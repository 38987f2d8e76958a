"""Run config of the MMC4 assets, with production defaults; check thresholds in ``checks`` sections."""

from typing import Literal

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
    min_doc_yield: float = 0.15  # docs written / docs read (all_or_nothing on today's web: ~0.2-0.3)
    near_duplicate_distance: int = 3  # pHash hamming distance counted as a near duplicate
    max_near_duplicate_rate: float = 0.1


class CoreShardConfig(dg.Config):
    # all_or_nothing: VILA's rule (a doc survives only with every image); partial keeps docs with >= 1
    filter_policy: Literal["all_or_nothing", "partial"] = "all_or_nothing"
    checks: CoreShardChecks = CoreShardChecks()
