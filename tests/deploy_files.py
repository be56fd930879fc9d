"""The deployment files under deploy/ as the tests read them: the CronJob's pod and container,
the ConfigMap's connector config (and its commented S3 variant), the Dockerfile's final user.
Shared by test_deploy.py (static checks, every run) and test_image.py (the image run the way
the CronJob runs it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from helpers import REPO

DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
CRONJOB = DEPLOY / "cronjob.yaml"
CONFIGMAP = DEPLOY / "configmap.yaml"
PVC = DEPLOY / "pvc.yaml"
MANIFESTS = (CONFIGMAP, CRONJOB, PVC)


def load(path: Path) -> dict[str, Any]:
    """The one Kubernetes object a manifest holds."""
    [document] = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    assert isinstance(document, dict), path
    return document


def pod_spec() -> dict[str, Any]:
    """The pod template of the CronJob's jobs."""
    spec: dict[str, Any] = load(CRONJOB)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    """The CronJob's `connector` container."""
    [found] = [c for c in pod_spec()["containers"] if c["name"] == "connector"]
    return found


def mounts() -> dict[str, str]:
    """volume name -> where the container mounts it."""
    return {mount["name"]: mount["mountPath"] for mount in container()["volumeMounts"]}


def volumes() -> dict[str, dict[str, Any]]:
    """volume name -> its source in the pod spec."""
    return {volume["name"]: volume for volume in pod_spec()["volumes"]}


def config_text() -> str:
    """The connector config the ConfigMap holds, as the pod reads it."""
    data: dict[str, str] = load(CONFIGMAP)["data"]
    [text] = data.values()
    return text


def s3_config_text() -> str:
    """The ConfigMap's config with its commented S3 output in place of the volume: the YAML
    lines from `# uri: s3://` to the end of the file, uncommented, replace `uri: /data`."""
    lines = config_text().splitlines()
    [start] = [i for i, line in enumerate(lines) if re.match(r"\s*# uri: s3://", line)]
    uncommented = [re.sub(r"^(\s*)# ", r"\1", line) for line in lines[start:]]
    kept = [line for line in lines[:start] if line.strip() != "uri: /data"]
    return "\n".join([*kept, *uncommented]) + "\n"


def uncomment_s3_credentials(manifest: str) -> str:
    """The CronJob with its commented AWS credential variables in force: the consecutive
    comment lines from `# - name: AWS_ACCESS_KEY_ID` on, uncommented."""
    lines = manifest.splitlines()
    [start] = [i for i, line in enumerate(lines) if "# - name: AWS_ACCESS_KEY_ID" in line]
    end = start
    while end < len(lines) and lines[end].lstrip().startswith("#"):
        end += 1
    block = [line.replace("# ", "", 1) for line in lines[start:end]]
    return "\n".join([*lines[:start], *block, *lines[end:]]) + "\n"


def dockerfile_user() -> tuple[int, int]:
    """The numeric uid:gid of the final stage's USER."""
    [user] = re.findall(r"^USER (\S+)$", DOCKERFILE.read_text(encoding="utf-8"), re.M)[-1:]
    uid, gid = user.split(":")
    return int(uid), int(gid)


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (binary suffixes only, as the manifest uses) in bytes."""
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    assert match, f"not a binary memory quantity: {quantity}"
    return int(match[1]) * units[match[2]]
