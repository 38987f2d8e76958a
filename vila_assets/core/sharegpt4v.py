"""ShareGPT4V under the two data policies: VILA's published files as they are (``vila``), or our written
filter over the raw captions and the recombined SFT file (``curated``).

``vila``. VILA's README downloads ``mit-han-lab/ShareGPT4V``, which hosts the files VILA trains on:
``sharegpt4v_mix738k_remove_sa.json`` (registry ``sharegpt4v_sft``) and
``filter-share-captioner_coco_lcs_sam_1246k_1107.json`` (VILA 1.5's ``sharegpt4v_pretrain``, whose registry
path spells it ``jason-filter-share-captioner_...``). :func:`copy_published` puts them at the registry paths
byte for byte, validating every record on the way. That repo's ``run.sh`` made them (``construct_sharegpt4v_sft.py``,
then ``filter.py``); neither script is readable, so nothing here re-derives them.

``curated``. VILA's data README (at ``90eda3d``) says only: drop samples that leak SAM file ids (``sa_XXXX``)
and samples with repetitive responses; cap100k went 100K -> ~96K and the PT set 1.2M -> 1.17M; then the SFT
file was recombined. Our rules are written down here, with their thresholds in :class:`FilterRules` (asset
config), and every drop is counted per rule.

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
5. ``phrase_loop``: in some gpt turn, a phrase is said ``loop_min_repeats`` times back to back, with or
   without sentence breaks or even spaces between the copies (``"the cat the cat the cat"``,
   ``"a red cara red cara red car"``); see :func:`phrase_loop`. Rules 3 and 4 miss a short loop inside a
   long, otherwise natural caption: it is one "sentence", and too few of the caption's n-grams repeat.
6. ``duplicate_conversation``: the same images and turns (ids ignored) already appeared earlier in the
   output; the first occurrence is kept.

Recombination (VILA's file ``sharegpt4v_mix738k_remove_sa.json``; reference notes §6): 738K ~= 665K - 23K +
96K, i.e. mix665k with the LLaVA detail-23k samples replaced by the filtered GPT-4V captions. A mix665k
record is a detail-23k sample when its ``id`` AND its gpt turns equal a detail-23k record's: ids alone are
COCO image ids, shared with the conversation and complex-reasoning samples of the same image, so matching
on ids would remove about three times too many.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vila_assets.core.atomic import atomic_open
from vila_assets.core.llava_json import ValidationReport, check_records, conversation_fingerprint, iter_json_array
from vila_assets.core.policy import Difference

RULES = ("invalid_record", "sam_id_leak", "repeated_sentence", "repeated_ngrams", "phrase_loop",
         "duplicate_conversation")

# The files VILA trains on, as mit-han-lab/ShareGPT4V publishes them (the vila policy's inputs).
VILA_SFT_FILE = "sharegpt4v_mix738k_remove_sa.json"
VILA_PT_FILE = "filter-share-captioner_coco_lcs_sam_1246k_1107.json"

_FAMILY = "ShareGPT4V"
POLICY_DIFFERENCES = (
    Difference(
        _FAMILY, "SFT file (`sharegpt4v_sft`)",
        "README: download `mit-han-lab/ShareGPT4V`'s `sharegpt4v_mix738k_remove_sa.json` (made there by "
        "`run.sh`: `construct_sharegpt4v_sft.py`, then `filter.py`; neither script is public)",
        "same: that file byte for byte at `./playground/data/sharegpt4v/`",
        "`Lin-Chen/ShareGPT4V`'s cap100k re-filtered by the written rules, then mix665k minus the detail-23k "
        "samples plus the kept captions; mix665k's own records are not filtered"),
    Difference(
        _FAMILY, "PT captions (`sharegpt4v_pretrain`)",
        "VILA 1.5 registry: `ShareGPT4V/jason-filter-share-captioner_coco_lcs_sam_1246k_1107.json`; the hub "
        "file is `filter-share-captioner_...`",
        "same: the hub file byte for byte, under the registry's `jason-filter-` name",
        "`Lin-Chen/ShareGPT4V`'s 1246k set re-filtered by the written rules, same path"),
    Difference(
        _FAMILY, "SAM-id leaks",
        "README: drop samples that mention `sa_XXXX` file ids (exact rule not public)",
        "same (as published)",
        "`sa_` + digits not glued to a preceding word character, in any turn (`visa_2024` stays)"),
    Difference(
        _FAMILY, "repetitive responses",
        "README: drop repetitive responses (exact rule not public)",
        "same (as published)",
        "a sentence said more than twice, a 4-gram repeat share > 0.3, or a phrase looped 3 times back to "
        "back with or without sentence breaks"),
    Difference(
        _FAMILY, "identical conversations",
        "not mentioned",
        "same (as published)",
        "kept once (first occurrence), in the filtered captions and in the recombined SFT file"),
)

_SENTENCE_SPLIT = re.compile(r"[.!?\n]+")
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[\w']+")
_WORD_START = re.compile(r"\b\w")
_LOOP_PROBE = 4  # a looped phrase has at least this many characters


@dataclass(frozen=True)
class FilterRules:
    sam_id_pattern: str = r"(?<![A-Za-z0-9_])sa_\d+"
    max_sentence_repeats: int = 2
    min_sentence_chars: int = 12
    ngram_size: int = 4
    min_ngrams: int = 20
    max_ngram_repeat_ratio: float = 0.3
    loop_min_repeats: int = 3
    loop_min_chars: int = 20
    loop_max_phrase_chars: int = 50

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


def phrase_loop(text: str, *, min_repeats: int = 3, min_chars: int = 20, max_phrase: int = 50) -> str | None:
    """The first phrase of ``text`` said ``min_repeats`` times back to back, or None.

    A phrase starts at a word, has ``_LOOP_PROBE`` to ``max_phrase`` characters (spaces, punctuation and a
    glued next word included: ``"a red car"`` loops in ``"a red cara red cara red car"``), and its copies
    cover at least ``min_chars`` characters. The last copy may differ in its final character, so
    ``"the cat the cat the cat."`` loops although its unit is ``"the cat "``. Text is lower-cased and its
    whitespace collapsed first. Cost: one bounded ``str.find`` per word start, C-speed comparisons.
    """
    s = " ".join(text.lower().split())
    for m in _WORD_START.finditer(s):
        j = m.start()
        window_end = j + max_phrase + _LOOP_PROBE
        probe = s[j : j + _LOOP_PROBE]
        k = s.find(probe, j + _LOOP_PROBE, window_end)
        while k != -1:
            p = k - j  # the phrase's length: the probe comes back where its second copy starts
            span = p * min_repeats
            if span >= min_chars and j + span - 1 <= len(s) and s[j : j + span - p - 1] == s[k : j + span - 1]:
                return s[j:k]
            k = s.find(probe, k + 1, window_end)
    return None


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
        if any(phrase_loop(v, min_repeats=r.loop_min_repeats, min_chars=r.loop_min_chars,
                           max_phrase=r.loop_max_phrase_chars) for v in gpt):
            return "phrase_loop"
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


# --- the vila policy: VILA's published files as they are --------------------------------------------------


@dataclass
class CopyReport:
    """One published file taken as it is: where from, how many records, and the bytes' hash."""

    source: str
    records: int = 0
    sha256: str = ""
    bytes: int = 0


def copy_published(src: str | Path, dest: str | Path, *, source: str | None = None,
                   observe: Callable[[dict], None] | None = None) -> CopyReport:
    """``src``'s bytes at ``dest`` (atomically), every record validated on the way; ``observe`` sees each.

    One pass over a 1.3 GB file: the bytes the JSON reader consumes are the bytes written, so ``dest`` is
    ``src`` byte for byte. A malformed element or record raises (``JsonArrayError`` / ``RecordError``,
    naming the file and the record index) and leaves ``dest`` untouched.
    """
    report = CopyReport(source or str(src))
    digest = hashlib.sha256()
    with atomic_open(dest, "wb") as out:
        def take(block: bytes) -> None:
            out.write(block)
            digest.update(block)
            report.bytes += len(block)

        for rec in check_records(src, iter_json_array(src, on_bytes=take), strict=True):
            report.records += 1
            if observe is not None:
                observe(rec)
    report.sha256 = digest.hexdigest()
    return report
