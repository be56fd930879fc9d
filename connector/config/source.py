"""Reading a config file defensively: it is user input like any other.

A config path can name a directory, a FIFO or `/dev/zero` (a read that never ends), a file
that is not UTF-8, or YAML whose anchors and aliases expand to billions of nodes from a few
lines (the "billion laughs"). Each is refused with a `ConfigError` (exit code 2) naming the
problem, before PyYAML builds anything.

A config also means one thing. A key written twice in a mapping is an error naming both lines
(PyYAML would keep the last one without a word). And only `true`/`false` are booleans, as in
YAML 1.2: PyYAML's YAML 1.1 reads `yes`, `no`, `on` and `off` as booleans too, so
`version_detail: off` would arrive as False; here such a word stays the word that was written.
A setting that wants a word and gets `true`/`false` or a number is told to quote it
(`connector.config`, keyed on the setting's type).
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any

import yaml

from connector.errors import ConfigError

MAX_CONFIG_BYTES = 1024 * 1024  # a config with thousands of models is a few hundred KiB
MAX_EXPANDED_NODES = 1_000_000  # nodes after aliases are expanded
_BOOL_TAG = "tag:yaml.org,2002:bool"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class ConfigLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` whose implicit booleans are YAML 1.2's: `true` and `false` (in the
    three spellings YAML allows), so `on`, `off`, `yes` and `no` stay strings."""


# The same loader on libyaml where PyYAML was built with it: ten times faster on a config that
# lists thousands of models (5 ms against 55 ms for 2,000, at every start). A document it
# refuses is read again by `ConfigLoader`, so a problem is always told in the same words.
_FastConfigLoader: type[yaml.CSafeLoader] | None = (
    type("_FastConfigLoader", (yaml.CSafeLoader,), {}) if yaml.__with_libyaml__ else None
)

_Loader = ConfigLoader | yaml.CSafeLoader

for _loader in (ConfigLoader, _FastConfigLoader):
    if _loader is None:
        continue
    _loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _loader.add_implicit_resolver(
        _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )


def quote_problem(value: bool | float, expected: str | None = None) -> str:
    """What to say when a setting that wants text or a word got a YAML boolean or number:
    `true`, `1.10` or `0123` (which YAML reads as 83) are not what was written, so quote it.
    Keyed on the setting's type (by the caller), the same for every setting; the value itself
    is not echoed (it may be a token)."""
    kind = f"the YAML boolean {str(value).lower()}" if isinstance(value, bool) else "a number"
    if expected:
        return f"is {kind}, not one of {expected}: write one of those words (quoted, if in doubt)"
    return f"is {kind}, not text: put the value in quotes to keep it as written"


def key_path(location: tuple[int | str, ...]) -> str:
    """('orgs', 1, 'models', 0) -> 'orgs[1].models[0]'."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def read_config_text(source: str) -> str:
    """The file's text: a regular file, at most MAX_CONFIG_BYTES, UTF-8."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not hang before the type is checked.
        fd = os.open(source, os.O_NONBLOCK | os.O_CLOEXEC)  # read-only: O_RDONLY is 0
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror or exc}"], source) from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # checked on the descriptor: what was opened is what is read
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise ConfigError([f"is {kind}; give the path of a YAML file"], source)
    with os.fdopen(fd, "rb") as handle:
        os.set_blocking(fd, True)
        try:
            data = handle.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigError([f"cannot read the file: {exc.strerror or exc}"], source) from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [f"is larger than {MAX_CONFIG_BYTES} bytes; is it the right file?"], source
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"is not UTF-8 text (byte {exc.start}); save it as UTF-8"], source
        ) from exc


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes the document has once every alias is expanded (shared nodes counted
    each time they are referred to), computed on the graph without expanding it."""
    sizes: dict[int, int] = {}
    order: list[yaml.Node] = []
    stack = [root]
    while stack:  # post-order without recursion: a deep document must not overflow the stack
        node = stack.pop()
        if id(node) in sizes:
            continue
        sizes[id(node)] = -1
        order.append(node)
        stack.extend(_children(node))
    for node in reversed(order):
        sizes[id(node)] = min(
            1 + sum(sizes[id(child)] for child in _children(node)), MAX_EXPANDED_NODES + 1
        )
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _duplicate_keys(root: yaml.Node, loader: _Loader) -> list[str]:
    """Every key written twice in one mapping, with both lines, in the file's order. Keys
    compare as the values they construct to (`1` and `true` are one key of a Python dict, so
    one here too); each node is visited once, so aliases cost nothing; `<<` merges are
    overrides, not duplicates."""
    found: list[tuple[int, str]] = []
    visited: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[int | str, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        children: list[tuple[yaml.Node, tuple[int | str, ...]]] = []
        if isinstance(node, yaml.SequenceNode):
            children = [(item, (*path, index)) for index, item in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            first: dict[Any, tuple[int, str]] = {}
            for key, value in node.value:
                name = _scalar_key(key, loader)
                if name is None:  # a merge (`<<`) or a key that is itself a collection
                    children.append((value, path))
                    continue
                line, text = key.start_mark.line + 1, str(key.value)
                if name in first:
                    found.append((line, _twice(key_path(path), first[name], (line, text))))
                else:
                    first[name] = (line, text)
                children.append((value, (*path, text)))
        stack.extend(reversed(children))  # in document order: a shared node gets its first path
    return [problem for _, problem in sorted(found)]


def _twice(where: str, first: tuple[int, str], again: tuple[int, str]) -> str:
    lines = f"at lines {first[0]} and {again[0]}; YAML would keep only the last: keep one"
    if first[1] == again[1]:
        return f"{where}: the key {first[1]!r} is written twice, {lines}"
    return f"{where}: the keys {first[1]!r} and {again[1]!r} are one key to YAML, {lines}"


def _scalar_key(key: yaml.Node, loader: _Loader) -> Any:
    """The value a plain mapping key constructs to; None for a merge or a collection key."""
    if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
        return None
    value = loader.construct_object(key)
    try:
        hash(value)
    except TypeError:
        return None
    return value


def load_yaml(text: str, source: str) -> tuple[Any, list[str]]:
    """The document, loaded by `ConfigLoader`, and the keys written twice in it (problems the
    caller reports with the rest, so a file is fixed in one round); a document that expands
    past MAX_EXPANDED_NODES nodes is refused at once. YAMLError for a document that is not
    YAML, in `ConfigLoader`'s words."""
    if _FastConfigLoader is not None:
        try:
            return _load(_FastConfigLoader(text), source)
        except yaml.YAMLError:
            pass  # told below by the pure-Python parser, whose messages the docs show
    return _load(ConfigLoader(text), source)


def _load(loader: _Loader, source: str) -> tuple[Any, list[str]]:
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        if _expanded_size(node) > MAX_EXPANDED_NODES:
            raise ConfigError(
                [
                    f"its anchors and aliases expand to more than {MAX_EXPANDED_NODES:,} "
                    "values (a YAML alias bomb?); write the settings out"
                ],
                source,
            )
        duplicates = _duplicate_keys(node, loader)
        return loader.construct_document(node), duplicates
    finally:
        loader.dispose()
