"""Miniature ShareGPT4V sources: both repos VILA's data touches, with their real file names (reference
notes §6; ``upstream-sources.md`` §5), and the problems VILA filtered planted in the captions.

- ``Lin-Chen/ShareGPT4V`` (the raw release): ``sharegpt4v_instruct_gpt4-vision_cap100k.json`` (GPT-4V
  captions over COCO, SAM, LAION/CC/SBU-558K, WikiArt, web celebrity / landmark and text images),
  ``share-captioner_coco_lcs_sam_1246k_1107.json`` (Share-Captioner PT captions over COCO, LCS and SAM),
  ``sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json`` (mix665k with its detail samples
  swapped for captions), ``README.md``, ``.gitattributes``.
- ``mit-han-lab/ShareGPT4V`` (what VILA downloads): the published ``sharegpt4v_mix738k_remove_sa.json`` and
  ``filter-share-captioner_coco_lcs_sam_1246k_1107.json``, ``construct_sharegpt4v_sft.py``, ``filter.py``,
  ``run.sh``, an empty ``.gitignores`` (sic), ``.gitattributes`` and ``raw_data/`` (``llava_detail_23k.json``,
  ``llava_v1_5_mix665k.json``, and byte-identical copies of the two Lin-Chen caption files). No README.

The real ``filter.py`` and ``construct_sharegpt4v_sft.py`` are not readable. The fake repo's two scripts are
stand-ins that say so in their first line; the builder runs them (in ``run.sh``'s order) over ``raw_data/``
to make the published files, so those are exactly what the repo's own scripts give, and a subset of the raw
captions. The stand-in filter is one plausible reading of "drop sa_ ids and repetitive responses": broader
than our SAM rule (it drops ``visa_2024``), blind to phrase loops and duplicates -- so the ``vila`` and
``curated`` policies really differ here.

Planted in both caption files, each listed in the answer key the generators return (the rules of
``core.sharegpt4v``): captions that leak a SAM file id (``sa_`` + digits), captions stuck repeating one
sentence, captions looping on a phrase with spaces and glued without them, captions that are one n-gram
loop, and exact duplicates under a new id. Near misses that the curated rules must keep are planted too
(``visa_2024`` / ``usa_7`` tags, a bare ``sa_`` prefix, a short sentence said twice).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from vila_assets.sample_world.sources import SourceContext
from vila_assets.sample_world.sources.llava import BACKGROUNDS, _look, detail23k_records, mix665k_records

CAPTIONS_REPO = "Lin-Chen/ShareGPT4V"
MIT_REPO = "mit-han-lab/ShareGPT4V"
CAP100K = "sharegpt4v_instruct_gpt4-vision_cap100k.json"
PT1246K = "share-captioner_coco_lcs_sam_1246k_1107.json"
LIN_CHEN_SFT = "sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json"
MIX738K = "sharegpt4v_mix738k_remove_sa.json"
FILTERED_PT = "filter-share-captioner_coco_lcs_sam_1246k_1107.json"
DETAIL23K = "raw_data/llava_detail_23k.json"
RAW_MIX665K = "raw_data/llava_v1_5_mix665k.json"
CONSTRUCT_PY = "construct_sharegpt4v_sft.py"
FILTER_PY = "filter.py"
UNFILTERED = "sharegpt4v_sft_unfiltered.json"  # the stand-ins' intermediate; the real repo holds none

CAPTION_PROMPTS = (
    "What do you see happening in this image?",
    "Can you describe the main features of this image for me?",
    "Explain the visual content of the image in great detail.",
    "Describe the following image.",
)
PT_PROMPT = "Analyze the image in a comprehensive and detailed manner."
CAP100K_KINDS = ("coco", "coco", "sam", "sam", "llava", "wikiart", "web-celebrity", "web-landmark", "share_textvqa")
PT_KINDS = ("coco", "sam", "llava")  # coco_lcs_sam

_SENTENCES = (
    "The picture is dominated by a {color} {shape} placed close to the centre.",
    "Behind it lies {bg}, which gives the composition a calm feeling.",
    "Lighting appears even, without harsh shadows or highlights.",
    "The edges of the {shape} are crisp and clearly separated from the backdrop.",
    "No people, text or animals are visible anywhere in the frame.",
    "Its saturated {color} hue contrasts strongly with the muted surroundings.",
    "The overall style resembles a simple illustration made for teaching.",
    "A viewer would likely read this as an abstract study of form and colour.",
)
_NEAR_MISSES = (
    " A small tag reading visa_2024 hangs in one corner.",
    " Someone scribbled usa_7 on the border.",
    " The file naming uses an sa_ prefix, but no number is shown.",
    " It is plain. It is plain.",
)


def _dumps(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _caption(rng: random.Random, image: str) -> str:
    color, shape, _ = _look(image)
    bg = rng.choice(BACKGROUNDS)
    picks = rng.sample(_SENTENCES, rng.randint(4, 6))
    return " ".join(s.format(color=color, shape=shape, bg=bg) for s in picks)


def _image_path(kind: str, rng: random.Random, k: int) -> tuple[str, str]:
    """(id, image) for caption sample ``k`` of ``kind``, shaped like ShareGPT4V's ``data/`` layout."""
    if kind == "coco":
        rid = f"{rng.randrange(1, 581_929):012d}"
        return rid, f"coco/train2017/{rid}.jpg"
    if kind == "sam":
        rid = f"sa_{rng.randrange(1, 223_750)}"
        return rid, f"sam/images/{rid}.jpg"
    if kind == "llava":
        rid = f"{rng.randrange(0, 660):05d}{rng.randrange(10**4):04d}"
        return rid, f"llava/llava_pretrain/images/{rid[:5]}/{rid}.jpg"
    rid = f"{kind.replace('-', '_')}_{k}_{rng.randrange(10**6)}"
    return rid, f"{kind}/images/{rid}.jpg"


def _plant(rule: str, records: list[dict], i: int, rng: random.Random, variant: int) -> dict:
    """Record ``i`` turned into a sample ``rule`` removes; returns the (possibly new) record."""
    rec = records[i]
    gpt = rec["conversations"][1]
    color, shape, _ = _look(rec["image"])
    if rule == "sam_id_leak":
        gpt["value"] += f" The source file is sa_{rng.randrange(10**5, 10**6)}.jpg from the dataset."
    elif rule == "repeated_sentence":
        gpt["value"] += f" The {color} {shape} is in the middle of the image." * 4
    elif rule == "repeated_ngrams":
        gpt["value"] = "The image shows " + " ".join([f"a {color} {shape} next to"] * 12) + " a wall"
    elif rule == "phrase_loop" and variant % 2 == 0:  # spaced, no sentence break
        gpt["value"] += " Along the border runs" + f" the {color} {shape}" * 4
    elif rule == "phrase_loop":  # glued: no space between the copies
        gpt["value"] += " Its label reads " + f"a {color} {shape}" * 3 + "."
    elif rule == "duplicate_conversation":
        src = records[i - 1]
        rec = records[i] = {**json.loads(json.dumps(src)), "id": f"{src['id']}_dup"}
    return rec


def _captions(ctx: SourceContext, name: str, n: int, prompts: tuple[str, ...], kinds: tuple[str, ...],
              plant: dict[str, int]) -> tuple[list[dict], dict[str, str]]:
    """``n`` caption samples with ``plant[rule]`` planted failures each; returns (records, {id: rule})."""
    rng = ctx.rng("sharegpt4v", name)
    records: list[dict] = []
    seen_ids: set[str] = set()
    while len(records) < n:
        k = len(records)
        rid, image = _image_path(kinds[k % len(kinds)], rng, k)  # every kind, even at test scale
        if rid in seen_ids:
            continue
        seen_ids.add(rid)
        text = _caption(rng, image)
        if rng.random() < 0.15:
            text += rng.choice(_NEAR_MISSES)
        prompt = rng.choice(prompts)
        human = f"{prompt}\n<image>" if rng.random() < 0.7 else f"<image>\n{prompt}"
        records.append({"id": rid, "image": image,
                        "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": text}]})
    answer: dict[str, str] = {}
    # even slots only: a duplicate copies its odd neighbour, which no other plant touches
    slots = rng.sample(range(2, n, 2), sum(plant.values()))
    for rule, count in sorted(plant.items()):
        for variant in range(count):
            rec = _plant(rule, records, slots.pop(), rng, variant)
            answer[rec["id"]] = rule
    return records, answer


def cap100k_records(ctx: SourceContext) -> tuple[list[dict], dict[str, str]]:
    n = ctx.pick(test=40, demo=300)
    plant = {"sam_id_leak": ctx.pick(2, 6), "repeated_sentence": ctx.pick(1, 3), "repeated_ngrams": ctx.pick(1, 2),
             "phrase_loop": ctx.pick(2, 4), "duplicate_conversation": ctx.pick(1, 2)}
    return _captions(ctx, "cap100k", n, CAPTION_PROMPTS, CAP100K_KINDS, plant)


def pt_records(ctx: SourceContext) -> tuple[list[dict], dict[str, str]]:
    n = ctx.pick(test=30, demo=400)
    plant = {"sam_id_leak": ctx.pick(1, 6), "repeated_sentence": ctx.pick(1, 2), "repeated_ngrams": ctx.pick(1, 2),
             "phrase_loop": ctx.pick(2, 4), "duplicate_conversation": ctx.pick(0, 1)}
    return _captions(ctx, "pt1246k", n, (PT_PROMPT,), PT_KINDS, plant)


def lin_chen_sft_records(ctx: SourceContext) -> list[dict]:
    """ShareGPT4V's own SFT mix: mix665k with each detail-23k sample swapped, in place, for a caption
    sample (ShareGPT4V's "cap23k": COCO, LCS, SAM and diverse-source captions)."""
    detail = {(r["id"], json.dumps(r["conversations"])) for r in detail23k_records(ctx)}
    captions, answer = cap100k_records(ctx)
    clean = [r for r in captions if r["id"] not in answer]
    mix = mix665k_records(ctx)
    slots = [i for i, r in enumerate(mix) if (r["id"], json.dumps(r["conversations"])) in detail]
    picks = sorted(ctx.rng("sharegpt4v", "cap23k").sample(range(len(clean)), len(slots)))
    for i, k in zip(slots, picks):
        mix[i] = clean[k]
    return mix


def referenced_images(ctx: SourceContext) -> list[str]:
    """Every image path (relative to ShareGPT4V's ``data/`` root, which VILA's SFT registry maps to
    ``./playground/data``) that a file of either ShareGPT4V repo references. The published mit-han-lab files
    and Lin-Chen's SFT mix are subsets of mix665k and the two caption sets, so those three cover all."""
    paths = {r["image"] for r in mix665k_records(ctx) if "image" in r}
    for records, _ in (cap100k_records(ctx), pt_records(ctx)):
        paths |= {r["image"] for r in records}
    return sorted(paths)


# --- the repos ---------------------------------------------------------------------------------------------

_GITATTRIBUTES = """\
*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
*.json filter=lfs diff=lfs merge=lfs -text
"""

_LIN_CHEN_README = f"""\
---
license: cc-by-nc-4.0
task_categories:
- visual-question-answering
- question-answering
language:
- en
pretty_name: ShareGPT4V Captions 1.2M Dataset Card
configs:
- config_name: ShareGPT4V
  data_files: {CAP100K}
- config_name: ShareGPT4V-PT
  data_files: {PT1246K}
---
# ShareGPT4V 1.2M Dataset Card (sample world miniature)

Captions in LLaVA conversation format; image paths are relative to the ShareGPT4V `data/` folder.
"""

_CONSTRUCT_PY = f'''\
# STAND-IN, not mit-han-lab's construct_sharegpt4v_sft.py (2.33 kB, not readable): the sample world's guess.
"""The SFT mix before filter.py: LLaVA mix665k minus its detail-23k samples, plus the GPT-4V captions."""
import json
import sys
from pathlib import Path


def key(record):
    return record["id"], json.dumps(record["conversations"])


def construct(mix665k, detail23k, cap100k):
    detail = {{key(r) for r in detail23k}}
    return [r for r in mix665k if key(r) not in detail] + cap100k


def main(root="."):
    raw = Path(root) / "raw_data"
    load = lambda name: json.loads((raw / name).read_text(encoding="utf-8"))
    records = construct(load("llava_v1_5_mix665k.json"), load("llava_detail_23k.json"), load("{CAP100K}"))
    (Path(root) / "{UNFILTERED}").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:])
'''

_FILTER_PY = f'''\
# STAND-IN, not mit-han-lab's filter.py (2.03 kB, not readable): one reading of VILA's README.
"""Drop samples that mention SAM file ids (sa_XXXX) and samples with repetitive responses."""
import json
import re
import sys
from pathlib import Path

SAM_ID = re.compile(r"sa_\\d")
JOBS = (("{UNFILTERED}", "{MIX738K}"), ("raw_data/{PT1246K}", "{FILTERED_PT}"))


def repetitive(text):
    sentences = [s.strip().lower() for s in text.split(".") if s.strip()]
    if sentences and max(sentences.count(s) for s in sentences) >= 3:
        return True
    words = text.lower().split()
    return len(words) >= 20 and len(set(words)) / len(words) < 0.3


def keep(record):
    turns = record["conversations"]
    if any(SAM_ID.search(t["value"]) for t in turns):
        return False
    return not any(repetitive(t["value"]) for t in turns if t["from"] == "gpt")


def main(root="."):
    for src, dst in JOBS:
        records = json.loads((Path(root) / src).read_text(encoding="utf-8"))
        kept = [r for r in records if keep(r)]
        (Path(root) / dst).write_text(json.dumps(kept, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:])
'''

_RUN_SH = f"python {CONSTRUCT_PY}; python {FILTER_PY}\n"


def _run_standins(repo: Path) -> None:
    """What ``run.sh`` does, in this process: each stand-in's ``main`` over the repo."""
    for name in (CONSTRUCT_PY, FILTER_PY):
        script = repo / name
        namespace: dict = {"__name__": f"sample_world_{script.stem}"}
        exec(compile(script.read_text(encoding="utf-8"), str(script), "exec"), namespace)
        namespace["main"](str(repo))
    (repo / UNFILTERED).unlink()  # the real repo holds no intermediate file


def _build_lin_chen(ctx: SourceContext) -> dict[str, bytes]:
    repo = ctx.repo_dir(CAPTIONS_REPO)
    captions = {CAP100K: _dumps(cap100k_records(ctx)[0]), PT1246K: _dumps(pt_records(ctx)[0])}
    for name, data in captions.items():
        (repo / name).write_bytes(data)
    (repo / LIN_CHEN_SFT).write_bytes(_dumps(lin_chen_sft_records(ctx)))
    (repo / "README.md").write_text(_LIN_CHEN_README, encoding="utf-8")
    (repo / ".gitattributes").write_text(_GITATTRIBUTES, encoding="utf-8")
    return captions


def _build_mit(ctx: SourceContext, captions: dict[str, bytes]) -> None:
    repo = ctx.repo_dir(MIT_REPO)
    raw = repo / "raw_data"
    raw.mkdir(parents=True, exist_ok=True)
    for name, data in captions.items():
        (raw / name).write_bytes(data)  # byte-identical to Lin-Chen's [V]
    (repo / DETAIL23K).write_bytes(_dumps(detail23k_records(ctx)))
    (repo / RAW_MIX665K).write_bytes(_dumps(mix665k_records(ctx)))
    (repo / CONSTRUCT_PY).write_text(_CONSTRUCT_PY, encoding="utf-8")
    (repo / FILTER_PY).write_text(_FILTER_PY, encoding="utf-8")
    (repo / "run.sh").write_text(_RUN_SH, encoding="utf-8")
    (repo / ".gitignores").write_bytes(b"")  # 0 B, sic
    (repo / ".gitattributes").write_text(_GITATTRIBUTES, encoding="utf-8")
    _run_standins(repo)


def build(ctx: SourceContext) -> None:
    _build_mit(ctx, _build_lin_chen(ctx))
