"""MMC4-core input side, Dagster-free: where the shards are, how they are named, and which docs are valid.

Source. VILA trained on **mmc4-core** (``data_core_v1.1/docs_shard_{N}_v3.jsonl``). AI2 withdrew that
copy in Feb 2025; the public stand-in is **mmc4-core-ff** ("fewer faces", HF dataset
``jmhessel/mmc4-core-ff``, files ``docs_no_face_shard_{N}_v3.jsonl.zip``), which is our default. A source
``location`` is one of (see ``core.source_tree.open_source``):

- a hub repo, ``hf:<org>/<name>`` or ``<org>/<name>``, listed and downloaded at a pinned commit
  (default ``hf:jmhessel/mmc4-core-ff``);
- a local directory (absolute, ``./``, ``~`` or ``file://``) holding shard files, e.g. a copy a user
  already has;
- any other fsspec URL (``s3://bucket/mmc4``, ``memory://...``), copied to a local cache before reading;
- an ``http(s)://`` URL template with ``{index}`` (e.g. the historic
  ``.../data_core_v1.1/docs_shard_{index}_v3.jsonl.zip``); a URL cannot be listed, so its shards are the
  known core id set (:func:`core_shard_ids`).

Shard files. The real shards are zips holding ONE deflated member (``docs_no_face_shard_151_v3.jsonl.zip``
-> ``docs_no_face_shard_151_v3.jsonl``); VILA's downloader expects them unzipped. Both forms are read,
named ``docs[_no_face]_shard_{N}_v{V}.jsonl[.zip]``. Where the files sit inside the source is not known for
the jmhessel repos (upstream-sources.md marks it uncertain), so shards are found at the top level or in any
subfolder; one index found under two different names or folders is refused as ambiguous (a plain
``.jsonl`` beside its own ``.zip`` is a person's unzipped copy: the plain file is read). The real core set
has indices 0..23098 with 14 gaps, i.e. 23,085 files (VILA's README says "23098 - 14", an off-by-one);
core-ff also lacks 1277 and 22953.

Records. v1.0 files carry four keys (``url, text_list, image_info, similarity_matrix``), v1.1 files a fifth,
``could_have_url_duplicate``; both are read, and records are passed on verbatim.

Partition keys are the shard index zero-padded to five digits (``"00042"``), so the lexical order that
Dagster ranges and humans use is the numeric order. The VILA output keeps the source file's name up to the
first dot (``docs_no_face_shard_42_v3.pkl``), as VILA's downloader names its shard.

Validation. Each non-blank line is one doc. A line that is not a JSON object, lacks ``text_list`` (list
of str) or ``image_info`` (non-empty list of ``{raw_url: str, matched_text_index: int in range}``), or
whose ``similarity_matrix`` has fewer rows than images is **invalid**: it is kept in the annotations table
with ``file:line: reason`` (or raises with that message in strict mode), never silently skipped. A file
that cannot be read at all (a broken zip, a zip with several members) raises, naming the file (and the
line reached).
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vila_assets.core.atomic import atomic_path, atomic_write_bytes
from vila_assets.core.source_tree import SourceError, SourceTree, open_source

DEFAULT_REPO = "jmhessel/mmc4-core-ff"
DEFAULT_LOCATION = f"hf:{DEFAULT_REPO}"
# The 14 indices absent from the real core set (0..23098).
CORE_MISSING_SHARDS = frozenset(
    {3218, 3267, 5064, 5146, 7119, 8991, 9750, 11899, 15127, 15252, 16996, 17369, 17499, 17818}
)
CORE_MAX_SHARD = 23098
KEY_WIDTH = 5

SHARD_FILE_RE = re.compile(r"^docs_(?:no_face_)?shard_(\d+)_v(\d+)\.jsonl(\.zip)?$")


class Mmc4FormatError(ValueError):
    """A shard file or doc that cannot be used; the message names the file and line."""


def core_shard_ids() -> list[int]:
    """The 23,085 shard indices of the real mmc4-core(-ff) set."""
    return [i for i in range(CORE_MAX_SHARD + 1) if i not in CORE_MISSING_SHARDS]


def partition_key(index: int) -> str:
    return f"{index:0{KEY_WIDTH}d}"


def shard_index(key: str) -> int:
    if not key.isdigit():
        raise ValueError(f"bad mmc4 partition key {key!r}: expected a zero-padded shard index like '00042'")
    return int(key)


@dataclass(frozen=True)
class ShardFile:
    index: int
    path: str  # path inside the repo / directory, or the full URL

    @property
    def key(self) -> str:
        return partition_key(self.index)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        """The file name up to the first dot: the VILA output's ``<stem>.pkl``."""
        return self.name.split(".", 1)[0]

    @property
    def zipped(self) -> bool:
        return self.name.endswith(".zip")


def shards_from_listing(paths: Iterable[str]) -> dict[str, ShardFile]:
    """Shard files among ``paths`` (other files ignored), by partition key, in index order.

    Shards may sit at the top level or in a subfolder. When an index exists both plain and zipped under
    the same name, the plain ``.jsonl`` wins (it is what a person unzipped); any other repeat of an index
    (two folders, two names) is ambiguous and raises, naming the files.
    """
    by_index: dict[int, list[ShardFile]] = {}
    for p in paths:
        m = SHARD_FILE_RE.match(p.rsplit("/", 1)[-1])
        if m:
            by_index.setdefault(int(m[1]), []).append(ShardFile(int(m[1]), p))
    return {partition_key(i): _one_shard(by_index[i]) for i in sorted(by_index)}


def _one_shard(candidates: list[ShardFile]) -> ShardFile:
    if len({c.path.removesuffix(".zip") for c in candidates}) > 1:
        names = ", ".join(sorted(c.path for c in candidates))
        raise Mmc4FormatError(f"shard {candidates[0].index} is ambiguous: {names}; keep one of them")
    return min(candidates, key=lambda c: c.zipped)


def missing_indices(indices: Iterable[int]) -> list[int]:
    """Gaps in ``0..max(indices)``: the real core set has 14."""
    have = set(indices)
    return [i for i in range(max(have) + 1) if i not in have] if have else []


# --- sources -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSpec:
    """Where shard files come from; see the module docstring for the forms of ``location``."""

    location: str = DEFAULT_LOCATION
    revision: str = "main"

    @property
    def is_template(self) -> bool:
        """An http(s) URL template (listed from the known core ids); anything else is a source tree."""
        if not self.location.startswith(("http://", "https://")):
            return False
        if "{index}" not in self.location:
            raise SourceError(f"URL source {self.location!r} needs an '{{index}}' placeholder (http(s) "
                              "URLs cannot be listed); use a hub repo, a directory or another fsspec URL")
        return True

    def tree(self, hub=None, cache_dir: str | Path | None = None, revision: str | None = None) -> SourceTree:
        """The source as a ``SourceTree`` (hub repo, directory or fsspec URL), at ``revision`` if given."""
        return open_source(self.location, revision or self.revision, hub, cache_dir=cache_dir)


@dataclass(frozen=True)
class Listing:
    source: str
    revision: str | None  # commit sha for hub sources, None otherwise
    shards: dict[str, ShardFile]

    @property
    def missing(self) -> list[int]:
        return missing_indices(s.index for s in self.shards.values())


def list_source(spec: SourceSpec, hub=None) -> Listing:
    """List the shards of ``spec``. ``hub`` is a ``core.hub.HubLocation`` (used by hub sources).

    A source tree without a single shard file is an error naming the location and what it holds."""
    if spec.is_template:
        shards = {partition_key(i): ShardFile(i, spec.location.format(index=i)) for i in core_shard_ids()}
        return Listing(spec.location, None, shards)
    tree = spec.tree(hub)
    files = tree.list_files()
    shards = shards_from_listing(files)
    if not shards:
        sample = ", ".join(files[:5]) or "no files"
        raise SourceError(f"{tree.describe()}: no MMC4 shard files (docs_[no_face_]shard_N_vV.jsonl[.zip]); "
                          f"it holds {len(files)} file(s): {sample}")
    return Listing(tree.describe(), tree.revision, shards)


def fetch_shard(spec: SourceSpec, shard: ShardFile, *, hub=None, revision: str | None = None,
                cache_dir: str | Path | None = None, timeout: float = 60.0, retries: int = 3) -> Path:
    """A local path to ``shard``'s bytes: from the source tree at the listed ``revision`` (hub sources), or
    downloaded from a URL template into ``cache_dir``."""
    if not spec.is_template:
        return spec.tree(hub, cache_dir, revision).fetch(shard.path)
    if cache_dir is None:
        raise ValueError("a URL source needs a cache directory")
    target = Path(cache_dir) / shard.name
    if not target.exists():
        _download(shard.path, target, timeout, retries)
    return target


def _download(url: str, target: Path, timeout: float, retries: int) -> None:
    import time

    import httpx

    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            with atomic_path(target) as tmp, httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as r:
                if r.status_code >= 400:
                    raise httpx.HTTPStatusError(f"HTTP {r.status_code}", request=r.request, response=r)
                with open(tmp, "wb") as fh:
                    for chunk in r.iter_bytes(1 << 20):
                        fh.write(chunk)
            return
        except httpx.HTTPStatusError as exc:
            last = exc
            if exc.response.status_code < 500 and exc.response.status_code != 429:
                break
        except httpx.TransportError as exc:
            last = exc
        if attempt < retries:
            time.sleep(min(30.0, 2.0**attempt))
    raise Mmc4FormatError(f"{url}: download failed ({last})")


# --- reading and validating docs ---------------------------------------------------------------------


def iter_lines(path: Path, display: str | None = None) -> Iterator[tuple[str, int, bytes]]:
    """``(where, line_number, raw_line)`` for every line; ``where`` names the file (and zip member).

    A file that cannot be read (not a zip, a zip with other than one member, a corrupt member) raises
    :class:`Mmc4FormatError` naming the file and, where reading had started, the line reached."""
    display = display or path.name
    if not path.name.endswith(".zip"):
        yield from _numbered(path.open("rb"), display)
        return
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise Mmc4FormatError(f"{display}: not a readable zip ({exc})") from None
    with zf:
        members = [m for m in zf.namelist() if not m.endswith("/")]
        if len(members) != 1:
            raise Mmc4FormatError(f"{display}: expected one .jsonl member in the zip, found {members}")
        try:
            fh = zf.open(members[0])
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as exc:
            raise Mmc4FormatError(f"{display}!{members[0]}: cannot open the zip member ({exc})") from None
        yield from _numbered(fh, f"{display}!{members[0]}")


def _numbered(fh, where: str) -> Iterator[tuple[str, int, bytes]]:
    """Lines of an open binary file, numbered from 1; a read error names the line it broke."""
    n = 0
    with fh:
        try:
            for n, line in enumerate(fh, 1):
                yield where, n, line
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
            raise Mmc4FormatError(f"{where}:{n + 1}: unreadable after line {n} ({exc})") from None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) or v is None


def doc_problem(doc) -> str | None:
    """Why ``doc`` cannot become a VILA MMC4 sample (None when it can)."""
    if not isinstance(doc, dict):
        return f"doc is a JSON {type(doc).__name__}, not an object"
    texts = doc.get("text_list")
    if texts is None:
        return "missing text_list"
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return "text_list is not a list of strings"
    if not texts:
        return "text_list is empty"
    images = doc.get("image_info")
    if images is None:
        return "missing image_info"
    if not isinstance(images, list):
        return "image_info is not a list"
    if not images:
        return "image_info is empty (no images)"
    for i, info in enumerate(images):
        if not isinstance(info, dict):
            return f"image_info[{i}] is not an object"
        url = info.get("raw_url")
        if not isinstance(url, str) or not url.strip():
            return f"image_info[{i}] has no raw_url"
        mti = info.get("matched_text_index")
        if not _is_int(mti):
            return f"image_info[{i}].matched_text_index is {mti!r}, not an integer"
        if not 0 <= mti < len(texts):
            return f"image_info[{i}].matched_text_index {mti} out of range for {len(texts)} sentences"
    sim = doc.get("similarity_matrix")
    if not isinstance(sim, list):
        return "missing similarity_matrix"
    if len(sim) < len(images):
        return f"similarity_matrix has {len(sim)} rows for {len(images)} images"
    for r, row in enumerate(sim):
        if not isinstance(row, list) or not all(_is_number(v) for v in row):
            return f"similarity_matrix row {r} is not a list of numbers"
    return _utf8_problem(doc)


def _utf8_problem(doc: dict) -> str | None:
    """JSON may escape a lone surrogate (``\\ud800``), which no UTF-8 writer (Parquet, the tokenizer)
    accepts: one such string would crash the whole shard's crawl input, so the doc is refused here."""
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"text is not valid UTF-8 (lone surrogate {exc.object[exc.start:exc.end]!r})"
    return None


ANNOTATIONS_SCHEMA = pa.schema(
    [
        pa.field("line", pa.int32(), nullable=False),  # 1-based line number in the shard file
        pa.field("status", pa.string(), nullable=False),  # "valid" | "invalid"
        pa.field("reason", pa.string()),  # for invalid docs: what is wrong (file:line is in ``where``)
        pa.field("where", pa.string(), nullable=False),  # "<file>:<line>" for messages and manifests
        pa.field("url", pa.string()),
        pa.field("n_sentences", pa.int32()),
        pa.field("n_images", pa.int32()),
        pa.field("doc_json", pa.string()),  # the original line, verbatim, for valid docs
    ]
)


@dataclass
class ParsedShard:
    rows: list[dict]
    source_file: str

    @property
    def valid(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "valid"]

    @property
    def invalid(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "invalid"]

    def invalid_reasons(self) -> dict[str, int]:
        """Invalid docs per reason, without the varying numbers (``image_info[3]`` -> ``image_info[i]``)."""
        return dict(Counter(re.sub(r"\d+", "N", r["reason"]) for r in self.invalid).most_common())


def parse_shard(path: str | Path, *, display: str | None = None, strict: bool = False) -> ParsedShard:
    """Read and validate every doc of one shard file (plain or zipped JSONL), in line order.

    Blank lines are not docs and are skipped. Strict mode raises :class:`Mmc4FormatError` on the first
    invalid doc; otherwise invalid docs are kept as rows with ``status="invalid"`` and a reason.
    """
    path = Path(path)
    rows: list[dict] = []
    for where_file, n, raw in iter_lines(path, display):
        text = raw.strip()
        if not text:
            continue
        where = f"{where_file}:{n}"
        doc = None
        try:
            doc = json.loads(text)
            problem = doc_problem(doc)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            problem = f"bad JSON ({getattr(exc, 'msg', type(exc).__name__)})"
        if problem is not None:
            if strict:
                raise Mmc4FormatError(f"{where}: {problem}")
            rows.append(dict(line=n, status="invalid", reason=problem, where=where, url=None,
                             n_sentences=None, n_images=None, doc_json=None))
            continue
        rows.append(dict(line=n, status="valid", reason=None, where=where,
                         url=doc.get("url") if isinstance(doc.get("url"), str) else None,
                         n_sentences=len(doc["text_list"]), n_images=len(doc["image_info"]),
                         doc_json=text.decode("utf-8")))
    return ParsedShard(rows, display or path.name)


def write_annotations(parsed: ParsedShard, path: str | Path) -> Path:
    write_parquet(path, parsed.rows, ANNOTATIONS_SCHEMA)
    return Path(path)


def read_annotations(path: str | Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


# --- crawl input ----------------------------------------------------------------------------------------

CRAWL_INPUT_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("caption", pa.string()),
        pa.field("line", pa.int32(), nullable=False),
        pa.field("image_index", pa.int32(), nullable=False),
    ]
)


def image_key(line: int, image_index: int) -> str:
    """The crawl key of a doc's image: ``<line>-<image index>`` (never derived from the URL)."""
    return f"{line}-{image_index}"


def slot_keys(line: int, infos: list[dict]) -> list[str]:
    """The crawl key serving each image slot of a doc: a URL used in several slots is ONE download, keyed
    by its first slot, and serves every slot that names it (never a duplicate of itself)."""
    first: dict[str, str] = {}
    return [first.setdefault(info["raw_url"], image_key(line, i)) for i, info in enumerate(infos)]


def crawl_rows(annotations: Iterable[dict]) -> list[dict]:
    """One crawl row per distinct image URL of every valid doc, in (line, first slot) order. URLs are
    passed verbatim: extensionless URLs and query strings survive, because no local name is ever derived
    from them."""
    out = []
    for row in annotations:
        if row["status"] != "valid":
            continue
        doc = json.loads(row["doc_json"])
        texts, infos = doc["text_list"], doc["image_info"]
        for i, (info, key) in enumerate(zip(infos, slot_keys(row["line"], infos))):
            if key == image_key(row["line"], i):
                out.append(dict(key=key, url=info["raw_url"], caption=texts[info["matched_text_index"]],
                                line=row["line"], image_index=i))
    return out


def crawl_fingerprint(crawl_input: str | Path, output_fields: dict) -> str:
    """What a crawl's output depends on: the input's bytes and the crawler settings that change
    ``samples.parquet`` (``CrawlConfig.output_fields``). Same fingerprint -> the existing output stands."""
    h = hashlib.sha256(Path(crawl_input).read_bytes())
    h.update(json.dumps(output_fields, sort_keys=True, default=str).encode())
    return h.hexdigest()


def batch_key(shard_key: str, key: str) -> str:
    """A crawl key unique across the shards of one batched crawl."""
    return f"{shard_key}/{key}"


def write_batch_crawl_input(rows_by_shard: dict[str, list[dict]], path: str | Path) -> Path:
    """One crawl input for several shards (one crawler start-up per run, not per shard): shard blocks
    in the given order, keys prefixed with the shard key."""
    rows = [dict(r, key=batch_key(shard, r["key"])) for shard, rs in rows_by_shard.items() for r in rs]
    return write_parquet(path, rows, CRAWL_INPUT_SCHEMA)


def split_batch_samples(batch_samples: str | Path, rows_by_shard: dict[str, list[dict]],
                        out_path_for) -> dict[str, Path]:
    """Cut a batched crawl's ``samples.parquet`` back into one file per shard (keys unprefixed).

    The crawler keeps input order, so each shard is one contiguous block; the file is streamed in
    batches, and only one shard's rows are held at a time.
    """
    from vila_assets.core.crawl.writer import SAMPLES_SCHEMA, write_table

    pf = pq.ParquetFile(batch_samples)
    order = list(rows_by_shard)
    done: dict[str, Path] = {}
    pending: list[dict] = []
    current = 0

    def flush() -> None:
        nonlocal current, pending
        while current < len(order) and len(pending) >= len(rows_by_shard[order[current]]):
            shard = order[current]
            n = len(rows_by_shard[shard])
            block, pending = pending[:n], pending[n:]
            prefix = f"{shard}/"
            for r, expected in zip(block, rows_by_shard[shard]):
                if r["key"] != prefix + expected["key"]:
                    raise Mmc4FormatError(f"{batch_samples}: row {r['key']!r} where {prefix + expected['key']!r} was expected")
                r["key"] = expected["key"]
            path = Path(out_path_for(shard))
            with atomic_path(path) as tmp:
                write_table(tmp, block, SAMPLES_SCHEMA)
            done[shard] = path
            current += 1

    for batch in pf.iter_batches(batch_size=1024):
        pending.extend(batch.to_pylist())
        flush()
    flush()  # shards with no images at all
    if current != len(order) or pending:
        raise Mmc4FormatError(f"{batch_samples}: {len(pending)} rows left over / {len(order) - current} shards short")
    return done


# --- shared parquet writing -----------------------------------------------------------------------------


def write_parquet(path: str | Path, rows: list[dict], schema: pa.Schema) -> Path:
    """Atomic, deterministic Parquet (fixed compression, no timestamps): same rows -> same bytes."""
    table = pa.Table.from_pylist(rows, schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=4096)
    return atomic_write_bytes(path, sink.getvalue().to_pybytes())
