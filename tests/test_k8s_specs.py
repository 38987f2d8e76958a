"""The Kubernetes deployment without a cluster: the Helm values (read as data), and the Jobs and pods that
dagster-k8s's own code builds from them for a run (K8sRunLauncher) and for each kind of step
(k8s_job_executor with the per-step shapes of ``vila_assets.deployment``). The Kubernetes API is replaced
by a recorder at ``BatchV1Api.create_namespaced_job``; everything before that call is dagster-k8s's.
"""

from __future__ import annotations

import re
import tomllib
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import dagster as dg
import kubernetes
import pytest
import yaml
from dagster._core.system_config.objects import ResolvedRunConfig
from dagster._core.execution.api import create_execution_plan
from dagster._core.execution.context.system import PlanData, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import create_context_free_log_manager
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.init import InitExecutorContext
from dagster._core.executor.step_delegating.step_handler.base import StepHandlerContext
from dagster._core.launcher import LaunchRunContext
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.test_utils import create_run_for_test
from dagster._grpc.types import ExecuteStepArgs
from dagster_k8s.job import DAGSTER_PG_PASSWORD_ENV_VAR, DAGSTER_PG_PASSWORD_SECRET_KEY
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from vila_assets import deployment
from vila_assets.definitions import EXECUTOR_SETTING, GPU_IMAGE_SETTING, build_definitions, family_definitions
from vila_assets.profiles import data_root_at, production
from vila_assets.resources.storage import FsspecDataRoot, LocalDataRoot

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
RELEASE, NAMESPACE = "dagster", "vila"  # `helm install dagster dagster/dagster -n vila` (deploy/README.md)
ASSET_JOB = "__ASSET_JOB"
GPU, CRAWL = deployment.GPU_RESOURCE, ("coyo_images", "mmc4_images")


def load_values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def code_location(values: dict) -> dict:
    [dep] = values["dagster-user-deployments"]["deployments"]
    return dep


def image(spec: dict) -> str:
    return f"{spec['repository']}:{spec['tag']}"


def env_of(values: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in code_location(values)["env"]}


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pins() -> dict[str, str]:
    """``name -> version`` of every ``==`` requirement of pyproject.toml."""
    reqs = [Requirement(r) for r in pyproject()["project"]["dependencies"]]
    return {canonicalize_name(r.name): str(s.version) for r in reqs for s in r.specifier if s.operator == "=="}


# --- what the chart makes of the values (its instance and code-location templates, as data) -------------


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def chart_run_launcher(values: dict, kubeconfig: Path) -> dict:
    """The ``run_launcher`` section the chart writes into the instance (``_run-launcher.tpl``), except that
    the kubeconfig is a file here instead of the pod's service account."""
    k = values["runLauncher"]["config"]["k8sRunLauncher"]
    return {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": {
        "load_incluster_config": False, "kubeconfig_file": str(kubeconfig),
        "job_namespace": k.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": k["imagePullPolicy"],
        "service_account_name": RELEASE,
        "dagster_home": values["global"]["dagsterHome"],
        "instance_config_map": f"{RELEASE}-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        "env_config_maps": [f"{RELEASE}-pipeline-env", *(c["name"] for c in k["envConfigMaps"])],
        "env_secrets": [s["name"] for s in k["envSecrets"]],
        "env_vars": k["envVars"], "volume_mounts": k["volumeMounts"], "volumes": k["volumes"],
        "labels": k.get("labels") or {}, "fail_pod_on_run_failure": k.get("failPodOnRunFailure", False),
        "run_k8s_config": {_snake(key): v for key, v in (k.get("runK8sConfig") or {}).items()},
    }}


def chart_container_context(values: dict) -> dict:
    """What a code location with ``includeConfigInLaunchedRuns`` hands to its runs (the subchart's
    ``dagsterUserDeployments.k8sContainerContext``)."""
    dep = code_location(values)
    return {"k8s": {
        "image_pull_policy": dep["image"]["pullPolicy"],
        "env_config_maps": [f"{RELEASE}-dagster-user-deployments-{dep['name']}-user-env"],
        "env_secrets": [s["name"] for s in dep.get("envSecrets", [])],
        "volume_mounts": dep.get("volumeMounts", []), "volumes": dep.get("volumes", []),
        "resources": dep.get("resources", {}), "namespace": NAMESPACE,
        "service_account_name": f"{RELEASE}-dagster-user-deployments-user-deployments", "env": dep["env"],
    }}


def code_origin(values: dict) -> JobPythonOrigin:
    """The origin of a run launched from the code location's gRPC server in its pod."""
    dep = code_location(values)
    module = dep["dagsterApiGrpcArgs"][dep["dagsterApiGrpcArgs"].index("--module-name") + 1]
    repo = RepositoryPythonOrigin(
        executable_path="/usr/local/bin/python", code_pointer=ModuleCodePointer(module, "defs", "/opt/vila"),
        container_image=image(dep["image"]), container_context=chart_container_context(values))
    return JobPythonOrigin(ASSET_JOB, repo)


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory) -> Path:
    """A kubeconfig naming a cluster that is never contacted (the API calls are recorded, not sent)."""
    path = tmp_path_factory.mktemp("kube") / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "none", "user": {"token": "none"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none", "namespace": NAMESPACE}}],
    }))
    return path


@pytest.fixture(scope="module")
def k8s_instance(kubeconfig):
    with dg.instance_for_test(overrides={"run_launcher": chart_run_launcher(load_values(), kubeconfig)}) as instance:
        yield instance


@contextmanager
def recorded_jobs():
    """Every Job body dagster-k8s sends to the Kubernetes API, recorded instead of sent."""
    with mock.patch.object(kubernetes.client.BatchV1Api, "create_namespaced_job") as create:
        yield lambda: [call.kwargs["body"] for call in create.call_args_list]


@pytest.fixture(scope="module")
def cluster_defs(tmp_path_factory) -> dg.Definitions:
    """The code location as the Helm values configure it (production profile, executor settings)."""
    env = env_of(load_values())
    with pytest.MonkeyPatch.context() as mp:
        for setting in (EXECUTOR_SETTING, GPU_IMAGE_SETTING):
            mp.setenv(setting, env[setting])
        return build_definitions(production(LocalDataRoot(root=str(tmp_path_factory.mktemp("root")))))


# --- helpers over a built Job ----------------------------------------------------------------------------


def container(job: kubernetes.client.V1Job) -> kubernetes.client.V1Container:
    [c] = job.spec.template.spec.containers
    return c


def env_values(job) -> dict[str, str | None]:
    return {e.name: e.value for e in container(job).env}


def assert_cluster_wiring(job, values: dict) -> None:
    """What every run and step pod needs: settings, the instance's database password, credentials,
    the scratch volume of the data root's working copy."""
    env = env_values(job)
    for name, value in env_of(values).items():
        assert env[name] == value, name
    assert env["DAGSTER_HOME"] == values["global"]["dagsterHome"]
    [pg] = [e for e in container(job).env if e.name == DAGSTER_PG_PASSWORD_ENV_VAR]
    assert pg.value_from.secret_key_ref.name == values["global"]["postgresqlSecretName"]
    assert pg.value_from.secret_key_ref.key == DAGSTER_PG_PASSWORD_SECRET_KEY
    secrets = {s.secret_ref.name for s in container(job).env_from if s.secret_ref}
    assert {s["name"] for s in code_location(values)["envSecrets"]} <= secrets
    [mount] = [m for m in container(job).volume_mounts if m.name == "scratch"]
    [volume] = [v for v in job.spec.template.spec.volumes if v.name == "scratch"]
    assert mount.mount_path == "/opt/vila/data" and volume.empty_dir is not None
    assert job.spec.template.metadata.labels["app.kubernetes.io/part-of"] == "vila-assets"
    assert job.spec.ttl_seconds_after_finished == 86400


# --- the run pod -----------------------------------------------------------------------------------------


def test_run_pod_runs_the_code_location_image_with_its_settings(k8s_instance):
    values = load_values()
    run = create_run_for_test(k8s_instance, job_name=ASSET_JOB, job_code_origin=code_origin(values))
    with recorded_jobs() as created:
        k8s_instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    [job] = created()
    assert container(job).image == image(code_location(values)["image"])
    assert container(job).args[1:5] == ["-m", "dagster", "api", "execute_run"]
    assert job.metadata.labels["app.kubernetes.io/component"] == "run_worker"
    assert_cluster_wiring(job, values)
    # the run pod only coordinates step pods: the code location's small shape, no GPU
    resources = container(job).resources
    assert resources.requests == code_location(values)["resources"]["requests"]
    assert GPU not in (resources.limits or {})
    assert not job.spec.template.spec.node_selector


# --- step pods -------------------------------------------------------------------------------------------


def launch_steps(defs: dg.Definitions, instance: dg.DagsterInstance, values: dict, step_keys) -> dict:
    """What the k8s_job_executor does for each of ``step_keys`` in a run of the asset job: ``step key ->
    the Job it sends``."""
    job_def = defs.resolve_implicit_global_asset_job_def()
    job = InMemoryJob(job_def)
    executor_config = ResolvedRunConfig.build(job_def, {}).execution.execution_engine_config
    executor = job_def.executor_def.executor_creation_fn(InitExecutorContext(
        job=job, executor_def=job_def.executor_def, executor_config=executor_config, instance=instance))
    origin = code_origin(values)
    run = create_run_for_test(instance, job_name=ASSET_JOB, job_code_origin=origin)
    plan = create_execution_plan(job)
    plan_context = PlanOrchestrationContext(
        plan_data=PlanData(job=job, dagster_run=run, instance=instance, execution_plan=plan,
                           raise_on_error=True, retry_mode=RetryMode.DISABLED),
        log_manager=create_context_free_log_manager(instance, run), executor=executor, output_capture=None)
    jobs = {}
    for key in step_keys:
        context = StepHandlerContext(instance=instance, plan_context=plan_context, steps=plan.steps,
                                     execute_step_args=ExecuteStepArgs(origin, run.run_id, [key]), dagster_run=run)
        with recorded_jobs() as created:
            list(executor._step_handler.launch_step(context))  # noqa: SLF001 - the executor's own step handler
        [jobs[key]] = created()
    return jobs


@pytest.fixture(scope="module")
def step_jobs(cluster_defs, k8s_instance):
    return launch_steps(cluster_defs, k8s_instance, load_values(), ("coyo_clip_scored", *CRAWL, "sft_mixture"))


def test_clip_scoring_step_gets_a_gpu_node_and_the_cuda_image(step_jobs):
    values = load_values()
    job = step_jobs["coyo_clip_scored"]
    assert job.metadata.labels["app.kubernetes.io/component"] == "step_worker"
    assert env_values(job)["DAGSTER_RUN_STEP_KEY"] == "coyo_clip_scored"
    assert container(job).image == env_of(values)[GPU_IMAGE_SETTING]
    assert container(job).image.endswith("-cuda")
    resources = container(job).resources
    assert resources.limits[GPU] == "1" and resources.requests[GPU] == "1"
    pod = job.spec.template.spec
    assert pod.node_selector == {"nvidia.com/gpu.present": "true"}
    assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [(GPU, "Exists", "NoSchedule")]
    assert_cluster_wiring(job, values)


@pytest.mark.parametrize("step", CRAWL)
def test_crawl_steps_get_the_cpus_the_crawler_sizes_itself_by(step_jobs, step):
    values = load_values()
    job = step_jobs[step]
    assert container(job).image == image(code_location(values)["image"])  # the CPU image
    resources = container(job).resources
    assert resources.limits["cpu"] == resources.requests["cpu"] == deployment.CRAWL_STEP.limits["cpu"]
    assert resources.limits["memory"] == deployment.CRAWL_STEP.limits["memory"]
    assert GPU not in resources.limits and not job.spec.template.spec.node_selector
    assert_cluster_wiring(job, values)


def test_other_steps_get_the_default_shape(step_jobs):
    job = step_jobs["sft_mixture"]
    resources = container(job).resources
    assert resources.requests == dict(deployment.DEFAULT_STEP.requests)
    assert GPU not in (resources.limits or {})
    assert not job.spec.template.spec.tolerations
    assert_cluster_wiring(job, load_values())


def test_shapes_follow_the_asset_graph():
    """GPU for the `gpu` pool only, the crawl shape for every asset that uses the crawler."""
    assets = [a for a in family_definitions().assets if isinstance(a, dg.AssetsDefinition)]
    shapes = {a.node_def.name: deployment.step_shape(a) for a in assets}
    assert shapes["coyo_clip_scored"] is deployment.GPU_STEP
    for step in CRAWL:
        assert shapes[step] is deployment.CRAWL_STEP, step
    for a in assets:
        if shapes[a.node_def.name] is deployment.GPU_STEP:
            assert a.node_def.pool == deployment.GPU_POOL, a.node_def.name
        if "crawler" in a.required_resource_keys:
            assert shapes[a.node_def.name] is not None, a.node_def.name


# --- executor selection ----------------------------------------------------------------------------------


DEFAULT_EXECUTOR = "multi_or_in_process_executor"  # Dagster's own default


@pytest.mark.parametrize("setting,name", [(None, DEFAULT_EXECUTOR), ("multiprocess", DEFAULT_EXECUTOR),
                                          ("in_process", "in_process"), ("k8s", "k8s")])
def test_executor_is_selected_by_the_setting(monkeypatch, tmp_path, setting, name):
    if setting is None:
        monkeypatch.delenv(EXECUTOR_SETTING, raising=False)
    else:
        monkeypatch.setenv(EXECUTOR_SETTING, setting)
    defs = build_definitions(production(LocalDataRoot(root=str(tmp_path))))
    assert defs.resolve_implicit_global_asset_job_def().executor_def.name == name


def test_unknown_executor_names_the_setting(monkeypatch, tmp_path):
    monkeypatch.setenv(EXECUTOR_SETTING, "celery")
    with pytest.raises(ValueError, match=f"unknown executor 'celery' \\({EXECUTOR_SETTING}\\)"):
        build_definitions(production(LocalDataRoot(root=str(tmp_path))))


# --- the Helm values and the image -----------------------------------------------------------------------


def test_values_launch_runs_on_kubernetes_against_external_postgres():
    values = load_values()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    pg = values["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlHost"] and pg["postgresqlScheme"] == "postgresql+psycopg2"
    assert values["generatePostgresqlPasswordSecret"] is False  # the secret is created beforehand
    dagster_version = pins()["dagster"]
    for part in ("dagsterWebserver", "dagsterDaemon"):
        assert values[part]["image"]["tag"] == dagster_version, part  # Dagster's image of the pinned version


def test_values_serve_this_code_location_with_the_cluster_settings():
    values = load_values()
    dep = code_location(values)
    assert dep["dagsterApiGrpcArgs"] == ["--module-name", pyproject()["tool"]["dagster"]["module_name"]]
    assert dep["includeConfigInLaunchedRuns"]["enabled"] is True
    env = env_of(values)
    assert env["VILA_PROFILE"] == "production" and env[EXECUTOR_SETTING] == "k8s"
    assert dep["image"]["tag"].endswith("-cpu") and env[GPU_IMAGE_SETTING].endswith("-cuda")
    assert dep["image"]["repository"] == env[GPU_IMAGE_SETTING].rsplit(":", 1)[0]


def test_every_process_that_creates_or_runs_runs_gets_the_scale_settings():
    """Webserver and daemon create runs (their planned events), run and step pods execute them: all get
    ``deployment.SCALE_ENV`` (the pods through the code location's env, checked on the built Jobs by
    ``assert_cluster_wiring``); the queue refills a slot within a second."""
    values = load_values()
    for part in ("dagsterWebserver", "dagsterDaemon"):
        assert values[part]["env"] == deployment.SCALE_ENV, part
    assert deployment.SCALE_ENV.items() <= env_of(values).items()
    coordinator = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert coordinator["dequeueIntervalSeconds"] == 1
    for instance_yaml in (REPO / "dagster.yaml", DEPLOY / "dagster.yaml"):
        assert yaml.safe_load(instance_yaml.read_text())["run_queue"]["dequeue_interval_seconds"] == 1


def test_data_root_is_object_storage_worked_in_the_scratch_volume():
    """``VILA_DATA_ROOT`` names a bucket; the working copy (``./data`` under the image's WORKDIR) is the
    volume every pod mounts."""
    values = load_values()
    root = data_root_at(env_of(values)["VILA_DATA_ROOT"])
    assert isinstance(root, FsspecDataRoot) and root.url_root.startswith("s3://")
    workdir = re.findall(r"^WORKDIR (\S+)", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert workdir == ["/opt/vila"]
    [mount] = code_location(values)["volumeMounts"]
    assert Path(mount["mountPath"]) == Path(workdir[0]) / Path(root.local_cache)


def test_concurrency_limits_the_same_tags_and_pool_as_the_embedded_instance():
    values = load_values()["concurrency"]
    embedded = yaml.safe_load((REPO / "dagster.yaml").read_text())["concurrency"]
    assert values["enabled"] is True
    assert values["pools"]["granularity"] == embedded["pools"]["granularity"]
    assert {t["key"] for t in values["runs"]["tagConcurrencyLimits"]} == {
        t["key"] for t in embedded["runs"]["tag_concurrency_limits"]}


def test_image_is_pinned_like_the_tested_environment():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile, re.M).group(1)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), base  # an exact Python release
    assert set(re.findall(r"^FROM \S+ AS (\w+)", dockerfile, re.M)) >= {"cpu", "cuda"}
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", dockerfile, re.M))
    assert args["TORCH_VERSION"] == pins()["torch"] and args["TORCHVISION_VERSION"] == pins()["torchvision"]
    constraints = dict(line.split("==") for line in (DEPLOY / "constraints.txt").read_text().splitlines()
                       if line and not line.startswith("#"))
    for line in pyproject()["project"]["dependencies"]:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate():
            name = canonicalize_name(req.name)
            assert name in constraints, f"deploy/constraints.txt does not pin {name}"
            assert req.specifier.contains(constraints[name]), f"{name}=={constraints[name]} violates {req}"
