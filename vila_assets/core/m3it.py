"""M3IT: the 14 tasks VILA's ``preprocess_m3it.py`` uses, read straight from the task files.

VILA runs ``datasets.load_dataset(<M3IT clone>, name)["train"]``, which executes the repo's loading script
``M3IT.py``; ``datasets`` >= 4 refuses to run loading scripts. This module ports what the script does for
the train split of those 14 tasks, then VILA's transform:

* **Files** (:data:`TASKS`, one row per task): the folder differs from the config name
  (``vqa-v2`` -> ``data/vqa/vqav2``, ``visual-dialog`` -> ``data/generation/visual_dialog``), the train file
  too (``image_paragraph_captioning_train.jsonl``; viquae's ``train_v2.jsonl``, beside an old
  ``train.jsonl`` the script no longer reads) and the instruction file (``instruction.json`` for four
  tasks, ``instructions.json`` for the rest). Dated "rephrased" files belong to other configs.
* **Fields** (:class:`Fields`): raw keys differ per task. Verified: docvqa ``question``/``answer``/
  ``image_str`` (no ``original_answer``), viquae ``question``/``paraphrased_answer``/``img_str``,
  image-paragraph-captioning ``output``. The rest of the per-task schema is unverified upstream, so those
  tasks accept every plausible key, in order (the first present is used); VQA tasks with both a
  ``paraphrased_answer`` and an ``original_answer`` use the paraphrase unless it reads as a refusal
  ("not answerable", "sorry", "image descriptions"), as the script does for vqa-v2.
* **Transform**: ``question = instruction + inputs`` with **no separator** (VILA's loader parses the
  visual-dialog "Image Descriptions ... \\nQuestion: ... \\nAnswer: ..." text, so it must survive verbatim),
  ``answer = outputs``, ``image = image_base64_str`` (a list of base64 strings). The ``curated`` policy
  adds an ``id`` (``<stem>_%08d``); ``vila`` keeps VILA's ``{question, answer, image}``.
* **Instruction templates.** The script calls ``random.seed(_SEED=1234)`` in ``_split_generators`` and then
  ``random.choice(instructions)`` once per yielded item; ``datasets`` generates the train split first,
  so the k-th train item gets the k-th draw of ``random.Random(1234)``. We reproduce exactly that (one
  draw per record whose fields map, before image validation).
* **Bad records** are listed with file + line and a reason (``bad_json``, ``missing_field``, ``no_image``,
  ``bad_base64``, ``undecodable_image``). A line that is not JSON or lacks a field stopped VILA's load;
  both policies skip it without a draw. An image VILA cannot open: ``vila`` keeps the record (VILA never
  decodes images here), ``curated`` drops it. Images are checked the way VILA opens them (base64 ->
  Pillow decode; JPEGs in draft mode, which still reads the whole entropy-coded stream).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from vila_assets.core.atomic import atomic_path
from vila_assets.core.policy import Difference, Policy, as_policy
from vila_assets.core.vflan import PerFileLayout, SourceFileWriter, SourceInfo, make_record

M3IT_REPO = "MMInstruction/M3IT"
M3IT_SEED = 1234  # M3IT.py's _SEED

POLICY_DIFFERENCES = (
    Difference(
        "M3IT", "reading the 14 tasks",
        "`datasets.load_dataset` runs the repo's `M3IT.py` (needs `datasets<4`)",
        "same files, fields and instruction draws (`random.seed(1234)`, one choice per item), ported",
        "same"),
    Difference("M3IT", "record keys", "`{question, answer, image}`", "same", "adds `id` (`<stem>_%08d`)"),
    Difference(
        "M3IT", "a line that is not JSON or lacks a field", "`load_dataset` stops: no output",
        "skipped without an instruction draw, listed with file and line", "same"),
    Difference(
        "M3IT", "an image that does not decode", "kept (never decoded)", "same; listed with file and line",
        "dropped; listed with file, line and reason"),
)


class FieldError(KeyError):
    """A record lacks a field its task's mapping needs (or has the wrong type)."""


# --- fields ----------------------------------------------------------------------------------------------

_REFUSALS = ("not answerable", "sorry", "image descriptions")
IMAGE_KEYS = ("image_base64_str", "img_str", "image_str", "image", "images", "image_base_url")
VQA_IMAGE_KEYS = ("img_str", "image_str", "image_base64_str", "image", "images")


def _text(data: dict, key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise FieldError(f"field {key!r} is {type(value).__name__}, expected str")
    return value


def _first(data: dict, keys: tuple[str, ...]) -> str:
    for key in keys:
        if key in data:
            return key
    raise FieldError(f"missing field {keys[0]!r}" if len(keys) == 1 else f"missing field: none of {list(keys)}")


def _images(data: dict, keys: tuple[str, ...]) -> list[str]:
    key = _first(data, keys)
    value = data[key]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise FieldError(f"field {key!r} is neither a base64 string nor a list of them")


@dataclass(frozen=True)
class Fields:
    """Which raw keys one task's records carry; each tuple lists candidates, the first present is used.

    ``inputs`` empty: no input text (captioning). ``paraphrase``: with both ``paraphrased_answer`` and
    ``original_answer`` present, the paraphrase unless it is a refusal (then the original)."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    images: tuple[str, ...]
    paraphrase: bool = False

    def map(self, data: dict) -> tuple[str, str, list[str]]:
        """(inputs, outputs, images) of one raw record; :class:`FieldError` names what is missing."""
        inputs = _text(data, _first(data, self.inputs)) if self.inputs else ""
        if self.paraphrase and "paraphrased_answer" in data and "original_answer" in data:
            para = _text(data, "paraphrased_answer")
            refused = any(r in para.lower() for r in _REFUSALS)
            outputs = _text(data, "original_answer") if refused else para
        else:
            outputs = _text(data, _first(data, self.outputs))
        return inputs, outputs, _images(data, self.images)


# Verified upstream: one key each.
DOCVQA = Fields(("question",), ("answer",), ("image_str",))
VIQUAE = Fields(("question",), ("paraphrased_answer",), ("img_str",))
# Unverified upstream ([U]): every plausible reading.
CAPTION = Fields((), ("caption", "output", "outputs", "answer"), IMAGE_KEYS)
PREBUILT = Fields(("input", "inputs", "question"), ("output", "outputs", "answer"), IMAGE_KEYS)
QA = Fields(("question", "input", "inputs"), ("answer", "output", "outputs"), IMAGE_KEYS)
VQA = Fields(("question", "input", "inputs"), ("answer", "paraphrased_answer", "original_answer", "output"),
             VQA_IMAGE_KEYS, paraphrase=True)
VIDEO_VQA = Fields(VQA.inputs, VQA.outputs, ("video_str", *VQA_IMAGE_KEYS), paraphrase=True)
PARAGRAPH = Fields((), ("output",), ("image_str", "image", "image_base64_str", "img_str"))  # output: [V]


@dataclass(frozen=True)
class M3ITTask:
    type: str  # VILA's type label (file-name prefix)
    name: str  # M3IT config name
    folder: str  # folder in the repo (differs from the config name)
    train: str  # train file name inside the folder
    instructions: str  # instruction file name inside the folder
    fields: Fields

    @property
    def stem(self) -> str:
        return f"{self.type}_{self.name}_train"

    def train_file(self) -> str:
        return f"{self.folder}/{self.train}"

    def instructions_file(self) -> str:
        return f"{self.folder}/{self.instructions}"


_IJ, _ISJ = "instruction.json", "instructions.json"
TASKS: tuple[M3ITTask, ...] = (
    M3ITTask("captioning", "image-paragraph-captioning", "data/captioning/image_paragraph_captioning",
             "image_paragraph_captioning_train.jsonl", _IJ, PARAGRAPH),
    M3ITTask("captioning", "textcap", "data/captioning/textcap", "train.jsonl", _ISJ, CAPTION),
    M3ITTask("generation", "multi30k", "data/generation/multi30k", "train.jsonl", _ISJ, PREBUILT),
    M3ITTask("generation", "visual-dialog", "data/generation/visual_dialog", "train.jsonl", _ISJ, PREBUILT),
    M3ITTask("reasoning", "clevr", "data/reasoning/clevr", "train.jsonl", _ISJ, QA),
    M3ITTask("reasoning", "nlvr", "data/reasoning/nlvr", "train.jsonl", _ISJ, QA),
    M3ITTask("reasoning", "visual-mrc", "data/reasoning/visual_mrc", "train.jsonl", _ISJ, PREBUILT),
    M3ITTask("vqa", "docvqa", "data/vqa/docvqa", "train.jsonl", _ISJ, DOCVQA),
    M3ITTask("vqa", "gqa", "data/vqa/gqa", "train.jsonl", _IJ, VQA),
    M3ITTask("vqa", "ivqa", "data/vqa/ivqa", "train.jsonl", _ISJ, VIDEO_VQA),  # video frames
    M3ITTask("vqa", "ocr-vqa", "data/vqa/ocr-vqa", "train.jsonl", _IJ, VQA),  # train_new.jsonl: identical
    M3ITTask("vqa", "st-vqa", "data/vqa/st-vqa", "train.jsonl", _IJ, VQA),
    M3ITTask("vqa", "viquae", "data/vqa/viquae", "train_v2.jsonl", _ISJ, VIQUAE),
    M3ITTask("vqa", "vqa-v2", "data/vqa/vqav2", "train.jsonl", _ISJ, VQA),
)
TASK_STEMS: tuple[str, ...] = tuple(t.stem for t in TASKS)


def task(name: str) -> M3ITTask:
    for t in TASKS:
        if t.name == name:
            return t
    raise KeyError(f"unknown M3IT task {name!r}; VILA uses {[t.name for t in TASKS]}")


def load_instructions(path: str | os.PathLike[str], name: str | None = None) -> list[str]:
    """The task's instruction templates (a JSON array of strings); errors name ``name`` (default: path)."""
    where = name or str(path)
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: not JSON ({exc})") from exc
    if not isinstance(data, list) or not data or not all(isinstance(s, str) for s in data):
        raise ValueError(f"{where}: expected a non-empty JSON list of instruction strings")
    return data


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def image_problem(b64: str) -> tuple[str, str] | None:
    """``None`` if VILA can open the image, else (reason, detail)."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        return "bad_base64", str(exc)
    try:
        with Image.open(io.BytesIO(raw)) as img:
            img.draft("RGB", (64, 64))
            img.load()
    except Exception as exc:  # Pillow raises many types for broken data
        # without object addresses ("<_io.BytesIO object at 0x7f...>"): the invalid list is the same every run
        return "undecodable_image", _ADDRESS.sub("", f"{type(exc).__name__}: {exc}")
    return None


@dataclass(frozen=True)
class InvalidRecord:
    task: str
    file: str
    line: int  # 1-based line in the jsonl file
    reason: str
    detail: str
    kept: bool = False  # vila keeps records whose images do not decode (VILA never decodes them)


INVALID_SCHEMA = pa.schema([("task", pa.string()), ("file", pa.string()), ("line", pa.int64()),
                            ("reason", pa.string()), ("detail", pa.string()), ("kept", pa.bool_())])


def write_invalid_list(invalid: list[InvalidRecord], path: str | os.PathLike[str]) -> Path:
    """The problem records as a Parquet table (task, file, line, reason, detail, kept), atomically."""
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist([vars(r) for r in invalid], schema=INVALID_SCHEMA), tmp)
    return Path(path)


@dataclass
class TaskSummary:
    task: M3ITTask
    info: SourceInfo
    lines: int
    images: int
    invalid: list[InvalidRecord]

    @property
    def records(self) -> int:
        return self.info.rows

    @property
    def dropped(self) -> int:
        return sum(not r.kept for r in self.invalid)


def _parse(raw: bytes) -> dict:
    """One JSONL line as an object; ``ValueError`` says why not."""
    data = json.loads(raw.decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not an object")
    if b"\\u" in raw:  # only an escape can smuggle in a lone surrogate, which no UTF-8 writer accepts
        json.dumps(data, ensure_ascii=False).encode("utf-8")  # UnicodeEncodeError is a ValueError
    return data


def _image_problem(imgs: list[str]) -> tuple[str, str] | None:
    if not imgs:
        return "no_image", "empty image list"
    for i, b64 in enumerate(imgs):
        if (problem := image_problem(b64)) is not None:
            return problem[0], f"image {i}: {problem[1]}"[:200]
    return None


def convert_task(
    t: M3ITTask,
    train_path: str | os.PathLike[str],
    instructions_path: str | os.PathLike[str],
    layout: PerFileLayout,
    *,
    policy: Policy | str = Policy.curated,
    display_name: str | None = None,
) -> TaskSummary:
    """Stream one task's train file into ``<type>_<name>_train.pkl`` (+ Parquet copy). Problems are listed
    with ``display_name`` (default: the file's path in the repo) and line."""
    where = display_name or t.train_file()
    vila = as_policy(policy) is Policy.vila
    instructions = load_instructions(instructions_path, t.instructions_file())
    rng = random.Random(M3IT_SEED)
    invalid: list[InvalidRecord] = []
    lines = images = 0
    with SourceFileWriter(layout, t.stem, row_group_size=256, batch_rows=64) as out, open(train_path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            lines += 1
            try:
                inputs, outputs, imgs = t.fields.map(_parse(raw))
            except FieldError as exc:
                invalid.append(InvalidRecord(t.name, where, lineno, "missing_field", exc.args[0]))
                continue
            except ValueError as exc:  # JSON or UTF-8
                invalid.append(InvalidRecord(t.name, where, lineno, "bad_json", str(exc)[:200]))
                continue
            instruction = rng.choice(instructions)  # one draw per item the script would have yielded
            if (problem := _image_problem(imgs)) is not None:
                invalid.append(InvalidRecord(t.name, where, lineno, *problem, kept=vila))
                if not vila:
                    continue
            rec_id = None if vila else f"{t.stem}_{out.count:08d}"
            out.write(make_record(instruction + inputs, outputs, rec_id, imgs))
            images += len(imgs)
    assert out.info is not None
    return TaskSummary(t, out.info, lines, images, invalid)
