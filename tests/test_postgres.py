"""The production instance (``deploy/dagster.yaml``: PostgreSQL storage) against a real PostgreSQL server
started on 127.0.0.1: in-process materializations, a partition backfill and the ``vila_automation`` sensor,
the last two driven by a real ``dagster-daemon`` over the project's ``workspace.yaml``, as in production.

Runs in CI (``.ci/run`` installs Debian's PostgreSQL); without the server binaries it fails, naming them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._core.utils import make_new_backfill_id
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from tests.dagster_runs import check_results, defs_for, failure_text, partition_metadata, run
from tests.postgres_server import PostgresServer
from tests.test_sft_mixture import COMPONENT_ASSETS, SFT, report_vflan, write_vflan
from vila_assets.assets.vflan.partitions import CHUNK_KEYS
from vila_assets.profiles import data_root_at

REPO = Path(__file__).resolve().parents[1]
DEPLOY_INSTANCE = REPO / "deploy" / "dagster.yaml"
SENSOR, SENSOR_TAG = "vila_automation", "dagster/sensor_name"
BACKFILL_ASSET, BACKFILL_KEYS = dg.AssetKey("coyo_metadata_shard"), ["00000", "00001", "00002"]
LOAD_ERROR = "Error while importing code"  # what the code server logs when the code location fails to load
DAEMON_TIMEOUT = 240  # seconds; a healthy run of the daemon part takes about one minute here


@pytest.fixture(scope="module")
def postgres():
    with PostgresServer() as pg:
        yield pg


@pytest.fixture
def pg_instance(postgres, tmp_path, monkeypatch):
    """``deploy/dagster.yaml`` as ``$DAGSTER_HOME/dagster.yaml``, connected through the environment."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(DEPLOY_INSTANCE, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for key, value in postgres.env.items():
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def test_deploy_instance_keeps_everything_in_postgres(pg_instance, postgres):
    import psycopg2

    assert isinstance(pg_instance.run_storage, PostgresRunStorage)
    assert isinstance(pg_instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(pg_instance.schedule_storage, PostgresScheduleStorage)
    env = postgres.env
    with psycopg2.connect(host=env["DAGSTER_PG_HOST"], port=env["DAGSTER_PG_PORT"], user=env["DAGSTER_PG_USERNAME"],
                          password=env["DAGSTER_PG_PASSWORD"], dbname=env["DAGSTER_PG_DB"]) as conn:
        cur = conn.cursor()
        cur.execute("select table_name from information_schema.tables where table_schema = 'public'")
        tables = {row[0] for row in cur.fetchall()}
    assert {"runs", "event_logs", "jobs", "job_ticks", "bulk_actions", "concurrency_limits"} <= tables, tables


def test_deploy_instance_limits_runs_like_the_embedded_one():
    """The queue limits and the gpu pool mean the same on both instances (a backfill behaves alike)."""
    embedded = yaml.safe_load((REPO / "dagster.yaml").read_text())["concurrency"]
    deployed = yaml.safe_load(DEPLOY_INSTANCE.read_text())["concurrency"]
    assert deployed["pools"] == embedded["pools"]
    assert {t["key"] for t in deployed["runs"]["tag_concurrency_limits"]} == {
        t["key"] for t in embedded["runs"]["tag_concurrency_limits"]}


# --- the daemon ------------------------------------------------------------------------------------------


def start_daemon(home: Path, root: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``dagster-daemon run`` over the project's workspace, with the code location's settings."""
    daemon = Path(sys.executable).with_name("dagster-daemon")
    # in_process: one Python start-up per run instead of two (run process + step process)
    settings = {**os.environ, **env, "DAGSTER_HOME": str(home), "VILA_PROFILE": "sample_world",
                "VILA_DATA_ROOT": str(root), "VILA_EXECUTOR": "in_process"}
    with open(log, "wb") as out:
        return subprocess.Popen([str(daemon), "run", "-w", str(REPO / "workspace.yaml")], cwd=REPO, env=settings,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc): the daemon's code server and the run processes it forks."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_daemon(proc: subprocess.Popen) -> None:
    """The daemon, then whatever it started and left behind (its code server outlives it otherwise), by id."""
    family = descendants(proc.pid)
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in filter(_alive, family):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_for(what: str, predicate, log: Path, proc: subprocess.Popen, timeout: float = DAEMON_TIMEOUT):
    """Poll ``predicate`` until it returns something truthy; fail with the daemon's log otherwise, at once
    when the code location failed to load."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        text = log.read_text(errors="replace") if log.exists() else ""
        if proc.poll() is not None or LOAD_ERROR in text:
            break
        time.sleep(1)
    text = log.read_text(errors="replace") if log.exists() else ""
    start = text.find(LOAD_ERROR)
    excerpt = text[start:start + 6000] if start >= 0 else text[-6000:]
    raise AssertionError(f"gave up waiting for {what} (daemon exit code {proc.poll()}); daemon log:\n{excerpt}")


def sensor_ticks(instance: dg.DagsterInstance, name: str) -> list:
    states = [s for s in instance.all_instigator_state() if s.name == name]
    return [t for s in states for t in instance.get_ticks(s.instigator_origin_id, s.selector_id)]


def finished_runs(instance: dg.DagsterInstance, tags: dict) -> list[dg.DagsterRun]:
    runs = instance.get_runs(dg.RunsFilter(tags=tags))
    return runs if runs and all(r.is_finished for r in runs) else []


def add_backfill(instance: dg.DagsterInstance, defs: dg.Definitions) -> str:
    """What the UI's "Materialize selected partitions" does: one backfill request, the daemon plans it."""
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(), asset_graph=defs.resolve_asset_graph(),
        partition_names=BACKFILL_KEYS, asset_selection=[BACKFILL_ASSET], backfill_timestamp=time.time(),
        tags={}, dynamic_partitions_store=instance, all_partitions=False, title=None, description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


# --- the scenario ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_materializations_backfill_and_automation_on_postgres(pg_instance, postgres, make_world, tmp_path):
    world = make_world(families=["coyo", "llava", "mmc4", "sharegpt4v"], clip=False)
    root = tmp_path / "root"
    world.info().save(data_root_at(str(root)))  # how the code server's sample_world profile finds the world
    defs = defs_for(world, root)
    backfill_id = add_backfill(pg_instance, defs)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(Path(os.environ["DAGSTER_HOME"]), root, postgres.env, log)
    try:
        # while the daemon starts: in-process materializations, recorded in PostgreSQL with their checks
        result = run(defs, pg_instance, COMPONENT_ASSETS)
        assert result.success, failure_text(result)
        write_vflan(root)
        report_vflan(pg_instance, CHUNK_KEYS[:-1])  # the mixture waits: one VFLAN chunk is still missing
        wait_for(f"a first {SENSOR} tick", lambda: sensor_ticks(pg_instance, SENSOR), log, daemon)
        report_vflan(pg_instance, CHUNK_KEYS[-1:])  # the last chunk lands: the next tick requests the mixture
        backfill_runs = wait_for("the backfill's runs",
                                 lambda: finished_runs(pg_instance, {BACKFILL_ID_TAG: backfill_id}), log, daemon)
        mixture_runs = wait_for(f"the {SENSOR} run", lambda: finished_runs(pg_instance, {SENSOR_TAG: SENSOR}),
                                log, daemon)
        wait_for("the backfill to complete", lambda: pg_instance.get_backfill(backfill_id).status
                 == BulkActionStatus.COMPLETED_SUCCESS, log, daemon)
    finally:
        stop_daemon(daemon)

    for asset in COMPONENT_ASSETS:
        assert pg_instance.get_latest_materialization_event(dg.AssetKey(asset)) is not None, asset
    assert check_results(result), "the component assets declare checks; none was recorded"
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in backfill_runs), [r.status for r in backfill_runs]
    # one ranged run over the three shards (the asset's BackfillPolicy), each shard with its own metadata
    assert len(backfill_runs) == 1, len(backfill_runs)
    assert pg_instance.get_materialized_partitions(BACKFILL_ASSET) >= set(BACKFILL_KEYS)
    for key in BACKFILL_KEYS:
        assert partition_metadata(pg_instance, BACKFILL_ASSET.to_user_string(), key), key
    [mixture] = mixture_runs
    assert mixture.status == dg.DagsterRunStatus.SUCCESS, mixture.status
    assert mixture.asset_selection == {SFT}, mixture.asset_selection
    assert (root / "manifests/sft/sft_mixture.json").is_file()
