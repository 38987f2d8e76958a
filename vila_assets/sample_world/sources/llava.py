"""Miniature LLaVA sources: CC3M-595K (alignment), LLaVA-Instruct-150K (mix665k) and the image roots.

Repos, with the real ids, file names and record shapes (reference notes §1, §4):

- ``liuhaotian/LLaVA-CC3M-Pretrain-595K``: ``chat.json`` (ids ``GCC_train_#########``, bare image file
  names, a "describe briefly" prompt with ``<image>`` before or after it, the raw caption as answer),
  ``metadata.json`` and ``images.zip`` (bare file names at the zip root, as ``unzip -d images`` expects).
  Planted: one record whose image is not in the zip, one truncated (undecodable) JPEG.
- ``liuhaotian/LLaVA-Instruct-150K``: ``llava_v1_5_mix665k.json`` (COCO conversation / detail / reasoning
  samples sharing COCO image ids, GQA, OCR-VQA, TextVQA, VG parts 1 and 2, text-only ShareGPT) and
  ``detail_23k.json`` (the detail samples, bare image names, as upstream).
- ``vila-assets/sft-image-roots`` (sample world only; real roots come from COCO, GQA, ... downloads):
  ``image_roots.json`` mapping each image root (``coco/train2017``...) to a zip of bare file names, holding
  every image mix665k and the ShareGPT4V caption set reference, so the presence report has something to
  find. ``env()`` points the ``sft_image_roots`` asset at it.

Pure functions of ``ctx.seed`` and ``ctx.scale``; ShareGPT4V's source reuses :func:`mix665k_records`.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

from vila_assets.sample_world.images import COLORS, SHAPES, caption, encode, render_photo
from vila_assets.sample_world.sources import SourceContext

CC3M_REPO = "liuhaotian/LLaVA-CC3M-Pretrain-595K"
INSTRUCT_REPO = "liuhaotian/LLaVA-Instruct-150K"
IMAGE_ROOTS_REPO = "vila-assets/sft-image-roots"

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed entry times: the same seed gives the same zip bytes
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


def _dumps(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=None).encode("utf-8")


def _look(path: str) -> tuple[str, str, int]:
    """The (colour, shape, seed) an image path shows; a pure function of the path."""
    h = int.from_bytes(hashlib.sha256(path.encode()).digest()[:8], "little")
    colors = sorted(COLORS)
    return colors[h % len(colors)], SHAPES[(h // 7) % len(SHAPES)], 1_000_000 + h % 1_000_000


def image_bytes(path: str) -> bytes:
    color, shape, seed = _look(path)
    return encode(render_photo(color, shape, seed, *_SIZE), "JPEG", quality=85)


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


# --- CC3M-595K -------------------------------------------------------------------------------------------


def cc3m_records(ctx: SourceContext) -> tuple[list[dict], dict[str, str]]:
    """chat.json records, plus the planted problems ``{image file: "missing" | "corrupt"}``."""
    rng = ctx.rng("llava", "cc3m")
    n = ctx.pick(test=10, demo=120)
    ids = sorted(rng.sample(range(3_318_333), n))
    records = []
    for k in ids:
        rid = f"GCC_train_{k:09d}"
        image = f"{rid}.jpg"
        prompt = rng.choice(BRIEF_PROMPTS)
        human = f"{prompt}\n<image>" if rng.random() < 0.5 else f"<image>\n{prompt}"
        records.append(
            {
                "id": rid,
                "image": image,
                "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": describe(image)}],
            }
        )
    planted = {records[3]["image"]: "missing", records[5]["image"]: "corrupt"}
    return records, planted


def _build_cc3m(ctx: SourceContext) -> None:
    records, planted = cc3m_records(ctx)
    repo = ctx.repo_dir(CC3M_REPO)
    (repo / "chat.json").write_bytes(_dumps(records))
    meta = [
        {
            "id": r["id"],
            "image": r["image"],
            "caption": r["conversations"][1]["value"],
            "blip_caption": r["conversations"][1]["value"],
            "url": f"{ctx.image_base}/cc3m/{r['id']}.jpg",
        }
        for r in records
    ]
    (repo / "metadata.json").write_bytes(_dumps(meta))
    files = {}
    for r in records:
        kind = planted.get(r["image"])
        if kind == "missing":
            continue
        data = image_bytes(r["image"])
        files[r["image"]] = data[: len(data) // 3] if kind == "corrupt" else data
    (repo / "images.zip").write_bytes(_zip(files))


# --- mix665k ---------------------------------------------------------------------------------------------


def _turns(*pairs: tuple[str, str]) -> list[dict]:
    out = []
    for q, a in pairs:
        out += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    return out


def mix665k_records(ctx: SourceContext) -> list[dict]:
    """llava_v1_5_mix665k.json in upstream order: the LLaVA-158K part first, then VQA sets, then ShareGPT."""
    rng = ctx.rng("llava", "mix665k")
    n = ctx.pick(test=4, demo=40)
    recs: list[dict] = []
    for cid in sorted(rng.sample(range(1, 581_929), n)):
        rid = f"{cid:012d}"
        image = f"coco/train2017/{rid}.jpg"
        color, shape, _ = _look(image)
        bg = rng.choice(BACKGROUNDS)
        recs.append({"id": rid, "image": image, "conversations": _turns(
            (f"<image>\nWhat is the main object in the image?", f"The main object is a {color} {shape}."),
            (f"Where is the {shape} placed?", f"It sits near the middle of the picture, in front of {bg}."),
        )})
        recs.append({"id": rid, "image": image, "conversations": _turns(
            (f"{rng.choice(DETAIL_PROMPTS)}\n<image>",
             f"The image shows a single {color} {shape} drawn on {bg}. The {shape} takes up about half of the "
             f"frame, and its edges are sharp. Nothing else competes for attention in the scene."),
        )})
        if rng.random() < 0.5:
            recs.append({"id": rid, "image": image, "conversations": _turns(
                ("<image>\nWhat might this picture be used for?",
                 f"A plain {color} {shape} like this could serve as a teaching card for colours and shapes."),
            )})
    for prefix, root, count in (
        ("n", "gqa/images", ctx.pick(3, 30)),
        ("", "ocr_vqa/images", ctx.pick(2, 20)),
        ("t", "textvqa/train_images", ctx.pick(2, 20)),
        ("", "vg/VG_100K", ctx.pick(2, 20)),
        ("", "vg/VG_100K_2", ctx.pick(1, 10)),
    ):
        for k in sorted(rng.sample(range(10_000, 9_999_999), count)):
            stem = f"{prefix}{k}" if prefix != "t" else hashlib.sha1(str(k).encode()).hexdigest()[:16]
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


def detail23k_records(ctx: SourceContext) -> list[dict]:
    """The detail-description samples of mix665k as ``detail_23k.json`` holds them (bare image names)."""
    out = []
    for rec in mix665k_records(ctx):
        if rec.get("image", "").startswith("coco/") and rec["conversations"][0]["value"].split("\n")[0] in DETAIL_PROMPTS:
            out.append({**rec, "image": rec["image"].rsplit("/", 1)[-1]})
    return out


def _build_instruct(ctx: SourceContext) -> None:
    repo = ctx.repo_dir(INSTRUCT_REPO)
    (repo / "llava_v1_5_mix665k.json").write_bytes(_dumps(mix665k_records(ctx)))
    (repo / "detail_23k.json").write_bytes(_dumps(detail23k_records(ctx)))


# --- image roots -----------------------------------------------------------------------------------------


def referenced_images(ctx: SourceContext) -> list[str]:
    """Every image path (relative to ./playground/data) that mix665k and the ShareGPT4V captions use."""
    from vila_assets.sample_world.sources.sharegpt4v import cap100k_records

    paths = {r["image"] for r in mix665k_records(ctx) if "image" in r}
    paths |= {r["image"] for r in cap100k_records(ctx)[0] if "image" in r}
    return sorted(paths)


def _build_image_roots(ctx: SourceContext) -> None:
    from vila_assets.core.llava_json import image_root

    by_root: dict[str, dict[str, bytes]] = {}
    for path in referenced_images(ctx):
        root = image_root(path)
        by_root.setdefault(root, {})[path[len(root) + 1 :]] = image_bytes(path)
    repo = ctx.repo_dir(IMAGE_ROOTS_REPO)
    index = {}
    for root, files in sorted(by_root.items()):
        name = root.replace("/", "__") + ".zip"
        (repo / name).write_bytes(_zip(files))
        index[root] = name
    (repo / "image_roots.json").write_bytes(_dumps(index))


def build(ctx: SourceContext) -> None:
    _build_cc3m(ctx)
    _build_instruct(ctx)
    _build_image_roots(ctx)
