"""The fleet recipes in deploy/ run as written: the manifests are valid Kubernetes objects (checked against the API
schemas kubernetes-validate ships, offline) and agree with themselves, the sbatch script is valid bash, and every
plugin option they use exists (an option renamed in the plugin fails here, not on a cluster)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pytest_aienergyscore.config.options import OPTIONS
from pytest_aienergyscore.session.shard_run import FINISHED_EXIT_STATUSES

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
KUBE = DEPLOY / "kubernetes"
MANIFESTS = sorted(KUBE.glob("*.yaml"))
# deploy/kubernetes/README.md asks for 1.29 or later (backoffLimitPerIndex, podFailurePolicy's FailIndex)
OLDEST_KUBERNETES = "1.29.0"
SBATCH = DEPLOY / "slurm" / "sweep.sbatch"
RECIPES = sorted(p for p in DEPLOY.rglob("*") if p.is_file())

FLAG = re.compile(r"(?<![\w-])--(?:energy-[a-z0-9-]+|backend[a-z0-9-]*)")
VARIABLE = re.compile(r"\bAIENERGYSCORE_[A-Z0-9_]+\b")
HUB_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")  # what a Hugging Face access token looks like


def _documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((KUBE / name).read_text()) if doc]


def _one(name: str, kind: str) -> dict[str, Any]:
    [found] = [doc for doc in _documents(name) if doc["kind"] == kind]
    return found


def _schema_problems(document: dict[str, Any], version: str) -> str | None:
    """None when ``document`` is a valid object of its kind in Kubernetes ``version`` (unknown fields refused)."""
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        return str(err)
    return None


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, kubernetes_validate.latest_version()])
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_a_valid_kubernetes_object_from_the_oldest_version_the_readme_names(
    manifest: Path, version: str
) -> None:
    documents = _documents(manifest.name)
    assert documents
    for document in documents:
        assert _schema_problems(document, version) is None


def test_the_schema_check_refuses_a_misspelt_field_and_the_job_on_a_cluster_older_than_the_readme_names(job) -> None:
    misspelt = {**job, "spec": {**{k: v for k, v in job["spec"].items() if k != "parallelism"}, "paralelism": 2}}
    assert "'paralelism' was unexpected" in (_schema_problems(misspelt, OLDEST_KUBERNETES) or "")
    # 1.28 still required onPodConditions in each podFailurePolicy rule: the FailIndex rule is 1.29's
    assert "podFailurePolicy" in (_schema_problems(job, "1.28.0") or "")


@pytest.fixture(scope="module")
def job() -> dict[str, Any]:
    return _one("job.yaml", "Job")


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"].get("template", workload)["spec"]
    [container] = spec["containers"]
    return container


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"].get("template", workload)["spec"]


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _mount_of(workload: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume mounted at ``path``."""
    [mount] = [m for m in _container(workload)["volumeMounts"] if m["mountPath"] == path]
    [volume] = [v for v in _pod_spec(workload)["volumes"] if v["name"] == mount["name"]]
    return volume


def unknown_options(text: str) -> list[str]:
    """The --energy-*/--backend flags and AIENERGYSCORE_* variables in ``text`` that the options table lacks."""
    flags = {spec.flag for spec in OPTIONS} | {spec.twin for spec in OPTIONS if spec.twin}
    variables = {spec.env for spec in OPTIONS if spec.env}
    bad = [flag for flag in FLAG.findall(text) if flag not in flags]
    return bad + [name for name in VARIABLE.findall(text) if name not in variables]


def test_the_kubernetes_job_is_indexed_with_one_shard_per_completion(job) -> None:
    args = _container(job)["args"]
    shards = int(re.fullmatch(r"auto/(\d+)", _arg(args, "--energy-shard"))[1])
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == shards and 1 <= job["spec"]["parallelism"] <= shards
    assert _container(job)["command"] == ["pytest"] and args[0] == "benchmarks/"


def test_each_pod_gets_exactly_one_gpu(job) -> None:
    resources = _container(job)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources.get("requests", {}).get("nvidia.com/gpu", 1) == 1


def test_the_hub_token_comes_from_a_secret_and_no_recipe_holds_one(job) -> None:
    [token] = [env for env in _container(job)["env"] if env["name"] == "HF_TOKEN"]
    assert "value" not in token
    assert set(token["valueFrom"]["secretKeyRef"]) >= {"name", "key"}
    assert [p.name for p in RECIPES if HUB_TOKEN.search(p.read_text())] == []


def test_results_go_to_the_claim_of_pvc_yaml_mounted_where_energy_output_points(job) -> None:
    claim = _one("pvc.yaml", "PersistentVolumeClaim")
    output = _arg(_container(job)["args"], "--energy-output")
    assert _mount_of(job, output)["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]  # pods on several nodes write at once


def test_the_run_id_is_the_jobs_name_through_the_downward_api(job) -> None:
    assert _arg(_container(job)["args"], "--energy-run-id") == "$(JOB_NAME)"
    [name] = [env for env in _container(job)["env"] if env["name"] == "JOB_NAME"]
    assert name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['job-name']"


def test_the_model_list_is_a_configmap_mounted_where_pytest_looks_and_it_is_python(job) -> None:
    container = _container(job)
    volume = _mount_of(job, f"{container['workingDir']}/{container['args'][0].rstrip('/')}")
    config_map = _one("job.yaml", "ConfigMap")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    for name, source in config_map["data"].items():
        assert name.startswith("test_") and name.endswith(".py")
        compile(source, name, "exec")


def test_only_a_shard_that_died_runs_again(job) -> None:
    """Exit statuses the shard counts as finished (its work was done) fail the index without a retry, which the
    shard would refuse anyway; anything else (a lost node, out of memory) runs once more and continues the share."""
    [rule] = job["spec"]["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailIndex" and rule["onExitCodes"]["containerName"] == _container(job)["name"]
    values = rule["onExitCodes"]["values"]
    assert values == sorted(set(FINISHED_EXIT_STATUSES) - {0})  # Kubernetes wants them sorted, without 0
    assert job["spec"]["backoffLimitPerIndex"] >= 1 and _pod_spec(job)["restartPolicy"] == "Never"


def test_the_merge_pod_reads_the_jobs_run_folder_on_the_same_claim(job) -> None:
    merge = _one("merge.yaml", "Pod")
    output = _arg(_container(job)["args"], "--energy-output")
    run_folder = f"{output}/{job['metadata']['name']}"
    [command] = _container(merge)["args"]
    assert command.startswith(f"aienergyscore merge {run_folder} -o {run_folder}/merged")
    assert _mount_of(merge, output) == _mount_of(job, output)
    assert "resources" not in _container(merge)  # no GPU to merge files


def _sbatch_options() -> list[str]:
    return [line.split(None, 1)[1] for line in SBATCH.read_text().splitlines() if line.startswith("#SBATCH ")]


def test_the_sbatch_script_is_valid_bash() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run([bash, "-n", str(SBATCH)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_the_slurm_array_has_one_task_per_shard_and_one_gpu_each() -> None:
    options = _sbatch_options()
    assert "--gpus-per-task=1" in options and "--ntasks=1" in options
    [array] = [o for o in options if o.startswith("--array=")]
    last = int(re.fullmatch(r"--array=0-(\d+)(%\d+)?", array)[1])
    text = SBATCH.read_text()
    shards = int(re.search(r"^SHARDS=(\d+)", text, re.MULTILINE)[1])
    assert last + 1 == shards
    assert '--energy-shard "auto/${SHARDS}"' in text and '--energy-run-id "${SLURM_ARRAY_JOB_ID}"' in text


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_option_a_recipe_uses_exists_in_the_options_table(recipe: Path) -> None:
    assert unknown_options(recipe.read_text()) == []


def test_the_option_check_catches_a_renamed_flag_or_variable() -> None:
    text = "pytest --energy-shards auto/4 --energy-output /results --backends x AIENERGYSCORE_SHARDS=1"
    assert unknown_options(text) == ["--energy-shards", "--backends", "AIENERGYSCORE_SHARDS"]
    assert unknown_options("--backend optimum --energy-backend x AIENERGYSCORE_RUN_ID=a") == []
