"""Which shard a target belongs to, and the fingerprint that ties staged shards to one config.

A target's shard depends on nothing but its own `org/model` text (SHA-256, not Python's
per-process salted `hash()`), so the same model lands in the same shard on every machine, in
every process and however the target list around it changes (models discovered, added or
removed): no model can land in two shards of the same count.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from connector.config import Config
from connector.dataset.schema import SCHEMA_VERSION
from connector.errors import ConfigError

Shard = tuple[int, int]  # (K, N): shard K of N, K from 1 to N
MAX_SHARDS = 4096
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")

# Settings that change how a run talks to the registry or writes files, not what a snapshot
# holds: shards staged with different values of these still make one snapshot, so `--processes`
# may split the rate limit and concurrency without making its own shards look stale.
_OPERATIONAL: dict[str, frozenset[str]] = {
    "registry": frozenset(
        {
            "token",
            "timeout_seconds",
            "connect_timeout_seconds",
            "concurrency",
            "max_requests_per_second",
            "ca_bundle",
            "proxy",
            "retry",
        }
    ),
    # The publish's guards (the ratio, the checks) apply when the parts are published.
    "output": frozenset({"min_success_ratio", "batch_rows", "checks"}),
}


def shard_of(org: str, model: str, count: int) -> int:
    """The shard (1..count) of one target: the first 8 bytes of SHA-256("org/model") mod count."""
    digest = hashlib.sha256(f"{org}/{model}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def select(targets: Iterable[tuple[str, str]], shard: Shard | None) -> list[tuple[str, str]]:
    """The targets of one shard, in their original order (all of them when `shard` is None)."""
    if shard is None:
        return list(targets)
    index, count = shard
    return [(org, model) for org, model in targets if shard_of(org, model, count) == index]


def check_shard(shard: Shard) -> Shard:
    """Refuse a shard outside 1..N (ConfigError, exit 2)."""
    index, count = shard
    if not 1 <= count <= MAX_SHARDS:
        raise ConfigError([f"--shard: the shard count must be 1 to {MAX_SHARDS}, got {count}"])
    if not 1 <= index <= count:
        raise ConfigError([f"--shard: K must be between 1 and N={count}, got {index}"])
    return shard


def parse_shard(text: str) -> Shard:
    """'2/4' -> (2, 4); ConfigError for anything else."""
    match = _SPEC.match(text)
    if match is None:
        raise ConfigError([f"--shard: expected K/N such as 2/4, got {text!r}"])
    return check_shard((int(match[1]), int(match[2])))


def fingerprint(config: Config, output_uri: str) -> str:
    """A digest of everything in the config that decides what a snapshot holds.

    Tokens and the operational settings above are left out (so it carries no secret and a
    rotated token does not make staged shards stale); every other key, including ones added
    later, is in, so a shard staged under another target list, registry or output is caught.
    """
    document: dict[str, Any] = config.model_dump(mode="json")
    for section, keys in _OPERATIONAL.items():
        document[section] = {k: v for k, v in document[section].items() if k not in keys}
    document["orgs"] = [
        {k: v for k, v in org.items() if k != "token"} for org in document.get("orgs", [])
    ]
    document["output"]["uri"] = output_uri
    document["schema_version"] = SCHEMA_VERSION
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
