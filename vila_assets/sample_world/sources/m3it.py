"""Miniature ``MMInstruction/M3IT`` with the real repo's layout (reference: upstream-sources §1).

Root: ``data/``, ``.gitattributes``, ``.gitignore``, ``M3IT.py`` (the loading script; a stand-in here, never
run), ``README.md``. Per task, the real folder and file names (:data:`TASK_FILES`, written out here,
independently of ``core.m3it``): folders that differ from the config names (``visual_dialog``,
``visual_mrc``, ``vqav2``), ``instruction.json`` for four tasks and ``instructions.json`` for the rest,
``image_paragraph_captioning_{train,val,test}.jsonl``, ``val`` vs ``validation`` vs no validation split,
viquae's ``*_v2.jsonl`` beside its old ``train/validation/test.jsonl`` (a different schema: a reader of the
wrong file would show it), dated "rephrased" files (``meta`` + ``answer`` records) for visual-dialog and
clevr, ocr-vqa's ``train_new.jsonl`` byte-identical to ``train.jsonl``, ivqa's ``README.md``, and the
multi30k instruction file tracked by LFS in ``.gitattributes``.

Raw records: verified shapes where the reference has them (docvqa ``question``/``answer``/``image_str`` with
no ``original_answer``; viquae ``question``/``paraphrased_answer``/``img_str``; image-paragraph ``output``);
elsewhere one plausible reading per task (the reader accepts the others). Visual-dialog inputs carry the
"Image Descriptions / Question / Answer" history VILA's loader parses. Images are small base64 JPEGs.
``science_qa`` stands for the ~35 task folders VILA does not use ("nosqa"). A few train records are broken
on purpose: one textcap image is not base64, one gqa image is not an image, one clevr line is not JSON.
"""

from __future__ import annotations

import base64
import json

from vila_assets.sample_world.images import COLORS, SHAPES, caption, encode, render_photo
from vila_assets.sample_world.sources import SourceContext

REPO = "MMInstruction/M3IT"
_COLORS = tuple(COLORS)

# folder -> ((file name, kind), ...), instruction file name
# split kinds: "train" (the file VILA's config reads), "other" (val/test), "old" (viquae's pre-v2 files),
# "rephrased" (dated files of the -rephrased configs), "copy" (ocr-vqa's train_new.jsonl).
IJ, ISJ = "instruction.json", "instructions.json"
TASK_FILES: dict[str, tuple[tuple[tuple[str, str], ...], str]] = {
    "data/captioning/image_paragraph_captioning": (
        (("image_paragraph_captioning_train.jsonl", "train"), ("image_paragraph_captioning_val.jsonl", "other"),
         ("image_paragraph_captioning_test.jsonl", "other")), IJ),
    "data/captioning/textcap": ((("train.jsonl", "train"), ("val.jsonl", "other")), ISJ),
    "data/generation/multi30k": ((("train.jsonl", "train"), ("val.jsonl", "other"), ("test.jsonl", "other")), ISJ),
    "data/generation/visual_dialog": (
        (("train.jsonl", "train"), ("val.jsonl", "other"), ("test.jsonl", "other"),
         ("train_2023-10-09.jsonl", "rephrased"), ("test_2023-10-10.jsonl", "rephrased")), ISJ),
    "data/reasoning/clevr": (
        (("train.jsonl", "train"), ("val.jsonl", "other"), ("train_2023-10-07.jsonl", "rephrased"),
         ("val_2023-10-07.jsonl", "rephrased")), ISJ),
    "data/reasoning/nlvr": ((("train.jsonl", "train"), ("val.jsonl", "other"), ("test.jsonl", "other")), ISJ),
    "data/reasoning/visual_mrc": ((("train.jsonl", "train"), ("val.jsonl", "other"), ("test.jsonl", "other")), ISJ),
    "data/reasoning/science_qa": ((("train.jsonl", "train"), ("val.jsonl", "other"), ("test.jsonl", "other")), ISJ),
    "data/vqa/docvqa": ((("train.jsonl", "train"), ("val.jsonl", "other")), ISJ),
    "data/vqa/gqa": ((("train.jsonl", "train"), ("validation.jsonl", "other")), IJ),
    "data/vqa/ivqa": ((("train.jsonl", "train"), ("val.jsonl", "other"), ("test.jsonl", "other")), ISJ),
    "data/vqa/ocr-vqa": ((("train.jsonl", "train"), ("train_new.jsonl", "copy"), ("validation.jsonl", "other")), IJ),
    "data/vqa/st-vqa": ((("train.jsonl", "train"), ("test.jsonl", "other")), IJ),
    "data/vqa/viquae": (
        (("train_v2.jsonl", "train"), ("validation_v2.jsonl", "other"), ("test_v2.jsonl", "other"),
         ("train.jsonl", "old"), ("validation.jsonl", "old"), ("test.jsonl", "old")), ISJ),
    "data/vqa/vqav2": ((("train.jsonl", "train"), ("val.jsonl", "other")), ISJ),
}

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

_ROOT_FILES = {
    ".gitattributes": "*.jsonl filter=lfs diff=lfs merge=lfs -text\n"
                      "data/generation/multi30k/instructions.json filter=lfs diff=lfs merge=lfs -text\n",
    ".gitignore": ".DS_Store\n__pycache__/\n",
    "M3IT.py": '"""M3IT loading script (miniature stand-in): the real one maps each config to its files under\n'
               'data/ and yields {instruction, inputs, image_base64_str, outputs}. Nothing here runs it."""\n',
    "README.md": "# M3IT (miniature)\nMulti-modal multilingual instruction tuning; one folder per task under data/.\n",
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


def _dialog(rng) -> dict:
    img, color, shape = _photo_b64(rng)
    turns = [("what shape is it?", f"a {shape}"), ("is there only one?", "yes")][: 1 + rng.randint(0, 1)]
    history = "".join(f"\nQuestion: {q}\nAnswer: {a}" for q, a in turns)
    return {
        "input": f"Image Descriptions: {caption(color, shape)}{history}\nQuestion: what color is the {shape}?\n",
        "output": f"it is {color}",
        "image_base64_str": [img],
    }


def _captioning(task: str, rng) -> dict:
    img, color, shape = _photo_b64(rng)
    if task == "image_paragraph_captioning":
        return {"image_str": img, "output": f"{caption(color, shape).capitalize()}. The background is a soft gradient."}
    return {"image_base_url": img, "caption": f"a {color} {shape} with the word '{shape.upper()}' on it"}


def _record(task: str, rng) -> dict:
    if task in ("image_paragraph_captioning", "textcap"):
        return _captioning(task, rng)
    img, color, shape = _photo_b64(rng)
    if task == "multi30k":
        return {"input": f"English: {caption(color, shape)}", "output": f"ein Foto von einem {color} {shape}", "image_base64_str": [img]}
    if task == "visual_dialog":
        return _dialog(rng)
    if task == "visual_mrc":
        return {"input": "Question: what does the page show?", "output": f"It shows a {color} {shape}.", "image_base64_str": img}
    if task in ("clevr", "science_qa"):
        return {"question": f"How many {color} objects are there?", "answer": "1", "image_str": img}
    if task == "nlvr":
        other, _, _ = _photo_b64(rng)
        return {"question": f"The left image shows a {color} {shape}.", "answer": "true", "images": [img, other]}
    if task == "docvqa":  # verified: question / answer / image_str, no original_answer
        return {"question": f"What is drawn on the page, a {shape}?", "answer": f"a {color} {shape}", "image_str": img}
    if task == "viquae":  # verified (train_v2): question / paraphrased_answer / img_str
        return {"question": f"Which entity does this {shape} stand for?", "paraphrased_answer": f"The {color} {shape}.", "img_str": img}
    if task == "ivqa":
        return _vqa(rng, "video_str", frames=8)
    return _vqa(rng)


def _variant(task: str, kind: str, rng) -> dict:
    """A record of a file VILA's base config does not read."""
    if kind == "rephrased":  # the -rephrased configs' shape: meta + answer
        img, color, shape = _photo_b64(rng)
        return {"meta": {"instruction": "Rephrased: answer briefly.", "inputs": f"REPHRASED {shape}?",
                         "image_base64_str": [img]}, "answer": color}
    if kind == "old":  # viquae before v2: another schema
        img, color, shape = _photo_b64(rng)
        return {"question": f"OLD viquae question about a {shape}", "original_answer": color, "img_str": img}
    return _record(task, rng)


def _broken(task: str, rec: dict, i: int) -> dict | str:
    if task == "textcap" and i == 2:
        return {**rec, "image_base_url": "this is not base64!"}
    if task == "gqa" and i == 1:
        return {**rec, "img_str": base64.b64encode(b"<html>not an image</html>").decode()}
    if task == "clevr" and i == 3:
        return '{"question": "truncated line'
    return rec


def _lines(ctx: SourceContext, folder: str, name: str, kind: str) -> str:
    task = folder.rsplit("/", 1)[1]
    rng = ctx.rng("m3it", folder, name)
    n = ctx.pick(test=5, demo=40) if kind == "train" else 2
    out = []
    for i in range(n):
        rec = _record(task, rng) if kind in ("train", "other") else _variant(task, kind, rng)
        rec = _broken(task, rec, i) if kind == "train" else rec
        out.append(rec if isinstance(rec, str) else json.dumps(rec))
    return "\n".join(out) + "\n"


def build(ctx: SourceContext) -> None:
    root = ctx.repo_dir(REPO)
    for name, text in _ROOT_FILES.items():
        (root / name).write_text(text)
    for folder, (files, instruction_file) in TASK_FILES.items():
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        (d / instruction_file).write_text(json.dumps(_INSTRUCTIONS[folder.rsplit("/", 1)[1]]))
        train = next(name for name, kind in files if kind == "train")
        for name, kind in files:
            if kind != "copy":
                (d / name).write_text(_lines(ctx, folder, name, kind))
        for name, kind in files:
            if kind == "copy":  # ocr-vqa: train_new.jsonl shares train.jsonl's LFS object
                (d / name).write_bytes((d / train).read_bytes())
        if folder.endswith("/ivqa"):
            (d / "README.md").write_text("# iVQA\nInstructional-video QA: each record holds 8 frames.\n")
