"""Miniature LLaVA sources and the image archives the SFT data needs (upstream-sources.md §6).

Hub repos, with the real ids, file names and record shapes:

- ``liuhaotian/LLaVA-CC3M-Pretrain-595K``: ``chat.json`` (ids ``GCC_train_#########``, bare image file
  names, a "describe briefly" prompt with ``<image>`` before or after it, the raw caption as answer),
  ``metadata.json``, ``images.zip`` (bare file names at the zip root, as ``unzip -d images`` expects),
  ``README.md``, ``.gitattributes``. Planted: one record whose image is not in the zip, one truncated JPEG.
- ``liuhaotian/LLaVA-Pretrain``: ``blip_laion_cc_sbu_558k.json`` (images ``00453/004539375.jpg``),
  ``blip_laion_cc_sbu_558k_meta.json``, ``images.zip`` (those paths at its top level) and ``README.md``.
  It holds every ``llava/llava_pretrain/images/...`` image ShareGPT4V references.
- ``liuhaotian/LLaVA-Instruct-150K``: ``llava_v1_5_mix665k.json`` (COCO conversation / detail / reasoning
  samples sharing COCO image ids, GQA, OCR-VQA, TextVQA, VG parts 1 and 2, text-only ShareGPT) and the
  LLaVA-158K files over the same COCO samples with bare image names: ``conversation_58k.json``,
  ``detail_23k.json``, ``complex_reasoning_77k.json``, ``llava_instruct_150k.json`` (the three together)
  and ``llava_instruct_80k.json`` (conversation + reasoning).

The archive host (``sample_world.archive_web``) serves, at the official URL paths, one archive per image
root holding every image mix665k and ShareGPT4V reference there plus a few nobody references; OCR-VQA's
``dataset.json`` with Amazon cover URLs (some covers GIF) and the covers themselves.

Pure functions of ``ctx.seed`` and ``ctx.scale``; ShareGPT4V's source reuses :func:`mix665k_records`.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import zipfile

from PIL import Image

from vila_assets.core.llava_json import image_root
from vila_assets.sample_world.images import COLORS, SHAPES, caption, encode, render_photo
from vila_assets.sample_world.sources import SourceContext

CC3M_REPO = "liuhaotian/LLaVA-CC3M-Pretrain-595K"
PRETRAIN_REPO = "liuhaotian/LLaVA-Pretrain"
INSTRUCT_REPO = "liuhaotian/LLaVA-Instruct-150K"

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed entry times: the same seed gives the same archive bytes
_SIZE = (80, 60)

BRIEF_PROMPTS = (
    "Provide a brief description of the given image.",
    "Describe the image concisely.",
    "Give a short and clear explanation of the subsequent image.",
    "Share a concise interpretation of the image provided.",
    "Write a terse but informative summary of the picture.",
)
DETAIL_PROMPTS = (
    "Describe the following image in detail.",
    "What do you see happening in this image?",
    "Can you elaborate on the elements of the picture provided?",
    "Explain the visual content of the image in great detail.",
)
BACKGROUNDS = ("a soft gradient", "a textured wall", "a pale backdrop", "a noisy grey surface")
README = "---\nlicense: cc-by-4.0\n---\n# {name}\n\nMiniature of the dataset card.\n"
GITATTRIBUTES = "*.zip filter=lfs diff=lfs merge=lfs -text\n*.json filter=lfs diff=lfs merge=lfs -text\n"


def _dumps(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=None).encode("utf-8")


def _look(path: str) -> tuple[str, str, int]:
    """The (colour, shape, seed) an image path shows; a pure function of the path."""
    h = int.from_bytes(hashlib.sha256(path.encode()).digest()[:8], "little")
    colors = sorted(COLORS)
    return colors[h % len(colors)], SHAPES[(h // 7) % len(SHAPES)], 1_000_000 + h % 1_000_000


def image_bytes(path: str, fmt: str = "JPEG") -> bytes:
    color, shape, seed = _look(path)
    img = render_photo(color, shape, seed, *_SIZE)
    if fmt == "GIF":
        return encode(img.convert("P", palette=Image.Palette.ADAPTIVE, colors=64), "GIF")
    return encode(img, fmt, quality=85)


def describe(path: str) -> str:
    color, shape, _ = _look(path)
    return caption(color, shape)


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])
    return out.getvalue()


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            tf.addfile(info, io.BytesIO(files[name]))
    return out.getvalue()


def _repo_files(ctx: SourceContext, repo_id: str, files: dict[str, bytes]) -> None:
    repo = ctx.repo_dir(repo_id)
    for name, data in files.items():
        (repo / name).write_bytes(data)


# --- CC3M-595K -------------------------------------------------------------------------------------------


def cc3m_records(ctx: SourceContext) -> tuple[list[dict], dict[str, str]]:
    """chat.json records, plus the planted problems ``{image file: "missing" | "corrupt"}``."""
    rng = ctx.rng("llava", "cc3m")
    n = ctx.pick(test=10, demo=120)
    records = []
    for k in sorted(rng.sample(range(3_318_333), n)):
        rid = f"GCC_train_{k:09d}"
        image = f"{rid}.jpg"
        prompt = rng.choice(BRIEF_PROMPTS)
        human = f"{prompt}\n<image>" if rng.random() < 0.5 else f"<image>\n{prompt}"
        records.append({"id": rid, "image": image, "conversations": [
            {"from": "human", "value": human}, {"from": "gpt", "value": describe(image)}]})
    planted = {records[3]["image"]: "missing", records[5]["image"]: "corrupt"}
    return records, planted


def _cc3m_images(records: list[dict], planted: dict[str, str]) -> dict[str, bytes]:
    files = {}
    for r in records:
        kind = planted.get(r["image"])
        if kind == "missing":
            continue
        data = image_bytes(r["image"])
        files[r["image"]] = data[: len(data) // 3] if kind == "corrupt" else data
    return files


def _build_cc3m(ctx: SourceContext) -> None:
    records, planted = cc3m_records(ctx)
    meta = [{"id": r["id"], "image": r["image"], "caption": r["conversations"][1]["value"],
             "blip_caption": r["conversations"][1]["value"], "url": f"{ctx.image_base}/cc3m/{r['id']}.jpg"}
            for r in records]
    _repo_files(ctx, CC3M_REPO, {
        "chat.json": _dumps(records), "metadata.json": _dumps(meta),
        "images.zip": _zip(_cc3m_images(records, planted)),
        "README.md": README.format(name="LLaVA-CC3M-Pretrain-595K").encode(), ".gitattributes": GITATTRIBUTES.encode(),
    })


# --- LLaVA-Pretrain (558K) ---------------------------------------------------------------------------------


def pretrain_records(ctx: SourceContext, wanted: set[str] = frozenset()) -> list[dict]:
    """blip_laion_cc_sbu_558k.json: the ``wanted`` images (``00453/004539375.jpg``) plus a few others."""
    rng = ctx.rng("llava", "pretrain")
    images = set(wanted) | {f"{k // 10_000:05d}/{k:09d}.jpg" for k in rng.sample(range(6_600_000), ctx.pick(3, 12))}
    records = []
    for image in sorted(images):
        rid = image.rsplit("/", 1)[-1].removesuffix(".jpg")
        records.append({"id": rid, "image": image, "conversations": [
            {"from": "human", "value": f"<image>\n{rng.choice(BRIEF_PROMPTS)}"},
            {"from": "gpt", "value": describe(f"llava/llava_pretrain/images/{image}")}]})
    return records


def _build_pretrain(ctx: SourceContext, wanted: set[str]) -> None:
    records = pretrain_records(ctx, wanted)  # ``wanted`` already holds its extras: none are added twice
    meta = [{"id": r["id"], "image": r["image"], "blip_caption": r["conversations"][1]["value"],
             "url": f"{ctx.image_base}/laion/{r['id']}.jpg"} for r in records]
    zipped = {r["image"]: image_bytes(f"llava/llava_pretrain/images/{r['image']}") for r in records}
    _repo_files(ctx, PRETRAIN_REPO, {
        "blip_laion_cc_sbu_558k.json": _dumps(records), "blip_laion_cc_sbu_558k_meta.json": _dumps(meta),
        "images.zip": _zip(zipped), "README.md": README.format(name="LLaVA-Pretrain").encode(),
    })


# --- mix665k and LLaVA-Instruct-158K ---------------------------------------------------------------------


def _turns(*pairs: tuple[str, str]) -> list[dict]:
    out = []
    for q, a in pairs:
        out += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    return out


def _coco_samples(ctx: SourceContext) -> list[tuple[str, dict]]:
    """The LLaVA-158K part of mix665k as ``(kind, record)``, kind conversation / detail / reasoning."""
    rng = ctx.rng("llava", "mix665k")
    out: list[tuple[str, dict]] = []
    for cid in sorted(rng.sample(range(1, 581_929), ctx.pick(test=4, demo=40))):
        rid = f"{cid:012d}"
        image = f"coco/train2017/{rid}.jpg"
        color, shape, _ = _look(image)
        bg = rng.choice(BACKGROUNDS)
        out.append(("conversation", {"id": rid, "image": image, "conversations": _turns(
            ("<image>\nWhat is the main object in the image?", f"The main object is a {color} {shape}."),
            (f"Where is the {shape} placed?", f"It sits near the middle of the picture, in front of {bg}."),
        )}))
        out.append(("detail", {"id": rid, "image": image, "conversations": _turns(
            (f"{rng.choice(DETAIL_PROMPTS)}\n<image>",
             f"The image shows a single {color} {shape} drawn on {bg}. The {shape} takes up about half of the "
             f"frame, and its edges are sharp. Nothing else competes for attention in the scene."),
        )}))
        if rng.random() < 0.5:
            out.append(("reasoning", {"id": rid, "image": image, "conversations": _turns(
                ("<image>\nWhat might this picture be used for?",
                 f"A plain {color} {shape} like this could serve as a teaching card for colours and shapes."),
            )}))
    return out


def _vqa_stem(rng, prefix: str, root: str) -> str:
    if root == "ocr_vqa/images":  # ISBN-10 style book ids, a check digit X now and then
        digits = f"{rng.randrange(10**9):09d}"
        return digits + rng.choice("0123456789X")
    k = rng.randrange(10_000, 9_999_999)
    return hashlib.sha1(str(k).encode()).hexdigest()[:16] if prefix == "t" else f"{prefix}{k}"


def mix665k_records(ctx: SourceContext) -> list[dict]:
    """llava_v1_5_mix665k.json in upstream order: the LLaVA-158K part first, then VQA sets, then ShareGPT."""
    recs = [rec for _, rec in _coco_samples(ctx)]
    rng = ctx.rng("llava", "mix665k-vqa")
    for prefix, root, count in (("n", "gqa/images", ctx.pick(3, 30)), ("", "ocr_vqa/images", ctx.pick(3, 20)),
                                ("t", "textvqa/train_images", ctx.pick(2, 20)), ("", "vg/VG_100K", ctx.pick(2, 20)),
                                ("", "vg/VG_100K_2", ctx.pick(1, 10))):
        for stem in sorted({_vqa_stem(rng, prefix, root) for _ in range(count)}):
            image = f"{root}/{stem}.jpg"
            color, shape, _ = _look(image)
            recs.append({"id": stem, "image": image, "conversations": _turns(
                (f"<image>\nWhat colour is the {shape}?\nAnswer the question using a single word or phrase.", color),
                ("What shape is shown?", shape),
            )})
    for k in range(ctx.pick(2, 16)):
        rid = f"sg{rng.randrange(16**6):06x}_{k % 3}"
        recs.append({"id": rid, "conversations": _turns(
            (f"Name a primary colour number {k}.", rng.choice(["Red.", "Blue.", "Yellow."])),
        )})
    return recs


def instruct158k_records(ctx: SourceContext, kind: str) -> list[dict]:
    """One LLaVA-158K file's records (``conversation``, ``detail`` or ``reasoning``), bare image names."""
    return [{**rec, "image": rec["image"].rsplit("/", 1)[-1]} for k, rec in _coco_samples(ctx) if k == kind]


def detail23k_records(ctx: SourceContext) -> list[dict]:
    """The detail-description samples of mix665k as ``detail_23k.json`` holds them (bare image names)."""
    return instruct158k_records(ctx, "detail")


def _build_instruct(ctx: SourceContext) -> None:
    conv, detail, reasoning = (instruct158k_records(ctx, k) for k in ("conversation", "detail", "reasoning"))
    _repo_files(ctx, INSTRUCT_REPO, {
        "llava_v1_5_mix665k.json": _dumps(mix665k_records(ctx)),
        "llava_instruct_150k.json": _dumps(conv + detail + reasoning),
        "llava_instruct_80k.json": _dumps(conv[: len(conv) // 2 + 1] + reasoning[: len(reasoning) // 2 + 1]),
        "conversation_58k.json": _dumps(conv),
        "detail_23k.json": _dumps(detail),
        "complex_reasoning_77k.json": _dumps(reasoning),
    })


# --- image archives --------------------------------------------------------------------------------------


def referenced_images(ctx: SourceContext) -> list[str]:
    """Every image path (relative to ./playground/data) that mix665k and ShareGPT4V reference (ShareGPT4V's
    list covers mix665k, which its SFT files are built from)."""
    from vila_assets.sample_world.sources import sharegpt4v

    return sorted({r["image"] for r in mix665k_records(ctx) if "image" in r} | set(sharegpt4v.referenced_images(ctx)))


def root_images(ctx: SourceContext) -> dict[str, list[str]]:
    """Per image root, the names (relative to it) its archive holds: every referenced image and two that
    nobody references."""
    from vila_assets.core.image_roots import IMAGE_ROOTS

    by_root: dict[str, set[str]] = {root: set() for root in IMAGE_ROOTS}
    for path in referenced_images(ctx):
        root = image_root(path)
        by_root.setdefault(root, set()).add(path[len(root) + 1:])
    rng = ctx.rng("llava", "unreferenced")
    for root, names in by_root.items():
        if root != "llava/llava_pretrain/images":  # pretrain_records adds LLaVA-Pretrain's own
            names |= {_unreferenced_name(rng, root) for _ in range(2)}
    pretrain = by_root["llava/llava_pretrain/images"]
    by_root["llava/llava_pretrain/images"] = {r["image"] for r in pretrain_records(ctx, pretrain)}
    return {root: sorted(names) for root, names in by_root.items()}


def _unreferenced_name(rng, root: str) -> str:
    """An image name in the style of ``root`` that no sample-world record uses."""
    k = rng.randrange(600_000, 999_999)
    if root == "coco/train2017":
        return f"{k:012d}.jpg"
    if root == "sam/images":
        return f"sa_{k}.jpg"
    if root in ("gqa/images", "textvqa/train_images", "ocr_vqa/images"):
        return f"{_vqa_stem(rng, 'n' if root.startswith('gqa') else 't', root)}.jpg"
    return f"{k}.jpg"


def _archive_files(root: str, names: list[str], strip: str, part: int, parts: int) -> dict[str, bytes]:
    """One archive's entries: every ``parts``-th image of the root, under ``strip``; SA-1B tars also carry
    an annotation ``.json`` per image, as the real ones do."""
    files = {}
    for name in names[part::parts]:
        entry = f"{strip}/{name}" if strip else name
        files[entry] = image_bytes(f"{root}/{name}")
        if root == "sam/images":
            files[entry.removesuffix(".jpg") + ".json"] = _dumps({"image": {"file_name": name}, "annotations": []})
    return files


def _build_archives(ctx: SourceContext, by_root: dict[str, list[str]]) -> None:
    from vila_assets.core.image_roots import CRAWLED_ROOT, HUB_ROOT
    from vila_assets.sample_world.archive_web import archives_dir, served_archives

    out = archives_dir(ctx)
    for root, archives in served_archives().items():
        if root in (HUB_ROOT, CRAWLED_ROOT):
            continue
        for i, (path, strip, _) in enumerate(archives):
            files = _archive_files(root, by_root[root], strip, i, len(archives))
            target = out / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_tar(files) if path.endswith(".tar") else _zip(files))


def ocr_vqa_dataset(ctx: SourceContext, books: list[str]) -> dict[str, dict]:
    """OCR-VQA's dataset.json: every book with its Amazon cover URL (one in three a GIF) and its questions."""
    rng = ctx.rng("llava", "ocr-vqa")
    data = {}
    for i, book in enumerate(books):
        code = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10))
        color, shape, _ = _look(f"ocr_vqa/images/{book}.jpg")
        data[book] = {
            "imageURL": f"http://ecx.images-amazon.com/images/I/{code}L.{'gif' if i % 3 == 1 else 'jpg'}",
            "questions": ["Who wrote this book?", "What is the title of this book?", "What is the genre of this book?"],
            "answers": ["Ann Author", f"The {color.title()} {shape.title()}", "Arts & Photography"],
            "title": f"The {color.title()} {shape.title()}", "authorName": "Ann Author",
            "genre": "Arts & Photography", "split": 1 + i % 3,
        }
    return data


def _build_ocr_vqa(ctx: SourceContext, names: list[str]) -> None:
    from vila_assets.sample_world.archive_web import OCR_VQA_DATASET, archives_dir

    out = archives_dir(ctx)
    books = [name.removesuffix(".jpg") for name in names]
    data = ocr_vqa_dataset(ctx, books)
    for book, entry in data.items():
        path = entry["imageURL"].split("://", 1)[1].split("/", 1)[1]
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(image_bytes(f"ocr_vqa/images/{book}.jpg", "GIF" if path.endswith(".gif") else "JPEG"))
    (out / OCR_VQA_DATASET.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    (out / OCR_VQA_DATASET.lstrip("/")).write_bytes(_dumps(data))


def build(ctx: SourceContext) -> None:
    from vila_assets.core.image_roots import CRAWLED_ROOT, HUB_ROOT
    from vila_assets.sample_world.archive_web import archives_dir

    shutil.rmtree(archives_dir(ctx), ignore_errors=True)
    by_root = root_images(ctx)
    _build_cc3m(ctx)
    _build_pretrain(ctx, set(by_root[HUB_ROOT]))
    _build_instruct(ctx)
    _build_archives(ctx, by_root)
    _build_ocr_vqa(ctx, by_root[CRAWLED_ROOT])
