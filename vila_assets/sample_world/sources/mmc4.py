"""Miniature ``jmhessel/mmc4-core-ff``: MMC4 docs as the real core-ff ships them, pointing at the image web.

Mirrors the real files (upstream-sources.md, section 2):

- every shard is ``docs_no_face_shard_{N}_v3.jsonl.zip`` holding ONE deflated member
  ``docs_no_face_shard_{N}_v3.jsonl`` (one doc per line), laid out flat at the repo's top level (the real
  repo's layout is unverified: readers also find shards in a subfolder, tested with a directory source);
- shard numbers have gaps, like the real set's 14 plus core-ff's 1277 and 22953, scaled down
  (:data:`GAPS`);
- records have the real key order: ``url, text_list, image_info, similarity_matrix`` (v1.0, shard 3)
  plus ``could_have_url_duplicate`` (v1.1, the other shards); ``image_info[]`` is ``image_name, raw_url,
  matched_text_index, matched_sim, face_detections`` (``None``); ``similarity_matrix`` has one row per
  image and one column per sentence.

What the pipeline must cope with:

- image URLs: mostly photos with a caption-like matched sentence; extensionless URLs and URLs with query
  strings (VILA's downloader loses the former: no file name); a mix of fast faults from the hostile web
  (404/410/500, HTML and garbage bodies, opted-out, blocked redirects, redirect loops, a decompression bomb);
- shard 0 has malformed lines: bad JSON, a doc without ``text_list``, an out-of-range
  ``matched_text_index`` (plus a blank line, which is not a doc);
- shard 1 has exact duplicates (byte-identical images at two URLs), a near duplicate (re-encoded), and a
  doc using ONE image URL in two slots (one download serves both; not a duplicate);
- shard 3 has the "image not available" placeholder twice (same bytes from two URLs);
- the last shard has a 1002x700 photo, whose long side VILA truncates (480) where rounding gives 481.

Yields of these shards sit well above the default thresholds, so the demo stays green. The deliberately
low-yield shard is not in the hub repo (the demo runs every shard there at "test" scale too): tests write
it with :func:`write_low_yield_shard` into a local directory source, as a plain ``.jsonl`` (VILA's
downloader reads shards unzipped).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import zipfile
from pathlib import Path

from vila_assets.sample_world.image_web import (
    exact_dup_url,
    extensionless_photo_url,
    fault_url,
    near_dup_url,
    photo_url,
    placeholder_url,
)
from vila_assets.sample_world.images import COLORS, SHAPES, caption
from vila_assets.sample_world.sources import SourceContext

REPO = "jmhessel/mmc4-core-ff"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: same docs -> same zip bytes -> same hub commit
# shard numbers left out, per scale: the real core set lacks 14 of 0..23098 and core-ff two more
GAPS = {"test": (2, 4), "demo": (2, 7)}
LAST_SHARD = {"test": 5, "demo": 9}
V1_0_SHARDS = (3,)  # written without could_have_url_duplicate, as v1.0 (Apr 2023) files are
ODD_SIZE = (1002, 700)  # VILA: int(336 * 1002 / 700) = 480; round() gives 481
GITATTRIBUTES = "*.zip filter=lfs diff=lfs merge=lfs -text\n*.jsonl filter=lfs diff=lfs merge=lfs -text\n"


def shard_indices(scale: str) -> list[int]:
    return [i for i in range(LAST_SHARD[scale] + 1) if i not in GAPS[scale]]

FILLER = [
    "Welcome back to our weekly roundup.",
    "We tried a few things this time.",
    "The results surprised everyone in the office.",
    "Read on for the details.",
    "Thanks for following along.",
    "Let us know what you think in the comments.",
    "Prices may vary by region.",
    "This post was updated last spring.",
]


def shard_name(index: int, zipped: bool = True) -> str:
    return f"docs_no_face_shard_{index}_v3.jsonl" + (".zip" if zipped else "")


def _good_url(base: str, rng: random.Random, seed: int) -> tuple[str, str, str]:
    """A working image URL and its (color, shape). Seeds are unique per image: no accidental duplicates."""
    color, shape = rng.choice(sorted(COLORS)), rng.choice(SHAPES)
    w, h = rng.choice([(640, 480), (480, 640), (800, 600), (400, 300), (512, 512)])
    r = rng.random()
    if r < 0.08:
        url = extensionless_photo_url(base, color, shape, seed, w, h)
    elif r < 0.14:
        url = extensionless_photo_url(base, color, shape, seed, w, h, query=f"v={seed % 7}&utm_source=feed")
    elif r < 0.20:
        url = photo_url(base, color, shape, seed, w, h) + f"?w={w}&ref=post.{seed % 5}.html"
    elif r < 0.28:
        url = photo_url(base, color, shape, seed, w, h, fmt=rng.choice(["png", "webp"]))
    else:
        url = photo_url(base, color, shape, seed, w, h)
    return url, color, shape


def _fault_url(base: str, rng: random.Random, tag: str) -> str:
    """One of the hostile web's fast failures (no slow/drip: they would cost tens of seconds)."""
    kind = rng.choice(["404", "410", "500", "html", "garbage", "noai", "private", "loop", "redirect9", "bomb"])
    return {
        "404": lambda: fault_url(base, "status", f"{tag}-404", 404),
        "410": lambda: fault_url(base, "status", f"{tag}-410", 410),
        "500": lambda: fault_url(base, "status", f"{tag}-500", 500),
        "html": lambda: fault_url(base, "html", tag),
        "garbage": lambda: fault_url(base, "garbage", tag),
        "noai": lambda: fault_url(base, "robots", tag, "noai"),
        "private": lambda: fault_url(base, "goto", "private"),
        "loop": lambda: fault_url(base, "loop", tag),
        "redirect9": lambda: fault_url(base, "redirect", "photo/red/triangle/6/640x480.jpg", 9),
        "bomb": lambda: fault_url(base, "bomb", "png"),
    }[kind]()


def make_doc(rng: random.Random, urls: list[tuple[str, str | None]], doc_url: str, version: str = "1.1") -> dict:
    """A doc in MMC4's shape (key order included) whose images are ``urls`` (each ``(url, matched sentence
    or None)``); ``version`` "1.0" leaves out ``could_have_url_duplicate``, as the v1.0 files do."""
    n_text = max(len(urls) + rng.randint(1, 3), 3)
    texts = [rng.choice(FILLER) for _ in range(n_text)]
    slots = rng.sample(range(n_text), len(urls))
    infos, sim = [], []
    for (url, sentence), slot in zip(urls, slots):
        if sentence:
            texts[slot] = sentence
        row = [round(rng.uniform(0.08, 0.22), 4) for _ in range(n_text)]
        row[slot] = round(rng.uniform(0.24, 0.34), 4)
        sim.append(row)
        infos.append({
            "image_name": hashlib.sha1(url.encode()).hexdigest()[:12] + ".jpg",
            "raw_url": url,
            "matched_text_index": slot,
            "matched_sim": row[slot],
            "face_detections": None,
        })
    doc = {"url": doc_url, "text_list": texts, "image_info": infos, "similarity_matrix": sim}
    if version != "1.0":
        doc["could_have_url_duplicate"] = int(rng.random() < 0.03)
    return doc


def shard_docs(base: str, rng: random.Random, index: int, n_docs: int, max_images: int,
               fault_rate: float, version: str = "1.1") -> list[dict]:
    docs = []
    for line in range(n_docs):
        urls = []
        for i in range(rng.randint(1, max_images)):
            seed = index * 10_000 + line * 10 + i
            if rng.random() < fault_rate:
                urls.append((_fault_url(base, rng, f"mmc4-{index}-{line}-{i}"), None))
            else:
                url, color, shape = _good_url(base, rng, seed)
                urls.append((url, f"Here is {caption(color, shape)}."))
        docs.append(make_doc(rng, urls, f"http://blog-{index}.example.com/post-{line}.html", version))
    return docs


def _dumps(doc: dict) -> str:
    return json.dumps(doc, ensure_ascii=False)


def _write_shard(directory: Path, index: int, lines: list[str], zipped: bool) -> Path:
    body = ("\n".join(lines) + "\n").encode()
    path = directory / shard_name(index, zipped)
    if zipped:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            info = zipfile.ZipInfo(shard_name(index, False), date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, body)
        path.write_bytes(buf.getvalue())
    else:
        path.write_bytes(body)
    return path


def _planted(base: str, rng: random.Random, index: int, last: int, version: str) -> list[dict]:
    """The docs each shard carries beyond its random ones (see the module docstring)."""
    specs: list[tuple[list[tuple[str, str | None]], str]] = []
    if index == 1:  # exact duplicates at two URLs, a re-encoded near duplicate, one URL in two slots
        twice = photo_url(base, "green", "square", 10_101, 640, 480)
        specs += [([(exact_dup_url(base, 0), "A blue circle, as promised.")], "http://dup.example.com/a"),
                  ([(exact_dup_url(base, 1), "The same blue circle again.")], "http://dup.example.com/b"),
                  ([(near_dup_url(base, 2), "A smaller blue circle.")], "http://dup.example.com/c"),
                  ([(twice, "Our green square, from the front."), (twice, "The same green square, for scale.")],
                   "http://reuse.example.com/gallery")]
    if index == 3:  # a dead host's placeholder, served with a 200, from two docs
        specs += [([(placeholder_url(base, i), None)], f"http://dead.example.com/{i}") for i in (1, 2)]
    if index == last:  # a size whose long side VILA truncates where rounding would differ
        odd = photo_url(base, "yellow", "triangle", 10_102, *ODD_SIZE)
        specs.append(([(odd, f"Here is {caption('yellow', 'triangle')}.")], "http://wide.example.com/"))
    return [make_doc(rng, urls, doc_url, version) for urls, doc_url in specs]


def _malformed(docs: list[dict], lines: list[str]) -> None:
    """Shard 0's malformed docs: counted invalid with file and line, never dropped silently."""
    no_text = dict(docs[0])
    del no_text["text_list"]
    bad_index = json.loads(lines[1])
    bad_index["image_info"][0]["matched_text_index"] = len(bad_index["text_list"]) + 3
    lines[2:2] = ['{"url": "http://broken.example.com/", "text_list": ["cut off', _dumps(no_text), "",
                  _dumps(bad_index)]


def build(ctx: SourceContext) -> None:
    repo = ctx.repo_dir(REPO)
    base = ctx.image_base
    n_docs = ctx.pick(test=8, demo=20)
    max_images = ctx.pick(test=2, demo=4)
    indices = shard_indices(ctx.scale)
    for index in indices:
        rng = ctx.rng("mmc4", index)
        version = "1.0" if index in V1_0_SHARDS else "1.1"
        docs = shard_docs(base, rng, index, n_docs, max_images, fault_rate=0.1, version=version)
        docs += _planted(base, rng, index, indices[-1], version)
        lines = [_dumps(d) for d in docs]
        if index == 0:
            _malformed(docs, lines)
        _write_shard(repo, index, lines, zipped=True)
    (repo / "README.md").write_text(
        "# mmc4-core-ff (sample world)\n\nA miniature of jmhessel/mmc4-core-ff for vila_assets tests and demo.\n"
    )
    (repo / ".gitattributes").write_text(GITATTRIBUTES)


def write_low_yield_shard(directory: str | Path, image_base: str, index: int = 9, n_docs: int = 6,
                          seed: int = 0) -> Path:
    """A shard where most image links are dead (image yield ~ 10 %): its yield check must fail."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"mmc4-low-yield-{seed}-{index}")
    docs = shard_docs(image_base, rng, index, n_docs, max_images=3, fault_rate=0.9)
    return _write_shard(directory, index, [_dumps(d) for d in docs], zipped=False)
