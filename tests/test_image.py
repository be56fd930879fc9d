"""The image of deploy/Dockerfile, run the way deploy/cronjob.yaml runs it.

Each run takes the CronJob's arguments, environment variable names, mount paths, user, memory
limit and container security settings (read-only root file system, no capabilities, no
privilege escalation), with host directories for its volumes (the ConfigMap, the claim, the
/tmp emptyDir). The container shares the host's network, so it reaches the simulator and moto
on loopback. SIGTERM is delivered as the kubelet does: `stop` signals PID 1 (tini).

Runs under `make test-image`, which builds the image first and names it in CONNECTOR_IMAGE (the
engine in CONNECTOR_CONTAINER, its run limits in CONNECTOR_CONTAINER_LIMITS); skipped elsewhere:
building needs a container engine and a base image.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_files import (
    config_text,
    container,
    dockerfile_user,
    mounts,
    pod_spec,
    quantity_bytes,
)
from ground_truth import dataset_rows, expected, project
from helpers import TOKEN, wait_until
from hung_runs import assert_lock_free
from packaging.markers import Marker
from packaging.utils import canonicalize_name
from s3_objects import duckdb_rows, keys, object_bytes

from connector._version import __version__
from connector.errors import ExitCode
from connector.simulator.server import SimulatedRegistry

IMAGE = os.environ.get("CONNECTOR_IMAGE", "")
ENGINE = shlex.split(os.environ.get("CONNECTOR_CONTAINER", "podman"))
LIMITS = shlex.split(os.environ.get("CONNECTOR_CONTAINER_LIMITS", ""))
REPO = Path(__file__).resolve().parents[1]
STOP_BOUND = 10  # seconds from SIGTERM to the container's exit (measured: well under 1 s)
AWS_NAMES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_EC2_METADATA_DISABLED",
)

StartSimulator = Callable[..., SimulatedRegistry]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not IMAGE,
        reason="needs the built image: `make test-image` builds it and runs these tests",
    ),
]

# Inside the image: what is installed (name -> version), the environment markers of its Python
# (as packaging computes them), and whether anything of the build stage came along.
INSPECT = """
import importlib.metadata, json, os, platform, sys
print(json.dumps({
    "installed": {
        d.metadata["Name"]: d.version for d in importlib.metadata.distributions()
    },
    "markers": {
        "implementation_name": sys.implementation.name,
        "implementation_version": platform.python_version(),
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    },
    "leftovers": [p for p in ("/opt/uv", "/src", "/root/.cache") if os.path.exists(p)],
}))
"""


class Pod:
    """One run of the CronJob's container; host directories stand for its volumes."""

    def __init__(self, root: Path, *, claim: bool = True) -> None:
        self.config_dir = root / "config"
        self.data = root / "data" if claim else None
        self.tmp = root / "tmp"
        for directory in (self.config_dir, self.tmp, self.data):
            if directory is not None:
                directory.mkdir()
                directory.chmod(0o1777)  # as fsGroup makes the claim writable for the pod

    def configure(
        self, registry: SimulatedRegistry, orgs: list[Any] | None = None, **output: Any
    ) -> None:
        """The ConfigMap's config, pointed at `registry` (its models, or `orgs`), and at
        `output` if given."""
        document = yaml.safe_load(config_text())
        document["registry"]["base_url"] = registry.url
        by_org: dict[str, list[str]] = {}
        for org, model in registry.targets():
            by_org.setdefault(org, []).append(model)
        found = [{"name": org, "models": models} for org, models in by_org.items()]
        document["orgs"] = orgs or found
        document["output"] = output or document["output"]
        path = Path(container()["args"][container()["args"].index("--config") + 1])
        (self.config_dir / path.name).write_text(yaml.safe_dump(document), encoding="utf-8")

    def command(self, name: str, args: list[str], env_names: tuple[str, ...] = ()) -> list[str]:
        """`run` with the CronJob container's settings, then the image's arguments."""
        spec, own = pod_spec(), container()
        limit = quantity_bytes(own["resources"]["limits"]["memory"])
        command = [*ENGINE, "run", "--rm", "--name", name, "--network", "host", *LIMITS]
        context = spec["securityContext"]
        command += ["--user", f"{context['runAsUser']}:{context['runAsGroup']}"]
        command += ["--memory", f"{limit >> 20}m"]
        if own["securityContext"]["readOnlyRootFilesystem"]:
            command += ["--read-only"]
            if Path(ENGINE[0]).name == "podman":  # podman adds tmpfs /run, /var/tmp otherwise
                command += ["--read-only-tmpfs=false"]
        if own["securityContext"]["capabilities"]["drop"] == ["ALL"]:
            command += ["--cap-drop", "ALL"]
        if not own["securityContext"]["allowPrivilegeEscalation"]:
            command += ["--security-opt", "no-new-privileges"]
        where = mounts()
        command += ["-v", f"{self.config_dir}:{where['config']}:ro", "-v", f"{self.tmp}:/tmp"]
        if self.data is not None:
            command += ["-v", f"{self.data}:{where['data']}"]
        for variable in [entry["name"] for entry in own["env"]] + list(env_names):
            command += ["-e", variable]  # the value comes from this process's environment
        return [*command, IMAGE, *args]


def container_name() -> str:
    return f"connector-test-{uuid.uuid4().hex[:10]}"


def environment() -> dict[str, str]:
    return {**os.environ, "MODEL_REGISTRY_TOKEN": TOKEN}


def run(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, env=environment(), timeout=timeout, check=False
    )


def locked_versions(markers: dict[str, str]) -> dict[str, str]:
    """What uv.lock pins for the runtime (no dev group) on a Python with these markers."""
    uv = [str(REPO / ".venv-uv" / "bin" / "uv"), "export", "--locked", "--no-dev"]
    exported = subprocess.run(
        [*uv, "--no-emit-project", "--no-hashes", "--format", "requirements-txt", "--quiet"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    pins: dict[str, str] = {}
    for line in exported.splitlines():
        if not line or line.startswith(("#", " ")):
            continue
        requirement, _, marker = line.partition(" ; ")
        if not marker or Marker(marker).evaluate(markers):
            name, version = requirement.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_the_image_holds_exactly_the_locked_dependencies_and_runs_as_its_user() -> None:
    inspect = run([*ENGINE, "image", "inspect", "--format", "{{json .Config}}", IMAGE])
    assert inspect.returncode == 0, inspect.stderr
    config = json.loads(inspect.stdout)
    uid, gid = dockerfile_user()
    assert config["User"] == f"{uid}:{gid}"
    assert pod_spec()["securityContext"]["runAsUser"] == uid
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "/opt/connector/bin/connector"]
    version = run([*ENGINE, "run", "--rm", *LIMITS, IMAGE, "--version"])
    assert version.stdout.strip() == f"connector, version {__version__}", version.stderr
    python = ["--entrypoint", "/opt/connector/bin/python", IMAGE, "-c", INSPECT]
    found = run([*ENGINE, "run", "--rm", *LIMITS, *python])
    assert found.returncode == 0, found.stderr
    facts = json.loads(found.stdout)
    assert facts["leftovers"] == []  # no uv, no sources, no caches from the build stage
    installed = {canonicalize_name(name): version for name, version in facts["installed"].items()}
    assert installed.pop("model-versions-connector") == __version__
    assert installed == locked_versions(facts["markers"])


def test_extract_and_report_run_with_a_read_only_root(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3, versions_shape="mixed")
    pod = Pod(tmp_path)
    pod.configure(registry)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    for extra in ([], ["--date", yesterday], ["--processes", "2"]):
        result = run(pod.command(container_name(), [*container()["args"], *extra]))
        assert result.returncode == ExitCode.OK, result.stderr
        summary = json.loads(result.stdout)
        assert summary["outcome"] == "ok" and summary["published"] is True
        assert TOKEN not in result.stdout + result.stderr
    assert pod.data is not None
    for day in (yesterday, summary["snapshot_date"]):
        assert project(dataset_rows(pod.data, day)) == project(expected(registry, 1))
    arguments = ["report", "--config", container()["args"][2], "--format", "json"]
    report = run(pod.command(container_name(), [*arguments, "--memory-limit", "256MiB"]))
    assert report.returncode == ExitCode.OK, report.stderr
    assert len(json.loads(report.stdout)) == 6  # one row per model
    assert list(pod.tmp.iterdir()) == []  # the report's spill directory went with it


def test_extract_publishes_to_s3(
    start_simulator: StartSimulator, s3_bucket: str, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=1, models_per_org=4, versions_shape="objects")
    pod = Pod(tmp_path, claim=False)
    pod.configure(registry, uri=f"s3://{s3_bucket}/lake")
    result = run(pod.command(container_name(), container()["args"], AWS_NAMES))
    assert result.returncode == ExitCode.OK, result.stderr
    summary = json.loads(result.stdout)
    assert summary["partition"].startswith(f"s3://{s3_bucket}/lake/model_versions/")
    rows = duckdb_rows(s3_bucket)
    assert len(rows) == summary["rows"] == len(expected(registry, 1))


class Stopped:
    """A run stopped the kubelet's way: SIGTERM to the container's PID 1 (tini) while every
    worker waits on a registry that holds each request for a minute."""

    def __init__(
        self, pod: Pod, registry: SimulatedRegistry, extra: list[str], env: tuple[str, ...]
    ):
        name = container_name()
        process = subprocess.Popen(
            pod.command(name, [*container()["args"], *extra], env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        try:
            wait_until(lambda: registry.stats().requests >= 4, timeout=60)  # all 4 workers hang
            started = time.monotonic()
            self.stop = run([*ENGINE, "stop", "-t", "60", name])
            self.stdout, self.stderr = process.communicate(timeout=90)
            self.seconds = time.monotonic() - started
        finally:
            if process.poll() is None:
                process.kill()
        self.exit_code = process.returncode
        self.summary: dict[str, Any] = json.loads(self.stdout) if self.stdout else {}


def hung_pod(start_simulator: StartSimulator, root: Path, **output: Any) -> tuple[Pod, Any]:
    registry = start_simulator(orgs=1, models_per_org=12, latency_seconds=60)
    pod = Pod(root, claim=not output)
    pod.configure(registry, **output)
    return pod, registry


@pytest.mark.parametrize(
    ("store", "extra"),
    [("claim", []), ("claim", ["--processes", "2"]), ("s3", [])],
    ids=["claim", "claim-2-processes", "s3"],
)
def test_sigterm_to_pid_1_stops_the_run_cleanly(
    store: str,
    extra: list[str],
    start_simulator: StartSimulator,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    record_property: Callable[[str, Any], None],
) -> None:
    bucket = request.getfixturevalue("s3_bucket") if store == "s3" else ""
    output = {"uri": f"s3://{bucket}/lake"} if bucket else {}
    pod, registry = hung_pod(start_simulator, tmp_path, **output)
    stopped = Stopped(pod, registry, extra, AWS_NAMES if bucket else ())
    record_property("stop_seconds", round(stopped.seconds, 3))
    assert stopped.stop.returncode == 0, stopped.stop.stderr
    assert stopped.exit_code == ExitCode.TERMINATED, stopped.stderr
    assert stopped.seconds < STOP_BOUND
    assert "received: stopping" in stopped.stderr  # with --processes, each child says it
    summary = stopped.summary
    assert (summary["outcome"], summary["published"]) == ("interrupted", False)
    assert "stopped by SIGTERM" in summary["message"]
    if pod.data is not None:
        # Nothing published or staged: only run records and the (released) lock files.
        left = [str(p.relative_to(pod.data)) for p in pod.data.rglob("*") if p.is_file()]
        assert [p for p in left if not p.startswith("_runs/") and not p.endswith(".lock")] == []
        assert_lock_free(pod.data)
    else:
        assert not [key for key in keys(bucket) if "/model_versions/" in key]
    if not extra:  # --processes: see the next test
        record = read_record(summary["record"], pod, bucket)
        assert record["outcome"] == "interrupted"


def read_record(uri: str, pod: Pod, bucket: str) -> dict[str, Any]:
    """A run record the summary names, read from the host side of the claim or from S3."""
    if bucket:
        loaded: dict[str, Any] = json.loads(
            object_bytes(bucket, uri.removeprefix(f"s3://{bucket}/"))
        )
        return loaded
    assert pod.data is not None
    return dict(json.loads((pod.data / Path(uri).relative_to(mounts()["data"])).read_text()))


def test_a_stopped_multi_process_run_keeps_its_run_record(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    pod, registry = hung_pod(start_simulator, tmp_path)
    stopped = Stopped(pod, registry, ["--processes", "2"], ())
    assert stopped.exit_code == ExitCode.TERMINATED, stopped.stderr
    assert stopped.summary["record"], "no run record"
    assert read_record(stopped.summary["record"], pod, "")["outcome"] == "interrupted"


def test_sigterm_ends_a_command_that_sets_no_handler(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """Why tini is PID 1: the kernel gives PID 1 no default action for SIGTERM, so a
    `connector` there would ignore it whenever no handler is installed (`targets`, `report`,
    `validate`, an extract still starting) until the kubelet's SIGKILL."""
    registry = start_simulator(orgs=1, models_per_org=2, latency_seconds=60)
    pod = Pod(tmp_path)
    pod.configure(registry, orgs=[{"name": "org-00", "models": ["*"]}])  # listModels hangs
    name = container_name()
    arguments = ["targets", "--config", container()["args"][2]]
    process = subprocess.Popen(
        pod.command(name, arguments),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        wait_until(lambda: registry.stats().requests >= 1, timeout=60)
        started = time.monotonic()
        run([*ENGINE, "stop", "-t", "20", name])
        process.communicate(timeout=60)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + 15  # ended by SIGTERM, not 137 (SIGKILL at the timeout)
    assert elapsed < STOP_BOUND
