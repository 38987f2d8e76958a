"""Miniature ``MMInstruction/M3IT``: ``data/<category>/<task folder>/{train,val,test}.jsonl`` + ``instructions.json``.

Record shapes follow the upstream task files, whose field names differ per task (written out here per
task, independently of ``core.m3it``'s mapping): captioning files hold an image and a caption under
task-specific keys, the VQA files ``question`` / ``original_answer`` / ``paraphrased_answer`` / ``img_str``
(ivqa: ``video_str``, 8 frames), the generation/reasoning files prebuilt ``input`` / ``output`` /
``image_base64_str``, nlvr two images. Visual-dialog inputs carry the "Image Descriptions / Question /
Answer" history VILA's loader parses. Images are small base64 JPEGs of ``images.render_photo``.
Beside the 14 tasks VILA uses, ``science_qa`` (which VILA excludes: "nosqa") and a README exist.
A few records are broken on purpose: one textcap image is not base64, one gqa image is not an image,
and one clevr line is not JSON.
"""

from __future__ import annotations

import base64
import json

from vila_assets.sample_world.images import COLORS, SHAPES, caption, encode, render_photo
from vila_assets.sample_world.sources import SourceContext

REPO = "MMInstruction/M3IT"
_COLORS = tuple(COLORS)

# (category folder, task folder, instructions) — instruction strings shaped like upstream's.
_INSTRUCTIONS = {
    "image_paragraph_captioning": ["Write a detailed paragraph describing the image.", "Describe the picture in several sentences."],
    "textcap": ["Describe the image, including any text in it.", "Write a caption that mentions the visible text.", "Caption the image."],
    "multi30k": ["Translate the caption of the image into German.\n", "Render the English description in German.\n"],
    "visual_dialog": [
        "Given a captioned image and related dialog history, answer the following question.\n",
        "Utilize the provided image and conversation history to answer the inquiry.\n",
        "Based on the captioned picture and dialog history, provide an answer to the question.\n",
    ],
    "clevr": ["Answer the question about the rendered scene.", "Look at the objects and answer."],
    "nlvr": ["Decide whether the statement is true for the pair of images.", "Is the sentence true given both images?"],
    "visual_mrc": ["Read the text in the image and answer the question.\n", "Answer using the document shown.\n"],
    "docvqa": ["Answer the question based on the document image.", "Read the document and reply."],
    "gqa": ["Answer the compositional question about the scene.", "Reason about the image and answer."],
    "ivqa": ["Watch the video frames and answer the question.", "Answer the question about the instructional video."],
    "ocr-vqa": ["Answer the question about the book cover.", "Read the cover and answer."],
    "st-vqa": ["Answer using the scene text in the image.", "Read the text in the scene and reply."],
    "viquae": ["Answer the question about the named entity in the image.", "Use world knowledge and the image to answer."],
    "vqav2": ["Answer the question about the image.", "Look at the image and answer the question.", "Respond to the question."],
    "science_qa": ["Answer the science question."],
}
_LAYOUT = {
    "image_paragraph_captioning": "captioning",
    "textcap": "captioning",
    "multi30k": "generation",
    "visual_dialog": "generation",
    "clevr": "reasoning",
    "nlvr": "reasoning",
    "visual_mrc": "reasoning",
    "science_qa": "reasoning",
    "docvqa": "vqa",
    "gqa": "vqa",
    "ivqa": "vqa",
    "ocr-vqa": "vqa",
    "st-vqa": "vqa",
    "viquae": "vqa",
    "vqav2": "vqa",
}


def _photo_b64(rng, size=(40, 30)) -> tuple[str, str, str]:
    color, shape = rng.choice(_COLORS), rng.choice(SHAPES)
    img = render_photo(color, shape, rng.randint(0, 10_000), *size)
    return base64.b64encode(encode(img, quality=75)).decode("ascii"), color, shape


def _vqa(rng, image_key: str = "img_str", frames: int = 0) -> dict:
    if frames:
        shots = [_photo_b64(rng) for _ in range(frames)]
        image, color, shape = [s[0] for s in shots], shots[0][1], shots[0][2]
    else:
        image, color, shape = _photo_b64(rng)
    refuse = rng.random() < 0.2
    return {
        "question": f"What color is the {shape}?",
        "original_answer": color,
        "paraphrased_answer": (
            "Sorry, the question is not answerable from the image." if refuse else f"The {shape} is {color}."
        ),
        image_key: image,
    }


def _record(folder: str, rng, i: int) -> dict:
    if folder == "image_paragraph_captioning":
        img, color, shape = _photo_b64(rng)
        return {"image_str": img, "output": f"{caption(color, shape).capitalize()}. The background is a soft gradient. Nothing else is visible."}
    if folder == "textcap":
        img, color, shape = _photo_b64(rng)
        return {"image_base_url": img, "caption": f"a {color} {shape} with the word '{shape.upper()}' on it"}
    if folder == "multi30k":
        img, color, shape = _photo_b64(rng)
        return {"input": f"English: {caption(color, shape)}", "output": f"ein Foto von einem {color} {shape}", "image_base64_str": [img]}
    if folder == "visual_dialog":
        img, color, shape = _photo_b64(rng)
        turns = [(f"what shape is it?", f"a {shape}"), ("is there only one?", "yes")][: 1 + rng.randint(0, 1)]
        history = "".join(f"\nQuestion: {q}\nAnswer: {a}" for q, a in turns)
        return {
            "input": f"Image Descriptions: {caption(color, shape)}{history}\nQuestion: what color is the {shape}?\n",
            "output": f"it is {color}",
            "image_base64_str": [img],
        }
    if folder == "clevr":
        img, color, shape = _photo_b64(rng)
        return {"question": f"How many {color} objects are there?", "answer": "1", "image_str": img}
    if folder == "nlvr":
        (a, ca, sa), (b, cb, sb) = _photo_b64(rng), _photo_b64(rng)
        return {"question": f"The left image shows a {ca} {sa}.", "answer": "true", "images": [a, b]}
    if folder == "visual_mrc":
        img, color, shape = _photo_b64(rng)
        return {"input": f"Question: what does the page show?", "output": f"It shows a {color} {shape}.", "image_base64_str": img}
    if folder == "ivqa":
        return _vqa(rng, "video_str", frames=8)
    if folder == "science_qa":
        img, _, _ = _photo_b64(rng)
        return {"question": "Which is a mammal?", "answer": "whale", "image_str": img}
    return _vqa(rng)


def _broken(folder: str, rec: dict, i: int) -> dict | str:
    if folder == "textcap" and i == 2:
        return {**rec, "image_base_url": "this is not base64!"}
    if folder == "gqa" and i == 1:
        return {**rec, "img_str": base64.b64encode(b"<html>not an image</html>").decode()}
    if folder == "clevr" and i == 3:
        return '{"question": "truncated line'
    return rec


def build(ctx: SourceContext) -> None:
    root = ctx.repo_dir(REPO)
    (root / "README.md").write_text("# M3IT (miniature)\nMulti-modal multilingual instruction tuning; one folder per task.\n")
    n_train = ctx.pick(test=5, demo=40)
    for folder, category in _LAYOUT.items():
        d = root / "data" / category / folder
        d.mkdir(parents=True, exist_ok=True)
        (d / "instructions.json").write_text(json.dumps(_INSTRUCTIONS[folder]))
        for split, n in (("train", n_train), ("val", 2), ("test", 1)):
            rng = ctx.rng("m3it", folder, split)
            lines = []
            for i in range(n):
                rec = _record(folder, rng, i)
                rec = _broken(folder, rec, i) if split == "train" else rec
                lines.append(rec if isinstance(rec, str) else json.dumps(rec))
            (d / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
