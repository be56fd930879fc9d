"""Read the YAML configuration, interpolate `${ENV_VAR}`, validate into a `Config`.

Every problem is reported at once, each with its key path (`orgs[1].models[0]: ...`), so a
broken file is fixed in one round trip rather than one error at a time."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from connector.config.document import Config
from connector.config.output import OutputSettings
from connector.config.source import key_path, load_yaml, quote_problem, read_config_text
from connector.errors import ConfigError

_ENV_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(
    value: Any,
    env: Mapping[str, str],
    path: tuple[int | str, ...],
    problems: list[str],
    references: dict[str, list[str]] | None = None,
    *,
    placeholders: bool = False,
    need_tokens: bool = True,
) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string; `$$` is a literal `$`.

    `references` collects, per variable referenced without a default, the keys that use it
    (what a run needs). An unset one is a problem; with `placeholders` it is left as written
    instead (`${VAR}`), so the rest of the file can still be checked; without `need_tokens`,
    so is one in a token (`registry.token`, `orgs[N].token`)."""
    options = {"placeholders": placeholders, "need_tokens": need_tokens}
    if isinstance(value, dict):
        return {
            k: interpolate(v, env, (*path, str(k)), problems, references, **options)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            interpolate(v, env, (*path, i), problems, references, **options)
            for i, v in enumerate(value)
        ]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if references is not None and default is None:
            keys = references.setdefault(name, [])
            keys += [] if key_path(path) in keys else [key_path(path)]
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        if placeholders or (not need_tokens and _is_token(path)):
            return match.group(0)
        problems.append(f"{key_path(path)}: environment variable {name} is not set")
        return ""

    return _ENV_REFERENCE.sub(substitute, value)


def _is_token(path: tuple[int | str, ...]) -> bool:
    return path == ("registry", "token") or (
        len(path) == 3 and path[0] == "orgs" and path[2] == "token"
    )


def _literal_token_warnings(raw: Any) -> list[str]:
    warnings: list[str] = []
    if not isinstance(raw, dict):
        return warnings
    places: list[tuple[str, Any]] = []
    if isinstance(raw.get("registry"), dict):
        places.append(("registry.token", raw["registry"].get("token")))
    for index, org in enumerate(raw.get("orgs") or []):
        if isinstance(org, dict) and "token" in org:
            places.append((f"orgs[{index}].token", org.get("token")))
    for where, token in places:
        if isinstance(token, str) and token and "${" not in token:
            warnings.append(
                f"{where} is a literal token in the config file; "
                "put it in an environment variable and write ${VARIABLE_NAME}"
            )
    return warnings


# What pydantic says when a setting that wants text or a word (str, a token, a path, one of a
# Literal's words) got something else.
_WORD_ERRORS = frozenset({"string_type", "literal_error", "path_type"})


def _pydantic_problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors(include_url=False):  # the input only for its type: never shown
        message = item["msg"].removeprefix("Value error, ")
        scalar = item.get("input")
        if item["type"] in _WORD_ERRORS and isinstance(scalar, bool | int | float):
            message = quote_problem(scalar, (item.get("ctx") or {}).get("expected"))
        elif item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see sample_configs/full.yaml)"
        elif item["type"] == "string_pattern_mismatch":
            message = "not a valid slug (letters, digits, '.', '_', '-'; starts alphanumeric)"
        problems.append(f"{key_path(tuple(item['loc']))}: {message}")
    return problems


def parse_config(
    raw: Any,
    env: Mapping[str, str] | None = None,
    source: str | None = None,
    *,
    placeholders: bool = False,
    need_tokens: bool = True,
    found: Sequence[str] = (),
) -> Config:
    """Validate an already-parsed YAML document; raises ConfigError listing every problem
    (`found`: those already seen in the file, such as a key written twice).

    With `placeholders`, an unset `${VAR}` is checked as the text `${VAR}` (which passes as a
    token) instead of being a problem: `validate` checks a file where the secrets are not set.
    A value that cannot pass with it (a URL from a variable, say) is a problem saying so.
    Without `need_tokens`, only the tokens may be unset: for a command that never calls the
    registry (`accept`, `discard`), which must not fail because the extractor's secret is not
    in its environment."""
    if not isinstance(raw, dict):
        raise ConfigError([*found, "(top level): expected a mapping of settings"], source)
    environ = os.environ if env is None else env
    problems: list[str] = list(found)
    references: dict[str, list[str]] = {}
    resolved = interpolate(
        raw, environ, (), problems, references, placeholders=placeholders, need_tokens=need_tokens
    )
    unset = {
        key: name for name, keys in references.items() if not environ.get(name) for key in keys
    }
    try:
        config = Config.model_validate(resolved)
    except ValidationError as exc:
        # An unset variable already explains any complaint about the value at the same key.
        for problem in _pydantic_problems(exc):
            key = problem.split(": ", 1)[0]
            if key not in unset:
                problems.append(problem)
            elif placeholders:
                problems.append(
                    f"{key}: cannot be checked while {unset[key]} is not set (only a token "
                    "can be checked without its value); set it and validate again"
                )
        config = None
    if problems or config is None:
        raise ConfigError(list(dict.fromkeys(problems)), source)
    config._warnings = (*_literal_token_warnings(raw), *config.auth_warnings())
    config._source = source
    return config


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's own message quotes the offending line, which may hold a literal token."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        what = "; ".join(part for part in (error.context, error.problem) if part)
        return f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
    return f"not valid YAML: {error}"


def _read_yaml(source: str) -> tuple[Any, list[str]]:
    """The document and the problems found in the file itself (keys written twice)."""
    text = read_config_text(source)
    try:
        return load_yaml(text, source)
    except RecursionError as exc:  # nested thousands deep
        raise ConfigError(["is nested too deeply to be a config"], source) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc)], source) from exc


def load_config(
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    *,
    placeholders: bool = False,
    need_tokens: bool = True,
) -> Config:
    """Read and validate a YAML config file. `placeholders`: an unset `${VAR}` is checked as
    its own text (as `connector validate` does); `need_tokens=False`: only the tokens'
    variables may be unset (code that never calls the registry, as `accept` and `discard`)."""
    source = os.fspath(path)
    raw, found = _read_yaml(source)
    return parse_config(
        raw, env, source, placeholders=placeholders, need_tokens=need_tokens, found=found
    )


def config_variables(path: str | os.PathLike[str]) -> dict[str, tuple[str, ...]]:
    """Every environment variable the file uses without a default, with the keys that use it:
    what a run needs set (`connector validate` lists them)."""
    raw, _ = _read_yaml(os.fspath(path))
    references: dict[str, list[str]] = {}
    interpolate(raw, {}, (), [], references, placeholders=True)
    return {name: tuple(keys) for name, keys in references.items()}


def validate_output(
    section: Any, env: Mapping[str, str] | None = None, source: str | None = None
) -> OutputSettings:
    """Validate an `output` section alone (also used for --output overrides)."""
    problems: list[str] = []
    resolved = interpolate(section, os.environ if env is None else env, ("output",), problems)
    try:
        settings = OutputSettings.model_validate(resolved)
    except ValidationError as exc:
        problems += [f"output.{p}" for p in _pydantic_problems(exc)]
        settings = None
    if problems or settings is None:
        raise ConfigError(problems, source)
    return settings


def load_output_settings(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> OutputSettings:
    """Only the `output` section of a config file: reading the dataset needs no registry
    token, so a report must not fail because the extractor's environment is not set."""
    source = os.fspath(path)
    raw, found = _read_yaml(source)
    section = raw.get("output") if isinstance(raw, dict) else None
    if section is None:
        raise ConfigError([*found, "output: missing (the report needs output.uri)"], source)
    try:
        settings = validate_output(section, env, source)
    except ConfigError as exc:
        raise ConfigError([*found, *exc.problems], source) from exc
    if found:
        raise ConfigError(found, source)
    return settings
