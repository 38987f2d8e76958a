"""Checks of the MMC4 assets (convention: ``vila_assets.assets._checks``): evaluated per shard in the
asset body, one result per run naming the failing shards. Thresholds: the ``checks`` sections of
``config.py``."""

from vila_assets.assets._checks import Check

IMAGE_YIELD = Check(
    "image_yield_above_threshold",
    "ok images / images of valid docs >= checks.min_image_yield, for every shard of the run",
    blocking=True)
DOC_YIELD = Check(
    "doc_yield_above_threshold",
    "docs written / docs read >= checks.min_doc_yield, for every shard of the run",
    blocking=True)
NO_EXACT_DUPLICATES = Check(
    "no_exact_duplicate_images",
    "no two images of a written shard have the same JPEG bytes (sha256), read back from the pickle (one URL "
    "serving two slots of a doc is not a duplicate); enforced where dedup is on (curated), counted otherwise",
    blocking=True)
# Near duplicates are the web's (re-encoded copies), not ours to fix: reported, never blocking.
NEAR_DUPLICATE_RATE = Check(
    "near_duplicate_rate_bounded",
    "share of images with a pHash neighbour (hamming <= checks.near_duplicate_distance) "
    "<= checks.max_near_duplicate_rate",
    warn=True)
VILA_CONTRACT = Check(
    "vila_contract",
    "LazyMMC4Dataset can read the shard, read back from disk: .pkl/.count paired and equal, only pairs in "
    "pkl-core, text_list present, image_base64 decodes as JPEG -> RGB, matched_text_index in range, "
    "similarity_matrix rows >= images",
    blocking=True)

# VILA's loader gives each rank a contiguous block of n_shards // world_size shards and cuts every rank to
# the shortest: one pickle per source shard loses records there. Reported under both policies, not fixed.
USABLE_AT_WORLD_SIZE = Check(
    "usable_at_train_world_size",
    "records VILA's loader reads from the whole published pkl-core at data_policy.train_world_size / records "
    "there >= checks.min_usable_share (read from the .count files)",
    warn=True)

IMAGES_CHECKS = (IMAGE_YIELD,)
CORE_SHARD_CHECKS = (DOC_YIELD, NO_EXACT_DUPLICATES, NEAR_DUPLICATE_RATE, VILA_CONTRACT, USABLE_AT_WORLD_SIZE)
