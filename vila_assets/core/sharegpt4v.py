"""ShareGPT4V filtering and the recombined SFT file.

VILA's data README (at ``90eda3d``) says only: drop samples that leak SAM file ids (``sa_XXXX``) and samples
with repetitive responses; cap100k went 100K -> ~96K and the PT set 1.2M -> 1.17M; then the SFT file was
recombined. The real rules (``mit-han-lab/ShareGPT4V/filter.py``) are not public, so ours are written down
here, with their thresholds in :class:`FilterRules` (asset config), and every drop is counted per rule.

Rules, applied in this order; a sample is counted under the FIRST rule that fires, so the counts add up:

1. ``invalid_record``: fails VILA's conversation contract (``vila_format.validate_conversation_record``).
   Strict mode raises instead, naming file + record index + id.
2. ``sam_id_leak``: any turn's text (human or gpt) matches ``sam_id_pattern``, by default
   ``(?<![A-Za-z0-9_])sa_\\d+`` -- ``sa_`` followed by at least one digit, not glued to a preceding word
   character (``visa_12`` and ``usa_1`` are not leaks). Case-sensitive: SAM file names are lower case.
   The image path itself (``sam/images/sa_1234.jpg``) is not text and is not checked.
3. ``repeated_sentence``: in some gpt turn, one sentence occurs more than ``max_sentence_repeats`` times.
   Sentences are split on ``.``, ``!``, ``?`` and newlines, lower-cased, whitespace-collapsed; sentences
   shorter than ``min_sentence_chars`` are ignored (``"Yes."`` twice is not a loop).
4. ``repeated_ngrams``: in some gpt turn with at least ``min_ngrams`` word ``ngram_size``-grams, the share of
   n-grams that repeat an earlier one, ``1 - unique/total``, exceeds ``max_ngram_repeat_ratio``. Natural
   long captions stay below ~0.1; a captioner stuck in a loop goes past 0.5.
5. ``duplicate_conversation``: the same images and turns (ids ignored) already appeared earlier in the
   output; the first occurrence is kept.

Recombination (VILA's file ``sharegpt4v_mix738k_remove_sa.json``; reference notes §6): 738K ~= 665K - 23K +
96K, i.e. mix665k with the LLaVA detail-23k samples replaced by the filtered GPT-4V captions. A mix665k
record is a detail-23k sample when its ``id`` AND its gpt turns equal a detail-23k record's: ids alone are
COCO image ids, shared with the conversation and complex-reasoning samples of the same image, so matching
on ids would remove about three times too many.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vila_assets.core.llava_json import ValidationReport, check_records, conversation_fingerprint

RULES = ("invalid_record", "sam_id_leak", "repeated_sentence", "repeated_ngrams", "duplicate_conversation")

_SENTENCE_SPLIT = re.compile(r"[.!?\n]+")
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[\w']+")


@dataclass(frozen=True)
class FilterRules:
    sam_id_pattern: str = r"(?<![A-Za-z0-9_])sa_\d+"
    max_sentence_repeats: int = 2
    min_sentence_chars: int = 12
    ngram_size: int = 4
    min_ngrams: int = 20
    max_ngram_repeat_ratio: float = 0.3

    def describe(self) -> dict:
        return asdict(self)


def sentence_repeats(text: str, min_chars: int) -> int:
    """How often the most frequent (normalised) sentence of ``text`` occurs."""
    counts = Counter(
        s for s in (_SPACES.sub(" ", part).strip().lower() for part in _SENTENCE_SPLIT.split(text)) if len(s) >= min_chars
    )
    return max(counts.values(), default=0)


def ngram_repeat_ratio(text: str, n: int) -> tuple[float, int]:
    """``(1 - unique/total, total)`` over the word ``n``-grams of ``text`` (lower-cased)."""
    words = _WORD.findall(text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0, 0
    return 1.0 - len(set(grams)) / len(grams), len(grams)


class SampleFilter:
    """Applies :class:`FilterRules` to a stream of records, counting removals per rule."""

    def __init__(self, rules: FilterRules = FilterRules(), *, dedup: bool = True):
        self.rules = rules
        self._sam = re.compile(rules.sam_id_pattern)
        self.dedup = dedup
        self._seen: set[bytes] = set()
        self.removed: Counter = Counter({r: 0 for r in RULES})
        self.kept = 0
        self.examples: dict[str, str] = {}  # rule -> first removed record id, for the report

    def reason(self, rec: dict) -> str | None:
        """The first rule ``rec`` breaks (content rules only; schema is checked by the caller)."""
        r = self.rules
        turns = rec["conversations"]
        if any(self._sam.search(t["value"]) for t in turns):
            return "sam_id_leak"
        gpt = [t["value"] for t in turns if t["from"] == "gpt"]
        if any(sentence_repeats(v, r.min_sentence_chars) > r.max_sentence_repeats for v in gpt):
            return "repeated_sentence"
        for v in gpt:
            ratio, total = ngram_repeat_ratio(v, r.ngram_size)
            if total >= r.min_ngrams and ratio > r.max_ngram_repeat_ratio:
                return "repeated_ngrams"
        if self.dedup:
            fp = conversation_fingerprint(rec)
            if fp in self._seen:
                return "duplicate_conversation"
            self._seen.add(fp)
        return None

    def drop(self, rule: str, rec_id: object) -> None:
        self.removed[rule] += 1
        self.examples.setdefault(rule, str(rec_id))

    def apply(self, records: Iterable[dict]) -> Iterator[dict]:
        for rec in records:
            why = self.reason(rec)
            if why is None:
                self.kept += 1
                yield rec
            else:
                self.drop(why, rec.get("id"))


@dataclass
class FilterReport:
    """What one filtered file lost, per rule."""

    source: str
    records_in: int = 0
    records_out: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def yield_(self) -> float:
        return self.records_out / self.records_in if self.records_in else 0.0


def filter_records(
    path: str | Path, records: Iterable, rules: FilterRules, *, strict: bool = True
) -> tuple[Iterator[dict], FilterReport]:
    """Validate + filter ``records`` read from ``path``. The report fills in as the iterator is consumed."""
    report = FilterReport(source=str(path))
    vreport = ValidationReport(Path(path))
    sf = SampleFilter(rules)

    def run() -> Iterator[dict]:
        yield from sf.apply(check_records(path, records, strict=strict, report=vreport))
        report.records_in = vreport.records
        report.records_out = sf.kept
        report.removed = {"invalid_record": vreport.invalid, **{k: v for k, v in sf.removed.items() if k != "invalid_record"}}
        report.examples = dict(sf.examples)
        report.problems = list(vreport.problems)

    return run(), report


def detail_key(rec: dict) -> tuple[str, tuple[str, ...]]:
    """How a mix665k record is recognised as a detail-23k sample: id + gpt turns (see module docstring)."""
    return str(rec["id"]), tuple(t["value"].strip() for t in rec["conversations"] if t["from"] == "gpt")


@dataclass
class RecombineReport:
    mix665k_in: int = 0
    detail_removed: int = 0
    detail_unmatched: int = 0
    captions_added: int = 0
    duplicates_removed: int = 0
    records_out: int = 0


def recombine_sft(
    mix665k: Iterable[dict], detail23k_keys: set[tuple[str, tuple[str, ...]]], captions: Iterable[dict]
) -> tuple[Iterator[dict], RecombineReport]:
    """mix665k minus detail-23k, then the filtered cap100k captions; identical conversations once only.

    Order is deterministic: mix665k order, then caption order. The report fills in as it is consumed.
    """
    report = RecombineReport()
    seen: set[bytes] = set()
    matched: set[tuple[str, tuple[str, ...]]] = set()

    def unique(rec: dict) -> bool:
        fp = conversation_fingerprint(rec)
        if fp in seen:
            report.duplicates_removed += 1
            return False
        seen.add(fp)
        return True

    def run() -> Iterator[dict]:
        for rec in mix665k:
            report.mix665k_in += 1
            key = detail_key(rec)
            if key in detail23k_keys:
                report.detail_removed += 1
                matched.add(key)
                continue
            if unique(rec):
                report.records_out += 1
                yield rec
        for rec in captions:
            if unique(rec):
                report.captions_added += 1
                report.records_out += 1
                yield rec
        report.detail_unmatched = len(detail23k_keys - matched)

    return run(), report
