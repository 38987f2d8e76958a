"""Checks of the COYO assets (convention: ``vila_assets.assets._checks``); thresholds in ``config.py``."""

from vila_assets.assets._checks import Check

SELECTION_CORRECT = Check(
    "selection_correct",
    "re-checked against the shard: every selected row is above the gate and at or above the cut, rank order "
    "is the policy's (score desc, then file order under vila, id under curated), count = int(0.2 n) or every "
    "passing row",
    blocking=True)
ENOUGH_ROWS_PASS_GATE = Check(
    "enough_rows_pass_gate",
    "more than 20 % of the shard's rows pass vitb32 + vitl14 > 0.6 (VILA asserts this and stops the shard; we "
    "select what passes and report the shard here)",
    warn=True)
IDS_UNIQUE = Check(
    "ids_unique",
    "no id repeats among the shard's rows above the gate (repeats are kept under vila, as VILA keeps them, "
    "and left out under curated; either way they are named here)",
    warn=True)
DOWNLOAD_YIELD = Check(
    "download_yield", "downloaded / selected >= checks.min_download_yield, for every shard of the run")
FRESH_SCORE_DISTRIBUTION = Check(
    "fresh_score_distribution",
    "every downloaded pair got a fresh score (undecodable share <= checks.max_unscorable_rate); the "
    "fresh-score histogram is in the metadata (vila: nothing is scored, so nothing can fail)",
    blocking=True)
DUPLICATE_RATES_BOUNDED = Check(
    "duplicate_rates_bounded",
    "kept pairs: exact (sha256) and near (pHash <= 4 bits) duplicate rates within "
    "checks.max_exact_duplicate_rate / checks.max_near_duplicate_rate")
VILA_CONTRACT = Check(
    "vila_contract",
    "LazyCoyoDataset can read pkl02-split: only .pkl/.count pairs, .count = length, every record has text "
    "and an image that decodes to RGB, every part samples_per_part long (vila) or at most that (curated)",
    blocking=True)
TRAIN_WORLD_SIZE = Check(
    "train_world_size",
    "every record of the parts is usable by LazyCoyoDataset at data_policy.train_world_size (contiguous part "
    "blocks per rank, 4 samples per index, ranks cut to the shortest); usable vs total in the metadata",
    warn=True)

SELECTION_CHECKS = (SELECTION_CORRECT, ENOUGH_ROWS_PASS_GATE, IDS_UNIQUE)
IMAGES_CHECKS = (DOWNLOAD_YIELD,)
CLIP_SCORED_CHECKS = (FRESH_SCORE_DISTRIBUTION, DUPLICATE_RATES_BOUNDED)
SPLIT_CHECKS = (VILA_CONTRACT, TRAIN_WORLD_SIZE)
CHECKS_BY_NAME = {c.name: c for c in (*SELECTION_CHECKS, *IMAGES_CHECKS, *CLIP_SCORED_CHECKS, *SPLIT_CHECKS)}
