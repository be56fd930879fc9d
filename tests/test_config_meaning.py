"""A config means one thing: a key written twice is an error naming both lines; a YAML 1.1
boolean word (`off`, `yes`) where a setting wants a word is that word, and `true`/`false` or a
number where one wants text or a word is refused with a message saying to quote it, by the same
rule for every such setting (found here by walking the schema, so a new setting is covered
without being named); what `validate` prints of a value is escaped."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from pydantic import BaseModel, SecretStr

from connector.cli import main
from connector.config import Config, load_config
from connector.config import source as config_source
from connector.errors import ConfigError

ENV = {"MODEL_REGISTRY_TOKEN": "tok-123", "GLOBEX_TOKEN": "tok-456"}
VALID = """\
registry:
  base_url: https://registry.example.com
  token: ${MODEL_REGISTRY_TOKEN}
orgs:
  - name: acme
    models: [a, b]
output:
  uri: ./data
"""
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=ENV)
    return caught.value.problems


def validate(path: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["validate", "--config", str(path), *args], env=ENV)


# --- duplicate keys -----------------------------------------------------------------------


def test_a_key_written_twice_is_an_error_naming_both_lines(tmp_path: Path) -> None:
    text = VALID.replace(
        "  token: ${MODEL_REGISTRY_TOKEN}\n",
        "  token: ${MODEL_REGISTRY_TOKEN}\n  concurrency: 2\n  token: literal\n",
    )
    assert problems(write(tmp_path, text)) == [
        "registry: the key 'token' is written twice, at lines 3 and 5; YAML would keep only "
        "the last: keep one"
    ]


def test_duplicates_at_every_level_are_reported_with_the_other_problems(tmp_path: Path) -> None:
    text = (
        VALID.replace("    models: [a, b]\n", "    models: [a, b]\n    name: other\n")
        + "  uri: ./elsewhere\n"
        + "  1: x\n  true: y\n"
        + "registry: {}\n"
    ).replace("  base_url:", "  concurency: 3\n  base_url:")
    found = problems(write(tmp_path, text))
    assert found[:4] == [
        "orgs[0]: the key 'name' is written twice, at lines 6 and 8; YAML would keep only the "
        "last: keep one",
        "output: the key 'uri' is written twice, at lines 10 and 11; YAML would keep only the "
        "last: keep one",
        "output: the keys '1' and 'true' are one key to YAML, at lines 12 and 13; YAML would "
        "keep only the last: keep one",
        "(top level): the key 'registry' is written twice, at lines 1 and 14; YAML would keep "
        "only the last: keep one",
    ]
    assert len(found) > 4  # the unknown keys of what YAML kept are reported in the same round


def test_merges_and_aliases_are_not_duplicates(tmp_path: Path) -> None:
    text = "defaults: &d {timeout_seconds: 5, concurrency: 2}\nshared: &m [a, b]\n" + VALID.replace(
        "  token:", "  <<: *d\n  concurrency: 4\n  token:"
    ).replace("[a, b]", "*m")
    found = problems(write(tmp_path, text))
    assert found == [
        "defaults: unknown key (check the spelling; see sample_configs/full.yaml)",
        "shared: unknown key (check the spelling; see sample_configs/full.yaml)",
    ]


def test_a_duplicate_inside_an_anchor_is_reported_once(tmp_path: Path) -> None:
    text = VALID.replace(
        "  - name: acme\n    models: [a, b]\n",
        "  - &o {name: acme, name: acme, models: [a]}\n  - *o\n",
    )
    found = [p for p in problems(write(tmp_path, text)) if "written twice" in p]
    assert found == [
        "orgs[0]: the key 'name' is written twice, at lines 5 and 5; YAML would keep only the "
        "last: keep one"
    ]


@pytest.mark.parametrize("command", ["validate", "extract", "targets", "report"])
def test_every_command_refuses_a_duplicate_key(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may run, but if it did, it stays in tmp
    text = VALID.replace("https://registry.example.com", "http://127.0.0.1:9") + "  uri: ./b\n"
    result = CliRunner().invoke(main, [command, "--config", str(write(tmp_path, text))], env=ENV)
    assert result.exit_code == 2, result.output
    assert "output: the key 'uri' is written twice, at lines 8 and 9" in result.stderr


# --- YAML 1.1 booleans and numbers where a setting wants a word ----------------------------


def _leaves(
    model: type[BaseModel], path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], Any]]:
    """Every setting of the schema with its type, nested sections walked."""
    found = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        nested = [
            a for a in [annotation, *options] if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if nested:
            found += _leaves(nested[0], (*path, name))
        elif typing.get_origin(annotation) is not list:
            found.append(((*path, name), annotation))
    return found


def _words(annotation: Any) -> list[str] | None:
    """The words a Literal setting takes (through Optional), or None."""
    if typing.get_origin(annotation) is typing.Literal:
        return [str(word) for word in typing.get_args(annotation)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for part in typing.get_args(annotation):
            if (words := _words(part)) is not None:
                return words
    return None


def _wants_text(annotation: Any) -> bool:
    parts = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return _words(annotation) is not None or any(p in (str, SecretStr, Path) for p in parts)


WORD_SETTINGS = [(path, ann) for path, ann in _leaves(Config) if _wants_text(ann)]
LITERALS = [(path, _words(ann)) for path, ann in WORD_SETTINGS if _words(ann) is not None]


def _document(path: tuple[str, ...], value: str) -> str:
    """VALID with the setting at `path` (orgs: the first org) written as the YAML `value`."""
    document: dict[str, Any] = yaml.safe_load(VALID)
    node = document["orgs"][0] if path[0] == "orgs" else document
    if "storage_options" in path:
        document["output"]["uri"] = "s3://bucket-name/prefix"
    for part in path[1 if path[0] == "orgs" else 0 : -1]:
        node = node.setdefault(part, {})
    node[path[-1]] = "__VALUE__"
    return yaml.safe_dump(document, sort_keys=False).replace("__VALUE__", value)


def test_the_walk_finds_the_word_settings() -> None:
    found = {".".join(path) for path, _ in WORD_SETTINGS}
    assert {"registry.base_url", "registry.token", "orgs.name", "output.uri"} <= found
    assert {".".join(path) for path, _ in LITERALS} >= {
        "registry.version_detail",
        "output.storage_options.addressing_style",
    }


@pytest.mark.parametrize(
    ("path", "words"), LITERALS, ids=lambda v: ".".join(v) if isinstance(v, tuple) else ""
)
def test_every_word_of_every_word_setting_means_itself_unquoted(
    path: tuple[str, ...], words: list[str], tmp_path: Path
) -> None:
    """`version_detail: off` is "off" (PyYAML alone reads False), and so for every word of
    every such setting, including words YAML 1.1 takes for booleans."""
    for word in words:
        config = load_config(write(tmp_path, _document(path, word)), env=ENV)
        node: Any = config.orgs[0] if path[0] == "orgs" else config
        for part in path[1 if path[0] == "orgs" else 0 :]:
            node = getattr(node, part)
        assert node == word, (path, word)


@pytest.mark.parametrize(
    ("path", "annotation"), WORD_SETTINGS, ids=lambda v: ".".join(v) if isinstance(v, tuple) else ""
)
@pytest.mark.parametrize("value", ["true", "false", "FALSE", "0123", "1.10"])
def test_a_boolean_or_number_where_a_word_goes_says_to_quote_it(
    path: tuple[str, ...], annotation: Any, value: str, tmp_path: Path
) -> None:
    key = "orgs[0]." + ".".join(path[1:]) if path[0] == "orgs" else ".".join(path)
    [problem] = [p for p in problems(write(tmp_path, _document(path, value))) if p.startswith(key)]
    kind = "a number" if value[0].isdigit() else f"the YAML boolean {value.lower()}"
    assert problem.startswith(f"{key}: is {kind}, not "), problem
    assert "quote" in problem
    assert "0123" not in problem and "1.10" not in problem  # a value (a token?) is never echoed


@pytest.mark.parametrize("word", ["on", "off", "yes", "no", "On", "NO"])
def test_yaml_1_1_boolean_words_are_text(word: str, tmp_path: Path) -> None:
    """A model called `on` or `yes` is that slug; before, it became True and was refused."""
    text = VALID.replace("[a, b]", f"[a, {word}]").replace("name: acme", f"name: {word}")
    config = load_config(write(tmp_path, text), env=ENV)
    assert config.targets() == [(word, "a"), (word, word)]


def test_a_number_in_a_list_of_slugs_names_its_item(tmp_path: Path) -> None:
    text = VALID.replace("[a, b]", "[a, 2024]")
    assert problems(write(tmp_path, text)) == [
        "orgs[0].models[1]: is a number, not text: put the value in quotes to keep it as written"
    ]


def test_a_boolean_where_a_number_goes_is_still_refused(tmp_path: Path) -> None:
    text = VALID.replace("  token:", "  concurrency: true\n  token:")
    assert problems(write(tmp_path, text)) == [
        "registry.concurrency: expected a number, got a boolean"
    ]
    text = VALID.replace("  token:", "  concurrency: yes\n  token:")  # now the text "yes"
    assert problems(write(tmp_path, text)) == [
        "registry.concurrency: Input should be a valid integer, unable to parse string as an "
        "integer"
    ]


# --- what validate prints ------------------------------------------------------------------


def test_validate_escapes_control_characters_in_the_values_it_prints(tmp_path: Path) -> None:
    """A value quoted in a problem (a path) or in the OK line (the output) cannot forge a line
    or drive the terminal: escaped as log lines are."""
    bad = VALID.replace("  token:", '  ca_bundle: "/tmp/no\\e[2J\\nError: forged"\n  token:')
    result = validate(write(tmp_path, bad))
    assert result.exit_code == 2
    assert "registry.ca_bundle: file not found: /tmp/no\\x1b[2J\\nError: forged" in result.stderr
    [line] = [line for line in result.output.splitlines() if "forged" in line]
    assert line.startswith("  registry.ca_bundle: ")  # one problem line, not a forged Error:
    assert not RAW.search(result.output)
    good = VALID.replace("  uri: ./data", '  uri: "./data\\e]0;title\\a\\u202e"')
    result = validate(write(tmp_path, good))
    assert result.exit_code == 0, result.output
    assert "output ./data\\x1b]0;title\\x07\\u202e" in result.stdout
    assert not RAW.search(result.output)
    key = VALID + '  "\\e[31mkey": 1\n  "\\e[31mkey": 2\n'
    result = validate(write(tmp_path, key))
    assert "the key '\\x1b[31mkey' is written twice" in result.stderr
    assert not RAW.search(result.output)


# --- the two YAML parsers ------------------------------------------------------------------

TRICKY = """\
base: &base {concurrency: 4, version_detail: off}
registry:
  <<: *base
  token: ${T}
  1: one
  true: yes
orgs: [{name: acme, models: [on, "1.10", 0123]}]
"""


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML built without libyaml")
@pytest.mark.parametrize("name", ["full.yaml", "minimal.yaml", "tricky"])
def test_libyaml_reads_a_config_as_the_pure_python_parser_does(name: str) -> None:
    """A config is parsed by libyaml where PyYAML has it (ten times faster on thousands of
    models): the same document, the same duplicates, as `ConfigLoader` reads them."""
    sample = Path(__file__).parents[1] / "sample_configs" / name
    text = TRICKY if name == "tricky" else sample.read_text(encoding="utf-8")
    assert config_source._FastConfigLoader is not None
    fast = config_source._load(config_source._FastConfigLoader(text), name)
    assert fast == config_source._load(config_source.ConfigLoader(text), name)
    assert load_config_text(text) == fast


def load_config_text(text: str) -> tuple[Any, list[str]]:
    return config_source.load_yaml(text, "inline")
