"""``vila-assets backfill``: chunked partition backfills over a running webserver's GraphQL API.

The pure parts (range selection, chunking, progress lines) are tested directly; the command itself runs
against a real ``dagster dev`` on 127.0.0.1 serving a two-asset code location (dynamic partitions, a
multi-run backfill policy of 2, no-op bodies), and the instance is read back: which backfills exist,
which ranged runs they made, which partitions materialized.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from tests.ui_server import DagsterDev
from vila_assets.backfill import BackfillError, Chunk, Counts, chunked, follow, select
from vila_assets.cli import main as cli_main
from vila_assets.core.progress import ProgressLine
from vila_assets.deployment import SCALE_ENV

REPO = Path(__file__).resolve().parent.parent
KEYS = [f"{i:05d}" for i in (0, 1, 3, 5, 6, 7, 9, 10)]  # shard-like keys with gaps, registration order
TOY_LOCATION = '''
import dagster as dg

shards = dg.DynamicPartitionsDefinition(name="shards")


@dg.asset(partitions_def=shards, backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=2))
def toy_shard(context):
    return dg.MaterializeResult(metadata={"shards_in_run": len(context.partition_keys)})


@dg.asset(partitions_def=shards, backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=2),
          deps=[toy_shard])
def toy_next(context):
    return dg.MaterializeResult(metadata={"shards_in_run": len(context.partition_keys)})


defs = dg.Definitions(assets=[toy_shard, toy_next], executor=dg.in_process_executor)
'''


# --- selection, chunks, progress ------------------------------------------------------------------------


def test_select_takes_an_inclusive_range_in_partition_order():
    assert select(KEYS, "00003..00007") == ["00003", "00005", "00006", "00007"]
    assert select(KEYS, "00005..00005") == ["00005"]
    assert select(KEYS, None) == KEYS


@pytest.mark.parametrize("spec, message", [
    ("00002..00007", "no partition '00002'"),  # a gap in the shard ids is not a key
    ("00007..00003", "00007 comes after 00003"),
    ("00003-00007", "expected FIRST..LAST"),
    ("..00007", "expected FIRST..LAST"),
])
def test_select_refuses_ranges_it_cannot_resolve_naming_why(spec, message):
    with pytest.raises(BackfillError, match=message):
        select(KEYS, spec)


def test_chunks_cover_every_key_once_in_order():
    chunks = chunked(KEYS, 3)
    assert chunks == [Chunk("00000", "00003", 3), Chunk("00005", "00007", 3), Chunk("00009", "00010", 2)]
    assert sum(c.size for c in chunks) == len(KEYS)
    assert chunked(KEYS, 100) == [Chunk("00000", "00010", 8)]
    with pytest.raises(BackfillError, match="at least 1"):
        chunked(KEYS, 0)


def test_progress_lines_say_done_total_rate_and_eta_at_a_cadence():
    now = [0.0]
    lines: list[str] = []
    progress = ProgressLine("backfill: done", 1000, "asset partitions", every=5.0, out=lines.append, clock=lambda: now[0])
    now[0] = 10.0
    progress.update(100)
    now[0] = 12.0
    progress.update(120)  # within 5 s of the last line: quiet
    now[0] = 20.0
    progress.update(400, "3 failed")
    now[0] = 21.0
    progress.update(1000)  # the last one always shows
    assert lines == [
        "backfill: done: 100/1,000 asset partitions (10%), 10.0/s, ETA 1m30s, elapsed 10s",
        "backfill: done: 400/1,000 asset partitions (40%), 20.0/s, ETA 30s, elapsed 20s (3 failed)",
        "backfill: done: 1,000/1,000 asset partitions (100%), 47.6/s, ETA -, elapsed 21s",
    ]


def test_progress_steps_show_at_a_cadence_and_one_closing_line():
    now = [0.0]
    lines: list[str] = []
    progress = ProgressLine("mmc4_images", 4, "shards", every=30.0, out=lines.append, clock=lambda: now[0])
    for t in (10.0, 40.0, 50.0, 80.0):  # the 4th step is the last: finish() says it, once
        now[0] = t
        progress.step()
    progress.finish()
    assert lines == [
        "mmc4_images: 2/4 shards (50%), 0.05/s, ETA 40s, elapsed 40s",
        "mmc4_images: 4/4 shards (100%), 0.05/s, ETA -, elapsed 1m20s",
    ]


def test_follow_sums_the_backfills_and_stops_asking_finished_ones():
    answers = {"a": [Counts(4, 4, 0, 0, True)], "b": [Counts(4, 1, 0, 2, False), Counts(4, 3, 1, 0, True)]}
    asked: list[str] = []

    def gql(_query, id):  # noqa: A002 - the GraphQL variable's name
        asked.append(id)
        c = answers[id].pop(0)
        status = "COMPLETED_SUCCESS" if c.finished else "REQUESTED"
        return {"partitionBackfillOrError": {"__typename": "PartitionBackfill", "status": status,
                "assetBackfillData": {"assetBackfillStatuses": [{
                    "numPartitionsTargeted": c.targeted, "numPartitionsMaterialized": c.materialized,
                    "numPartitionsFailed": c.failed, "numPartitionsInProgress": c.in_progress}]}}}

    seen = list(follow(gql, ["a", "b"], poll=0, sleep=lambda _: None))
    assert seen == [Counts(8, 5, 0, 2, False), Counts(8, 7, 1, 0, True)]
    assert asked == ["a", "b", "b"]  # "a" had finished: not asked twice


# --- the command against a real webserver ---------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``dagster dev`` serving the toy location; the shard keys registered before it starts."""
    base = tmp_path_factory.mktemp("backfill-cli")
    (base / "toy_location.py").write_text(TOY_LOCATION)
    (base / "workspace.yaml").write_text(
        "load_from:\n  - python_file:\n      relative_path: toy_location.py\n      location_name: toy\n")
    home = base / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(home))
    instance.add_dynamic_partitions("shards", KEYS)
    with DagsterDev(home, base / "workspace.yaml") as dev:
        yield dev, instance
    instance.dispose()


@pytest.mark.slow
def test_backfill_command_launches_chunks_of_ranged_runs_and_waits_for_them(served, capsys):
    dev, instance = served
    code = cli_main(["backfill", "toy_shard", "toy_next", "--chunk", "3", "--partitions", "00001..00009",
                     "--url", dev.url, "--wait", "--poll", "2"])
    out = capsys.readouterr().out
    assert code == 0, out + dev.log_tail()

    wanted = KEYS[1:7]  # 00001..00009 in partition order: 6 keys
    backfills = sorted(instance.get_backfills(), key=lambda b: b.backfill_timestamp)
    assert len(backfills) == 2  # 6 keys in chunks of 3
    ranges = []
    for b in backfills:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": b.backfill_id}))
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        ranges += sorted((r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
                         for r in runs)
    # each backfill of 3 shards cut by the policy (2 per run) into ranged runs, in order; both assets (same
    # partitions and policy) share those runs
    assert ranges == [("00001", "00003"), ("00005", "00005"), ("00006", "00007"), ("00009", "00009")]
    for asset in ("toy_shard", "toy_next"):
        assert sorted(instance.get_materialized_partitions(dg.AssetKey(asset))) == wanted, asset

    lines = out.splitlines()
    assert lines[0] == "backfill: 6 partitions of toy_shard, toy_next in 2 backfill(s) of <= 3"
    assert any(line.startswith("backfill: launched: 6/6 partitions") for line in lines), out
    assert lines[-1].startswith("backfill: finished 2 backfill(s): 12 materialized, 0 failed of 12 asset partitions")


@pytest.mark.slow
def test_backfill_command_refuses_an_unknown_range_and_launches_nothing(served, capsys):
    dev, instance = served
    before = len(instance.get_backfills())
    code = cli_main(["backfill", "toy_shard", "--chunk", "3", "--partitions", "00002..00009", "--url", dev.url])
    assert code == 2
    assert "no partition '00002'" in capsys.readouterr().err
    assert len(instance.get_backfills()) == before


SHARDS = dg.StaticPartitionsDefinition([f"{i:05d}" for i in range(3)])


@dg.asset(partitions_def=SHARDS, backfill_policy=dg.BackfillPolicy.single_run())
def ranged_toy() -> None:
    return None


@pytest.mark.parametrize("scale_env,planned", [(False, 3), (True, 1)])
def test_scale_settings_write_one_planned_event_per_ranged_run(monkeypatch, scale_env, planned):
    """``deployment.SCALE_ENV`` is what the backfill figures assume: with it a 3-shard ranged run writes one
    planned event carrying the range (not one per shard), and every shard is still materialized."""
    for name, value in SCALE_ENV.items():
        if scale_env:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)
    with dg.instance_for_test() as instance:
        result = dg.materialize([ranged_toy], instance=instance, tags={
            "dagster/asset_partition_range_start": "00000", "dagster/asset_partition_range_end": "00002"})
        assert result.success
        events = instance.get_records_for_run(
            result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records
        assert len(events) == planned
        assert instance.get_materialized_partitions(dg.AssetKey("ranged_toy")) == set(SHARDS.get_partition_keys())
