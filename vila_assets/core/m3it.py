"""M3IT: the 14 tasks VILA's ``preprocess_m3it.py`` uses, read straight from the task files.

VILA runs ``datasets.load_dataset(<M3IT clone>, name)["train"]``, which executes the repo's loading script
``M3IT.py``; ``datasets`` >= 4 refuses to run loading scripts. This module ports what the script does for
the train split of those 14 tasks and then VILA's transform:

* ``question = instruction + inputs`` with **no separator** (VILA's loader parses the result: the
  visual-dialog "Image Descriptions ... \\nQuestion: ... \\nAnswer: ..." text must survive verbatim),
  ``answer = outputs``, ``image = image_base64_str`` (a list of base64 strings). We add an ``id``
  (``<stem>_%08d``; VILA's M3IT records had none, its loader ignores the key).
* **Instruction templates.** The script calls ``random.seed(_SEED=1234)`` in ``_split_generators`` and then
  ``random.choice(instructions)`` once per yielded item; ``datasets`` generates the train split first,
  so the k-th train item gets the k-th draw of ``random.Random(1234)``. We reproduce exactly that
  (one draw per record whose fields map, before image validation). Exact when the global ``random``
  state was not touched by anything else between the seed and the train split (true for a plain
  ``load_dataset`` call) and when the task's branch draws once per item in file order. Not exact:
  records we reject (bad JSON, missing field) crashed the original script, so there is nothing to match.
* **Field mapping** (:data:`TASKS`, :func:`map_fields`): the per-task branches of ``M3IT.py``. Field
  names differ per task; the folder of each task differs from its config name (``vqa-v2`` ->
  ``data/vqa/vqav2``, ``visual-dialog`` -> ``data/generation/visual_dialog``). VQA tasks with a
  ``paraphrased_answer`` use it unless it looks like a refusal ("not answerable", "sorry",
  "image descriptions"), as the script does for vqa-v2. Change a task's mapping in one place here.
* **Bad records** are counted with a reason (``bad_json``, ``missing_field``, ``no_image``,
  ``bad_base64``, ``undecodable_image``) and listed with file + line; never silently dropped.
  Images are validated the way VILA opens them (base64 -> Pillow decode); JPEGs are decoded in draft
  mode (reduced scale), which still reads the whole entropy-coded stream.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from vila_assets.core.atomic import atomic_path
from vila_assets.core.vflan import PerFileLayout, SourceFileWriter, SourceInfo, make_record

M3IT_REPO = "MMInstruction/M3IT"
M3IT_SEED = 1234  # M3IT.py's _SEED


class FieldError(KeyError):
    """A record lacks a field its task's mapping needs (or has the wrong type)."""


def _get(data: dict, key: str, kind: type = str) -> Any:
    if key not in data:
        raise FieldError(f"missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind):
        raise FieldError(f"field {key!r} is {type(value).__name__}, expected {kind.__name__}")
    return value


def _image_list(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise FieldError(f"field {key!r} is neither a base64 string nor a list of them")


_REFUSALS = ("not answerable", "sorry", "image descriptions")


def _paraphrased(data: dict) -> str:
    answer = _get(data, "original_answer")
    para = _get(data, "paraphrased_answer")
    return answer if any(r in para.lower() for r in _REFUSALS) else para


# Each mapping returns (inputs, outputs, images) from one raw jsonl record.
Mapping = Callable[[dict], tuple[str, str, list[str]]]


def _caption(image_key: str, caption_key: str) -> Mapping:
    return lambda d: ("", _get(d, caption_key), _image_list(_get(d, image_key, object), image_key))


def _prebuilt(d: dict) -> tuple[str, str, list[str]]:
    # generation / reasoning tasks whose files already hold the input and output text
    return _get(d, "input"), _get(d, "output"), _image_list(_get(d, "image_base64_str", object), "image_base64_str")


def _qa(d: dict) -> tuple[str, str, list[str]]:
    return _get(d, "question"), _get(d, "answer"), _image_list(_get(d, "image_str", object), "image_str")


def _pair_qa(d: dict) -> tuple[str, str, list[str]]:
    return _get(d, "question"), _get(d, "answer"), _image_list(_get(d, "images", object), "images")


def _para_vqa(image_key: str) -> Mapping:
    return lambda d: (_get(d, "question"), _paraphrased(d), _image_list(_get(d, image_key, object), image_key))


@dataclass(frozen=True)
class M3ITTask:
    type: str  # VILA's type label (file-name prefix)
    name: str  # M3IT config name
    folder: str  # folder in the repo
    mapping: Mapping = field(repr=False, compare=False)

    @property
    def stem(self) -> str:
        return f"{self.type}_{self.name}_train"

    def train_file(self) -> str:
        return f"{self.folder}/train.jsonl"

    def instructions_file(self) -> str:
        return f"{self.folder}/instructions.json"


TASKS: tuple[M3ITTask, ...] = (
    M3ITTask("captioning", "image-paragraph-captioning", "data/captioning/image_paragraph_captioning", _caption("image_str", "output")),
    M3ITTask("captioning", "textcap", "data/captioning/textcap", _caption("image_base_url", "caption")),
    M3ITTask("generation", "multi30k", "data/generation/multi30k", _prebuilt),
    M3ITTask("generation", "visual-dialog", "data/generation/visual_dialog", _prebuilt),
    M3ITTask("reasoning", "clevr", "data/reasoning/clevr", _qa),
    M3ITTask("reasoning", "nlvr", "data/reasoning/nlvr", _pair_qa),
    M3ITTask("reasoning", "visual-mrc", "data/reasoning/visual_mrc", _prebuilt),
    M3ITTask("vqa", "docvqa", "data/vqa/docvqa", _para_vqa("img_str")),
    M3ITTask("vqa", "gqa", "data/vqa/gqa", _para_vqa("img_str")),
    M3ITTask("vqa", "ivqa", "data/vqa/ivqa", _para_vqa("video_str")),  # video frames
    M3ITTask("vqa", "ocr-vqa", "data/vqa/ocr-vqa", _para_vqa("img_str")),
    M3ITTask("vqa", "st-vqa", "data/vqa/st-vqa", _para_vqa("img_str")),
    M3ITTask("vqa", "viquae", "data/vqa/viquae", _para_vqa("img_str")),
    M3ITTask("vqa", "vqa-v2", "data/vqa/vqav2", _para_vqa("img_str")),
)
TASK_STEMS: tuple[str, ...] = tuple(t.stem for t in TASKS)


def task(name: str) -> M3ITTask:
    for t in TASKS:
        if t.name == name:
            return t
    raise KeyError(f"unknown M3IT task {name!r}; VILA uses {[t.name for t in TASKS]}")


def load_instructions(path: str | os.PathLike[str]) -> list[str]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(data, list) or not data or not all(isinstance(s, str) for s in data):
        raise ValueError(f"{path}: expected a non-empty JSON list of instruction strings")
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


INVALID_SCHEMA = pa.schema(
    [("task", pa.string()), ("file", pa.string()), ("line", pa.int64()), ("reason", pa.string()), ("detail", pa.string())]
)


def write_invalid_list(invalid: list[InvalidRecord], path: str | os.PathLike[str]) -> Path:
    """The unusable records as a Parquet table (task, file, line, reason, detail), atomically."""
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


def convert_task(
    t: M3ITTask,
    train_path: str | os.PathLike[str],
    instructions_path: str | os.PathLike[str],
    layout: PerFileLayout,
    *,
    display_name: str | None = None,
) -> TaskSummary:
    """Stream one task's ``train.jsonl`` into ``<type>_<name>_train.pkl`` (+ Parquet copy)."""
    where = display_name or t.train_file()
    instructions = load_instructions(instructions_path)
    rng = random.Random(M3IT_SEED)
    invalid: list[InvalidRecord] = []
    lines = images = 0
    with SourceFileWriter(layout, t.stem, row_group_size=256, batch_rows=64) as out, open(train_path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            lines += 1
            try:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise ValueError(f"a JSON {type(data).__name__}, not an object")
            except ValueError as exc:
                invalid.append(InvalidRecord(t.name, where, lineno, "bad_json", str(exc)[:200]))
                continue
            try:
                inputs, outputs, imgs = t.mapping(data)
            except FieldError as exc:
                invalid.append(InvalidRecord(t.name, where, lineno, "missing_field", exc.args[0]))
                continue
            instruction = rng.choice(instructions)  # one draw per item the script would have yielded
            if not imgs:
                invalid.append(InvalidRecord(t.name, where, lineno, "no_image", "empty image list"))
                continue
            bad = next(((i, p) for i, s in enumerate(imgs) if (p := image_problem(s))), None)
            if bad is not None:
                i, (reason, detail) = bad
                invalid.append(InvalidRecord(t.name, where, lineno, reason, f"image {i}: {detail}"[:200]))
                continue
            out.write(make_record(instruction + inputs, outputs, f"{t.stem}_{out.count:08d}", imgs))
            images += len(imgs)
    assert out.info is not None
    return TaskSummary(t, out.info, lines, images, invalid)
