"""The ``vila`` policy against VILA's scripts: ``preprocess_flan.py``, ``preprocess_m3it.py`` (with the train
branch of ``M3IT.py`` it runs through ``datasets``) and ``split_vflan.py``, transcribed here in plain Python
from their description (vila-reference §5 and the exactness notes), independently of ``core``.

The transcription runs on the sample world's FLAN and M3IT files; the vila policy runs through the assets
with the same files as local-directory sources. Records must be equal, key order included, in the same
order, in files of the same names with the same counts. Pickle bytes are not compared: VILA's single
``pickle.dump`` shares memo entries (the dict keys) across records, which a streamed writer cannot.

Two places where VILA's scripts have no output to match, and what the transcription does there: a train
line that is not JSON stops ``load_dataset`` (skipped here without an instruction draw, as the vila policy
does), and the sample world's FLAN is far below 2**24 rows, so no linspace index rounds past the end.
"""

from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
import torch

from tests.dagster_runs import failure_text, materializations, run
from vila_assets.assets import vflan as vflan_assets
from vila_assets.assets.vflan.layout import VflanLayout
from vila_assets.assets.vflan.partitions import CHUNK_KEYS
from vila_assets.assets.vflan.sources import FlanSource, M3itSource
from vila_assets.profiles import production
from vila_assets.resources.policy import DataPolicy
from vila_assets.resources.storage import LocalDataRoot
from vila_assets.sample_world.sizes import flan_sample_size
from vila_assets.sample_world.sources import SourceContext
from vila_assets.sample_world.sources import flan as flan_world
from vila_assets.sample_world.sources import m3it as m3it_world

pytestmark = pytest.mark.slow
WORLD_SIZE = 4

# --- preprocess_flan.py -----------------------------------------------------------------------------------


def vila_preprocess_flan(flan_dir: Path, save_dir: Path, size: int) -> None:
    inputs: list = []
    targets: list = []
    for folder in sorted(os.listdir(flan_dir)):
        if not folder.endswith("_data"):
            continue
        for name in sorted(os.listdir(flan_dir / folder)):  # pandas.read_parquet in the script
            table = pq.read_table(flan_dir / folder / name, columns=["inputs", "targets"])
            inputs += table.column("inputs").to_pylist()
            targets += table.column("targets").to_pylist()
    indices = torch.linspace(0, len(inputs) - 1, size).int()
    records = []
    for k, i in enumerate(indices):
        records.append({"question": inputs[i], "answer": targets[i], "id": "text_flan_%08d" % k, "image": []})
    with open(save_dir / "text_flan_1m.pkl", "wb") as fh:
        pickle.dump(records, fh)


# --- M3IT.py's train branch for VILA's 14 configs, then preprocess_m3it.py ---------------------------------


def _vqa_answer(data: dict) -> str:
    answer, para = data["original_answer"], data["paraphrased_answer"]
    if "not answerable" not in para.lower() and "sorry" not in para.lower() and "image descriptions" not in para.lower():
        answer = para
    return answer


def _as_list(value):
    return value if isinstance(value, list) else [value]


# config -> (train file, instruction file, record -> (inputs, outputs, images)) as the sample world writes them
M3IT_SCRIPT = {
    "image-paragraph-captioning": (
        "data/captioning/image_paragraph_captioning/image_paragraph_captioning_train.jsonl",
        "data/captioning/image_paragraph_captioning/instruction.json", lambda d: ("", d["output"], [d["image_str"]])),
    "textcap": ("data/captioning/textcap/train.jsonl", "data/captioning/textcap/instructions.json",
                lambda d: ("", d["caption"], [d["image_base_url"]])),
    "multi30k": ("data/generation/multi30k/train.jsonl", "data/generation/multi30k/instructions.json",
                 lambda d: (d["input"], d["output"], _as_list(d["image_base64_str"]))),
    "visual-dialog": ("data/generation/visual_dialog/train.jsonl", "data/generation/visual_dialog/instructions.json",
                      lambda d: (d["input"], d["output"], _as_list(d["image_base64_str"]))),
    "clevr": ("data/reasoning/clevr/train.jsonl", "data/reasoning/clevr/instructions.json",
              lambda d: (d["question"], d["answer"], [d["image_str"]])),
    "nlvr": ("data/reasoning/nlvr/train.jsonl", "data/reasoning/nlvr/instructions.json",
             lambda d: (d["question"], d["answer"], d["images"])),
    "visual-mrc": ("data/reasoning/visual_mrc/train.jsonl", "data/reasoning/visual_mrc/instructions.json",
                   lambda d: (d["input"], d["output"], _as_list(d["image_base64_str"]))),
    "docvqa": ("data/vqa/docvqa/train.jsonl", "data/vqa/docvqa/instructions.json",
               lambda d: (d["question"], d["answer"], [d["image_str"]])),
    "gqa": ("data/vqa/gqa/train.jsonl", "data/vqa/gqa/instruction.json",
            lambda d: (d["question"], _vqa_answer(d), [d["img_str"]])),
    "ivqa": ("data/vqa/ivqa/train.jsonl", "data/vqa/ivqa/instructions.json",
             lambda d: (d["question"], _vqa_answer(d), d["video_str"])),
    "ocr-vqa": ("data/vqa/ocr-vqa/train.jsonl", "data/vqa/ocr-vqa/instruction.json",
                lambda d: (d["question"], _vqa_answer(d), [d["img_str"]])),
    "st-vqa": ("data/vqa/st-vqa/train.jsonl", "data/vqa/st-vqa/instruction.json",
               lambda d: (d["question"], _vqa_answer(d), [d["img_str"]])),
    "viquae": ("data/vqa/viquae/train_v2.jsonl", "data/vqa/viquae/instructions.json",
               lambda d: (d["question"], d["paraphrased_answer"], [d["img_str"]])),
    "vqa-v2": ("data/vqa/vqav2/train.jsonl", "data/vqa/vqav2/instructions.json",
               lambda d: (d["question"], _vqa_answer(d), [d["img_str"]])),
}
# preprocess_m3it.py's task list, in its order
VILA_M3IT_TASKS = {
    "captioning": ["image-paragraph-captioning", "textcap"],
    "generation": ["multi30k", "visual-dialog"],
    "reasoning": ["clevr", "nlvr", "visual-mrc"],
    "vqa": ["docvqa", "gqa", "ivqa", "ocr-vqa", "st-vqa", "viquae", "vqa-v2"],
}


def m3it_train_split(m3it_dir: Path, config: str):
    """What ``load_dataset(m3it_dir, config)["train"]`` yields."""
    train, instruction_file, branch = M3IT_SCRIPT[config]
    random.seed(1234)  # _SEED, in _split_generators; train is generated first
    with open(m3it_dir / instruction_file) as fh:
        instructions = json.load(fh)
    with open(m3it_dir / train) as fh:
        for row in fh:
            try:
                data = json.loads(row)
            except json.JSONDecodeError:
                continue  # load_dataset stops here; the vila policy skips the line and lists it
            inputs, outputs, images = branch(data)
            yield {"instruction": random.choice(instructions), "inputs": inputs, "image_base64_str": images,
                   "outputs": outputs}


def vila_preprocess_m3it(m3it_dir: Path, save_dir: Path) -> None:
    for task_type, names in VILA_M3IT_TASKS.items():
        for name in names:
            records = []
            for item in m3it_train_split(m3it_dir, name):
                item["question"] = item["instruction"] + item["inputs"]
                item["answer"] = item["outputs"]
                item["image"] = item["image_base64_str"]
                for key in ("instruction", "inputs", "outputs", "image_base64_str"):
                    del item[key]
                records.append(item)
            with open(save_dir / f"{task_type}_{name}_train.pkl", "wb") as fh:
                pickle.dump(records, fh)


# --- split_vflan.py -----------------------------------------------------------------------------------------


def vila_split_vflan(in_dir: Path, out_dir: Path) -> None:
    data: list = []
    for name in sorted(f for f in os.listdir(in_dir) if f.endswith(".pkl")):
        with open(in_dir / name, "rb") as fh:
            data += pickle.load(fh)
    random.seed(1)
    random.shuffle(data)
    per_shard = len(data) // 128
    out_dir.mkdir(parents=True)
    k = 0
    while len(data) - k * per_shard >= per_shard:
        chunk = data[k * per_shard:(k + 1) * per_shard]
        with open(out_dir / f"part-{k:05d}.pkl", "wb") as fh:
            pickle.dump(chunk, fh)
        (out_dir / f"part-{k:05d}.count").write_text(str(len(chunk)))
        k += 1


# --- the comparison ---------------------------------------------------------------------------------------


def _items(path: Path) -> list[list[tuple]]:
    with open(path, "rb") as fh:
        return [list(rec.items()) for rec in pickle.load(fh)]  # key order too


@pytest.fixture(scope="module", params=["test", "demo"])
def both(request, tmp_path_factory):
    """The sample world's sources at one scale; VILA's scripts and the vila policy over them."""
    base = tmp_path_factory.mktemp(f"equivalence-{request.param}")
    ctx = SourceContext(base / "hub", "http://127.0.0.1:9", seed=0, scale=request.param)
    flan_world.build(ctx)
    m3it_world.build(ctx)
    flan_dir, m3it_dir = ctx.repo_dir(flan_world.REPO), ctx.repo_dir(m3it_world.REPO)
    size = flan_sample_size(request.param)

    script = base / "script"
    (script / "new-vflan").mkdir(parents=True)
    vila_preprocess_flan(flan_dir, script / "new-vflan", size)
    vila_preprocess_m3it(m3it_dir, script / "new-vflan")
    vila_split_vflan(script / "new-vflan", script / "new-vflan-sharded")

    root = base / "data"
    resources = {
        **production(LocalDataRoot(root=str(root))).resources,
        "flan_source": FlanSource(location=str(flan_dir), sample_size=size),
        "m3it_source": M3itSource(location=str(m3it_dir)),
        "data_policy": DataPolicy(policy="vila", train_world_size=WORLD_SIZE),
    }
    defs = dg.Definitions.merge(vflan_assets.defs, dg.Definitions(resources=resources))
    with dg.DagsterInstance.ephemeral() as instance:
        sources = run(defs, instance, ["flan_1m", "m3it_tasks"])
        assert sources.success, failure_text(sources)
        chunks = run(defs, instance, ["vflan_chunks"], keys=CHUNK_KEYS)
        assert chunks.success, failure_text(chunks)
    layout = VflanLayout(LocalDataRoot(root=str(root)))
    return script, layout, materializations(chunks)["vflan_chunks"]


def test_flan_1m_is_preprocess_flans_records(both):
    script, layout, _ = both
    assert _items(layout.per_file.pickle("text_flan_1m")) == _items(script / "new-vflan" / "text_flan_1m.pkl")


def test_m3it_tasks_are_preprocess_m3its_records(both):
    script, layout, _ = both
    names = sorted(p.name for p in (script / "new-vflan").glob("*_train.pkl"))
    assert names == sorted(p.name for p in layout.per_file.pickle_dir.glob("*_train.pkl")) and len(names) == 14
    for name in names:
        assert _items(layout.per_file.pickle_dir / name) == _items(script / "new-vflan" / name), name


def test_vflan_chunks_are_split_vflans_parts(both):
    script, layout, md = both
    expected = script / "new-vflan-sharded"
    assert sorted(os.listdir(layout.chunks_dir)) == sorted(os.listdir(expected))
    for name in sorted(os.listdir(expected)):
        if name.endswith(".count"):
            assert int((layout.chunks_dir / name).read_text()) == int((expected / name).read_text()), name
        else:
            assert _items(layout.chunks_dir / name) == _items(expected / name), name
    n = sum(len(pickle.load(open(p, "rb"))) for p in (script / "new-vflan").glob("*.pkl"))
    assert md["dropped_by_split"] == n % (n // 128)  # the remainder VILA drops is reported
