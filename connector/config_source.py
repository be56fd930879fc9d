"""Reading a config file defensively: it is user input like any other.

A config path can name a directory, a FIFO or `/dev/zero` (a read that never ends), a file
that is not UTF-8, or YAML whose anchors and aliases expand to billions of nodes from a few
lines (the "billion laughs"). Each is refused with a `ConfigError` (exit code 2) naming the
problem, before PyYAML builds anything.
"""

from __future__ import annotations

import os
import stat
from typing import Any

import yaml

from connector.errors import ConfigError

MAX_CONFIG_BYTES = 1024 * 1024  # a config with thousands of models is a few hundred KiB
MAX_EXPANDED_NODES = 1_000_000  # nodes after aliases are expanded


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


def load_yaml(text: str, source: str) -> Any:
    """`yaml.safe_load`, refusing a document that expands past MAX_EXPANDED_NODES nodes."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_EXPANDED_NODES:
            raise ConfigError(
                [
                    f"its anchors and aliases expand to more than {MAX_EXPANDED_NODES:,} "
                    "values (a YAML alias bomb?); write the settings out"
                ],
                source,
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()
