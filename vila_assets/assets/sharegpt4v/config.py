"""Run config of ``sharegpt4v_filtered``: record strictness, the filter rules' thresholds (used by the
``curated`` policy; under ``vila`` they only measure VILA's files), and the checks'."""

from __future__ import annotations

from dataclasses import asdict

import dagster as dg

from vila_assets.assets.llava.config import RecordsConfig
from vila_assets.core.sharegpt4v import FilterRules

_DEFAULT_RULES = FilterRules()


class ShareGPT4VChecks(dg.Config):
    # VILA kept ~96% (cap100k) and ~97.5% (PT); far less means a broken rule
    min_yield: float = 0.8


class ShareGPT4VConfig(RecordsConfig):
    include_pretrain: bool = True  # also publish the Share-Captioner PT set (1246k raw)
    sam_id_pattern: str = _DEFAULT_RULES.sam_id_pattern
    max_sentence_repeats: int = _DEFAULT_RULES.max_sentence_repeats
    min_sentence_chars: int = _DEFAULT_RULES.min_sentence_chars
    ngram_size: int = _DEFAULT_RULES.ngram_size
    min_ngrams: int = _DEFAULT_RULES.min_ngrams
    max_ngram_repeat_ratio: float = _DEFAULT_RULES.max_ngram_repeat_ratio
    loop_min_repeats: int = _DEFAULT_RULES.loop_min_repeats
    loop_min_chars: int = _DEFAULT_RULES.loop_min_chars
    loop_max_phrase_chars: int = _DEFAULT_RULES.loop_max_phrase_chars
    checks: ShareGPT4VChecks = ShareGPT4VChecks()

    def rules(self) -> FilterRules:
        return FilterRules(**{k: getattr(self, k) for k in asdict(_DEFAULT_RULES)})
