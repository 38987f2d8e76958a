"""Miniature ShareGPT4V sources (reference notes §6), with the problems VILA filtered planted in them.

- ``Lin-Chen/ShareGPT4V``: ``sharegpt4v_instruct_gpt4-vision_cap100k.json`` (GPT-4V detailed captions over
  COCO, SAM, LAION/CC/SBU-558K, WikiArt and web-text images) and
  ``share-captioner_coco_lcs_sam_1246k_1107.json`` (Share-Captioner PT captions).
- ``mit-han-lab/ShareGPT4V``: ``raw_data/llava_detail_23k.json`` (the LLaVA detail samples that the SFT
  recombination swaps out; the same samples as in the LLaVA source's mix665k).

Planted in both caption files, each listed in the answer key the generators return: captions that leak a SAM
file id (``sa_`` + digits), captions stuck repeating one sentence, captions looping on a phrase without
sentence breaks, and exact duplicates under a new id. Near misses that must survive are planted too
(``visa_2024`` / ``usa_7`` tags, a bare ``sa_`` prefix, a short sentence said twice).
"""

from __future__ import annotations

import json
import random

from vila_assets.sample_world.sources import SourceContext
from vila_assets.sample_world.sources.llava import BACKGROUNDS, _look, detail23k_records

CAPTIONS_REPO = "Lin-Chen/ShareGPT4V"
MIT_REPO = "mit-han-lab/ShareGPT4V"
CAP100K = "sharegpt4v_instruct_gpt4-vision_cap100k.json"
PT1246K = "share-captioner_coco_lcs_sam_1246k_1107.json"
DETAIL23K = "raw_data/llava_detail_23k.json"

CAPTION_PROMPTS = (
    "What do you see happening in this image?",
    "Can you describe the main features of this image for me?",
    "Explain the visual content of the image in great detail.",
    "Describe the following image.",
)
PT_PROMPT = "Analyze the image in a comprehensive and detailed manner."

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


def _caption(rng: random.Random, image: str) -> str:
    color, shape, _ = _look(image)
    bg = rng.choice(BACKGROUNDS)
    picks = rng.sample(_SENTENCES, rng.randint(4, 6))
    return " ".join(s.format(color=color, shape=shape, bg=bg) for s in picks)


def _image_path(rng: random.Random, k: int) -> tuple[str, str]:
    """(id, image) for caption sample ``k``: COCO, SAM, LLaVA-558K, WikiArt or ShareGPT4V web text."""
    kind = rng.choice(("coco", "coco", "sam", "sam", "llava", "wikiart", "share_textvqa"))
    if kind == "coco":
        rid = f"{rng.randrange(1, 581_929):012d}"
        return rid, f"coco/train2017/{rid}.jpg"
    if kind == "sam":
        rid = f"sa_{rng.randrange(1, 223_750)}"
        return rid, f"sam/images/{rid}.jpg"
    if kind == "llava":
        rid = f"{rng.randrange(0, 660):05d}{rng.randrange(10**4):04d}"
        return rid, f"llava/llava_pretrain/images/{rid[:5]}/{rid}.jpg"
    if kind == "wikiart":
        rid = f"art_{k}_{rng.randrange(10**6)}"
        return rid, f"wikiart/images/{rid}.jpg"
    rid = f"stv_{k}_{rng.randrange(10**6)}"
    return rid, f"share_textvqa/images/{rid}.jpg"


def _captions(ctx: SourceContext, name: str, n: int, prompts: tuple[str, ...], plant: dict[str, int]) -> tuple[list[dict], dict[str, str]]:
    """``n`` caption samples with ``plant[rule]`` planted failures each; returns (records, {id: rule})."""
    rng = ctx.rng("sharegpt4v", name)
    records: list[dict] = []
    seen_ids: set[str] = set()
    while len(records) < n:
        rid, image = _image_path(rng, len(records))
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
        for _ in range(count):
            i = slots.pop()
            rec = records[i]
            gpt = rec["conversations"][1]
            color, shape, _ = _look(rec["image"])
            if rule == "sam_id_leak":
                gpt["value"] += f" The source file is sa_{rng.randrange(10**5, 10**6)}.jpg from the dataset."
            elif rule == "repeated_sentence":
                loop = f" The {color} {shape} is in the middle of the image."
                gpt["value"] += loop * 4
            elif rule == "repeated_ngrams":
                gpt["value"] = "The image shows " + " ".join([f"a {color} {shape} next to"] * 12) + " a wall"
            elif rule == "duplicate_conversation":
                src = records[i - 1]
                records[i] = {**json.loads(json.dumps(src)), "id": f"{src['id']}_dup"}
                rec = records[i]
            answer[rec["id"]] = rule
    return records, answer


def cap100k_records(ctx: SourceContext) -> tuple[list[dict], dict[str, str]]:
    n = ctx.pick(test=30, demo=300)
    plant = {"sam_id_leak": ctx.pick(2, 6), "repeated_sentence": ctx.pick(1, 3),
             "repeated_ngrams": ctx.pick(1, 2), "duplicate_conversation": ctx.pick(1, 2)}
    return _captions(ctx, "cap100k", n, CAPTION_PROMPTS, plant)


def pt_records(ctx: SourceContext) -> tuple[list[dict], dict[str, str]]:
    n = ctx.pick(test=30, demo=400)
    plant = {"sam_id_leak": ctx.pick(1, 6), "repeated_sentence": ctx.pick(1, 2),
             "repeated_ngrams": ctx.pick(1, 2), "duplicate_conversation": ctx.pick(0, 1)}
    return _captions(ctx, "pt1246k", n, (PT_PROMPT,), plant)


def build(ctx: SourceContext) -> None:
    repo = ctx.repo_dir(CAPTIONS_REPO)
    (repo / CAP100K).write_bytes(json.dumps(cap100k_records(ctx)[0], ensure_ascii=False).encode())
    (repo / PT1246K).write_bytes(json.dumps(pt_records(ctx)[0], ensure_ascii=False).encode())
    mit = ctx.repo_dir(MIT_REPO)
    (mit / "raw_data").mkdir(parents=True, exist_ok=True)
    (mit / DETAIL23K).write_bytes(json.dumps(detail23k_records(ctx), ensure_ascii=False).encode())
