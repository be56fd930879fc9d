"""Something to deploy: `make dist`'s archives, deploy/Dockerfile and the Kubernetes manifests.

The files are linted by the tools the dev group installs (hadolint, the Kubernetes schemas
bundled in kubernetes-validate), and checked against the code they deploy: the ConfigMap's
config validates with the pod's environment, the container's arguments parse with the real CLI,
the pod's user is the image's, the retry policy is the Airflow sample's, the memory limit covers
the configured budget. `make dist` is run for real and its wheel installed into a fresh
virtualenv. The image itself is built and run by `make test-image` (tests/test_image.py).
"""

from __future__ import annotations

import ast
import email.parser
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_files import (
    CONFIGMAP,
    CRONJOB,
    DOCKERFILE,
    MANIFESTS,
    PVC,
    config_text,
    container,
    dockerfile_user,
    load,
    mounts,
    pod_spec,
    quantity_bytes,
    s3_config_text,
    uncomment_s3_credentials,
    volumes,
)
from helpers import REPO, parse_with_cli
from hung_runs import BOUND
from packaging.requirements import Requirement

from connector._version import __version__
from connector.config import parse_config
from connector.errors import ConfigError, ExitCode

BIN = Path(sys.executable).parent  # the dev tools' executables, beside this interpreter
# podFailurePolicy is GA from 1.31; 1.37 holds the newest schemas kubernetes-validate bundles.
K8S_VERSIONS = ("1.31.0", "1.37.0")
SAMPLE_DAGS = (
    REPO / "sample_configs" / "airflow_dag.py",
    REPO / "sample_configs" / "airflow_fanout_dag.py",
)
WHEEL = f"model_versions_connector-{__version__}-py3-none-any.whl"
SDIST = f"model_versions_connector-{__version__}.tar.gz"

# Measured (README, Performance, "Memory"): RSS after importing the connector, and how much
# each byte of registry.memory_budget_bytes added at the peak (153 -> 255 MiB at 64 MiB).
IMPORTED_BYTES = 155 << 20
PEAK_PER_BUDGET_BYTE = (255 - 153) / 64
S3_REQUEST_TIMEOUT = 60  # storage_options.request_timeout_seconds' default (dataset/objectstore.py)


def run(*command: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, check=False, **kwargs
    )


def kubernetes_validate(version: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    return run(BIN / "kubernetes-validate", "--strict", "--quiet", "-k", version, *paths)


def airflow_sample() -> ast.Module:
    return ast.parse(SAMPLE_DAGS[0].read_text(encoding="utf-8"))


def airflow_sample_constant(name: str) -> Any:
    """A module-level constant of sample_configs/airflow_dag.py, read without Airflow."""
    for node in airflow_sample().body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            value = node.value
            if isinstance(value, ast.Call):  # frozenset({...})
                value = value.args[0]
            return ast.literal_eval(value)
    raise AssertionError(f"{name} not found in {SAMPLE_DAGS[0].name}")


def airflow_sample_retries() -> int:
    """`retries` in the sample DAG's default_args."""
    for node in ast.walk(airflow_sample()):
        if isinstance(node, ast.Dict):
            keys = [ast.literal_eval(k) if k is not None else None for k in node.keys]
            if "retries" in keys:
                retries: int = ast.literal_eval(node.values[keys.index("retries")])
                return retries
    raise AssertionError(f"no retries in {SAMPLE_DAGS[0].name}")


# --- linters ---------------------------------------------------------------------------------


def test_the_dockerfile_passes_hadolint() -> None:
    result = run(BIN / "hadolint", DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_shell_form_entrypoint(tmp_path: Path) -> None:
    """The lint can fail: a shell-form ENTRYPOINT runs `sh -c`, which does not pass SIGTERM on."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    exec_form = 'ENTRYPOINT ["/usr/bin/tini", "--", "/opt/connector/bin/connector"]'
    assert exec_form in text
    broken = tmp_path / "Dockerfile"
    broken.write_text(text.replace(exec_form, "ENTRYPOINT /opt/connector/bin/connector"))
    result = run(BIN / "hadolint", broken)
    assert result.returncode != 0
    assert "DL3025" in result.stdout


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_manifests_match_the_kubernetes_schemas(version: str, tmp_path: Path) -> None:
    """As shipped, and with the commented S3 credentials in force."""
    with_s3 = tmp_path / "cronjob-s3.yaml"
    with_s3.write_text(uncomment_s3_credentials(CRONJOB.read_text(encoding="utf-8")))
    env = yaml.safe_load(with_s3.read_text())["spec"]["jobTemplate"]["spec"]["template"]
    names = [e["name"] for e in env["spec"]["containers"][0]["env"]]
    assert names == ["MODEL_REGISTRY_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    result = kubernetes_validate(version, *MANIFESTS, with_s3)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_refuses_a_misspelt_field(tmp_path: Path) -> None:
    misspelt = tmp_path / "cronjob.yaml"
    text = CRONJOB.read_text(encoding="utf-8")
    misspelt.write_text(text.replace("concurrencyPolicy:", "concurencyPolicy:"))
    result = kubernetes_validate(K8S_VERSIONS[0], misspelt)
    assert result.returncode != 0
    assert "'concurencyPolicy' was unexpected" in result.stdout + result.stderr


# --- the manifests agree with the code ----------------------------------------------------


@pytest.mark.parametrize("text", [config_text, s3_config_text], ids=["volume", "s3"])
def test_the_configmap_config_validates_with_the_pods_environment(text: Any) -> None:
    document = yaml.safe_load(text())
    pod_env = {entry["name"]: "from-the-secret" for entry in container()["env"]}
    config = parse_config(document, env=pod_env)
    assert not config.warnings  # no literal token
    assert "from-the-secret" in config.secrets()
    with pytest.raises(ConfigError, match="MODEL_REGISTRY_TOKEN"):
        parse_config(document, env={})


def test_the_s3_variant_writes_to_s3_and_the_volume_variant_to_the_claim() -> None:
    assert yaml.safe_load(s3_config_text())["output"]["uri"].startswith("s3://")
    uri = yaml.safe_load(config_text())["output"]["uri"]
    assert uri == mounts()["data"]
    claim = volumes()["data"]["persistentVolumeClaim"]["claimName"]
    assert claim == load(PVC)["metadata"]["name"]


def test_every_variable_the_config_reads_comes_from_a_secret() -> None:
    wanted = set(re.findall(r"\$\{(\w+)", config_text()))
    assert wanted == {"MODEL_REGISTRY_TOKEN"}
    env = {entry["name"]: entry for entry in container()["env"]}
    assert wanted <= set(env)
    for entry in env.values():  # no literal value at all: only references
        assert set(entry) == {"name", "valueFrom"}, entry
        assert entry["valueFrom"]["secretKeyRef"]["key"]


def test_the_container_runs_extract_on_the_mounted_config() -> None:
    params = parse_with_cli(container()["args"])
    assert container()["args"][0] == "extract"
    assert (params["log_format"], params["summary_format"]) == ("json", "json")
    config = Path(params["config_path"])
    assert str(config.parent) == mounts()["config"]
    assert volumes()["config"]["configMap"]["name"] == load(CONFIGMAP)["metadata"]["name"]
    assert config.name in load(CONFIGMAP)["data"]
    assert "ENV PATH=/opt/connector/bin:$PATH" in DOCKERFILE.read_text(encoding="utf-8")
    assert "TMPDIR=/tmp" in DOCKERFILE.read_text(encoding="utf-8")
    assert mounts()["tmp"] == "/tmp"
    assert volumes()["tmp"]["emptyDir"]["medium"] == "Memory"


def test_the_pod_runs_as_the_images_user_without_privileges() -> None:
    uid, gid = dockerfile_user()
    assert uid != 0
    pod = pod_spec()["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (uid, gid, gid)
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    own = container()["securityContext"]
    assert own["readOnlyRootFilesystem"] is True
    assert own["allowPrivilegeEscalation"] is False
    assert own["privileged"] is False
    assert own["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec()["automountServiceAccountToken"] is False


def test_runs_never_overlap_and_a_stop_gets_its_time() -> None:
    spec = load(CRONJOB)["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["timeZone"] == "Etc/UTC"  # the snapshot date is the UTC day
    assert 0 < spec["startingDeadlineSeconds"] <= 6 * 3600
    grace = pod_spec()["terminationGracePeriodSeconds"]
    # Longer than the bound the signal tests hold a stop to, and than one object-store call.
    assert grace > max(BOUND, S3_REQUEST_TIMEOUT)


def test_pod_retries_follow_the_airflow_samples_exit_code_policy() -> None:
    job = load(CRONJOB)["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == airflow_sample_retries()
    assert pod_spec()["restartPolicy"] == "Never"
    rules = job["podFailurePolicy"]["rules"]
    failing = {
        code
        for rule in rules
        if rule["action"] == "FailJob"
        for code in rule["onExitCodes"]["values"]
        if rule["onExitCodes"]["containerName"] == "connector"
    }
    permanent = {
        int(ExitCode[name.upper()]) for name in airflow_sample_constant("PERMANENT_FAILURES")
    }
    # Never retried: what the Airflow sample fails for good, and a published partial day.
    assert failing == permanent | {int(ExitCode.PARTIAL)}
    ignored = [rule for rule in rules if rule["action"] == "Ignore"]
    assert [rule["onPodConditions"][0]["type"] for rule in ignored] == ["DisruptionTarget"]


def test_the_memory_limit_covers_the_configured_budget() -> None:
    budget = parse_config(yaml.safe_load(config_text()), env={"MODEL_REGISTRY_TOKEN": "t"})
    resources = container()["resources"]
    limit = quantity_bytes(resources["limits"]["memory"])
    tmpfs = quantity_bytes(volumes()["tmp"]["emptyDir"]["sizeLimit"])  # counts against it
    peak = IMPORTED_BYTES + PEAK_PER_BUDGET_BYTE * budget.registry.memory_budget_bytes
    assert limit >= peak + tmpfs
    assert IMPORTED_BYTES < quantity_bytes(resources["requests"]["memory"]) <= limit


def test_the_image_installs_with_the_makefiles_uv() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    [pinned] = re.findall(r"^UV_VERSION := (\S+)$", makefile, re.M)
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    assert re.findall(r"^ARG UV_VERSION=(\S+)$", dockerfile, re.M) == [pinned]
    assert "--build-arg UV_VERSION=$(UV_VERSION)" in makefile
    assert "uv sync --locked --no-dev --no-install-project" in dockerfile


def test_the_deployment_and_the_samples_name_this_version() -> None:
    image = container()["image"]
    assert image.rsplit(":", 1)[1] == __version__
    for dag in SAMPLE_DAGS:
        docstring = ast.get_docstring(ast.parse(dag.read_text(encoding="utf-8"))) or ""
        assert f"pip install /path/to/{WHEEL}" in docstring, dag.name
        assert f"model-versions-connector=={__version__}" in docstring, dag.name
        assert "make dist" in docstring, dag.name


# --- make dist ---------------------------------------------------------------------------


def make_dist(directory: Path) -> tuple[Path, Path]:
    result = run("make", "--no-print-directory", "-C", REPO, "dist", f"DIST={directory}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in directory.iterdir()) == sorted([WHEEL, SDIST])
    return directory / WHEEL, directory / SDIST


def package_files() -> set[str]:
    """connector/ as committed: every file but bytecode."""
    return {
        str(path.relative_to(REPO))
        for path in (REPO / "connector").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def check_wheel(wheel: Path) -> None:
    info = f"model_versions_connector-{__version__}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = email.parser.Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert {n for n in names if not n.startswith(f"{info}/")} == package_files()
    assert "connector/py.typed" in names
    assert metadata["Version"] == __version__
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = sorted(map(str, map(Requirement, project["dependencies"])))
    assert sorted(map(str, map(Requirement, metadata.get_all("Requires-Dist")))) == declared
    assert "connector = connector.cli:run" in entry_points


def check_sdist(sdist: Path) -> None:
    top = f"model_versions_connector-{__version__}/"
    with tarfile.open(sdist) as archive:
        names = {m.name.removeprefix(top) for m in archive.getmembers() if m.isfile()}
    metadata = {"PKG-INFO", "README.md", "pyproject.toml", "setup.cfg", "MANIFEST.in"}
    egg_info = {n for n in names if n.startswith("model_versions_connector.egg-info/")}
    assert names - egg_info == package_files() | metadata  # no tests, samples, tools, deploy


def install_fresh(wheel: Path, root: Path) -> Path:
    """A new virtualenv with the wheel and exactly the versions uv.lock pins; its bin/."""
    uv = [sys.executable, str(REPO / "tools" / "uv.py"), str(REPO / ".venv-uv" / "bin" / "uv")]
    pins = root / "constraints.txt"
    export = ["export", "--locked", "--no-dev", "--no-emit-project", "--no-hashes", "--quiet"]
    steps = [
        [*export, "--format", "requirements-txt", "-o", str(pins)],
        ["venv", "--quiet", "--python", sys.executable, str(root / "venv")],
        ["pip", "install", "--quiet", "--python", str(root / "venv" / "bin" / "python")]
        + ["--constraint", str(pins), str(wheel)],
    ]
    for step in steps:
        result = run(*uv, *step, cwd=REPO)
        assert result.returncode == 0, result.stdout + result.stderr
    return root / "venv" / "bin"


@pytest.mark.slow
def test_make_dist_builds_archives_that_install_and_run(tmp_path: Path) -> None:
    wheel, sdist = make_dist(tmp_path / "dist")
    check_wheel(wheel)
    check_sdist(sdist)
    # The same commit gives the same wheel (file dates from the last commit).
    again, _ = make_dist(tmp_path / "again")
    assert again.read_bytes() == wheel.read_bytes()

    bin_dir = install_fresh(wheel, tmp_path)
    away = tmp_path / "elsewhere"  # nothing of the repository on sys.path
    away.mkdir()
    env = {"PATH": os.environ["PATH"], "MODEL_REGISTRY_TOKEN": "t", "HOME": str(away)}
    version = run(bin_dir / "connector", "--version", cwd=away, env=env)
    assert version.stdout.strip() == f"connector, version {__version__}", version.stderr
    minimal = REPO / "sample_configs" / "minimal.yaml"
    validate = run(bin_dir / "connector", "validate", "--config", minimal, cwd=away, env=env)
    assert validate.returncode == 0, validate.stderr
    assert validate.stdout.startswith(f"OK: {minimal}: 1 org(s), 1 model(s)")
    where = run(bin_dir / "python", "-c", "import connector; print(connector.__file__)", cwd=away)
    assert where.stdout.startswith(str(tmp_path / "venv")), where.stdout
