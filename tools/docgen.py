"""The reference tables of docs/, generated from the code by `cog` (`make docs` writes them,
`make test` fails when one is stale).

Each function returns Markdown for one `[[[cog ...]]]` block, taken from the code alone (the
pydantic models, `schema.COLUMNS`, `error_docs.EXIT_CODE_DOCS` and `ERROR_TYPE_DOCS`, the click
commands, `connector.__all__`): a key, column, code, error type or command added in code shows up
in the docs on the next `make docs`, and one added without its description fails it, naming what
to describe.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Iterator
from pathlib import Path

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

HELP_WIDTH = 88  # columns of the generated `--help`, whatever the terminal that runs cog


def config_table() -> str:
    """Every configuration key: its path, default, accepted values and meaning."""
    from connector.config import Config

    lines = ["| key | default | value | meaning |", "|---|---|---|---|"]
    for path, field in _config_fields(Config, ""):
        lines.append(
            f"| `{path}` | {_default(path, field)} | {_value(path, field)} "
            f"| {_cell(field.description)} |"
        )
    return "\n".join(lines) + "\n"


def _config_fields(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, FieldInfo]]:
    """(key path, field) in declaration order; a section's keys follow it, a list of sections
    is written `orgs[].name`. A section is listed itself only where it has a description."""
    for name, field in model.model_fields.items():
        path = prefix + name
        section = _section_model(field.annotation)
        if section is None:
            if not field.description:
                raise ValueError(f"config key {path} has no description (connector/config/)")
            yield path, field
            continue
        if field.description:
            yield path, field
        is_list = typing.get_origin(field.annotation) is list
        yield from _config_fields(section, f"{path}[]." if is_list else f"{path}.")


def _section_model(annotation: object) -> type[BaseModel] | None:
    """The settings class a field holds (alone, optional or in a list), if any."""
    for candidate in (*typing.get_args(annotation), annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _default(path: str, field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        return "none" if value in ([], {}) else "(section)"
    if field.default is None or field.default is PydanticUndefined:
        return "unset"
    return f"`{_number(path, field.default)}`"


def _number(path: str, value: object) -> str:
    """30.0 as `30`; a byte count as `16 MiB`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if path.endswith("_bytes") and isinstance(value, int):
        for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if value >= size and value % size == 0:
                return f"{value // size} {unit}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _value(path: str, field: FieldInfo) -> str:
    """The accepted values: the type and every bound pydantic checks."""
    parts = [_type_name(field.annotation)]
    for rule in field.metadata:
        if isinstance(rule, annotated_types.Ge):
            parts.append(f">= {_number(path, rule.ge)}")
        elif isinstance(rule, annotated_types.Gt):
            parts.append(f"> {_number(path, rule.gt)}")
        elif isinstance(rule, annotated_types.Le):
            parts.append(f"<= {_number(path, rule.le)}")
        elif isinstance(rule, annotated_types.MinLen):
            parts.append(f"at least {rule.min_length}")
        elif getattr(rule, "pattern", None):
            parts.append(f"matching `{rule.pattern}`")
    return ", ".join(parts)


def _type_name(annotation: object) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        choices = [f"`{choice}`" for choice in typing.get_args(annotation)]
        return ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _type_name(args[0])
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is typing.Annotated:
        return _type_name(args[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "settings"
    names: dict[object, str] = {int: "integer", float: "number", str: "text"}
    names |= {bool: "true or false", SecretStr: "text (secret)", Path: "file path"}
    return names.get(annotation, str(annotation))


def schema_table() -> str:
    """Every column of the dataset, from `schema.COLUMNS`."""
    from connector.dataset.schema import markdown_table

    return markdown_table() + "\n"


def exit_codes_table() -> str:
    """Every exit code with its meaning, from `error_docs.EXIT_CODE_DOCS`."""
    from connector.error_docs import EXIT_CODE_DOCS
    from connector.errors import ExitCode

    lines = ["| code | name | meaning | published? |", "|---|---|---|---|"]
    for code in ExitCode:
        doc = EXIT_CODE_DOCS.get(code)
        if doc is None:
            raise ValueError(f"ExitCode.{code.name} has no entry in error_docs.EXIT_CODE_DOCS")
        name = f"`{code.name.lower()}`"
        lines.append(f"| {int(code)} | {name} | {_cell(doc.meaning)} | {doc.published} |")
    return "\n".join(lines) + "\n"


def exit_code_precedence() -> str:
    """The sentence that states `errors.EXIT_CODE_PRECEDENCE`, each code at its first place."""
    from connector.errors import EXIT_CODE_PRECEDENCE

    codes = dict.fromkeys(int(code) for _, code in EXIT_CODE_PRECEDENCE)
    return f"When several apply, the most actionable wins: {', then '.join(map(str, codes))}.\n"


def error_types_table() -> str:
    """Every `error_type` word, what happened and what the connector does about it."""
    from connector.error_docs import ERROR_TYPE_DOCS
    from connector.errors import ErrorType

    lines = ["| error_type | what happened | what the connector does |", "|---|---|---|"]
    for word in ErrorType:
        doc = ERROR_TYPE_DOCS.get(word)
        if doc is None:
            raise ValueError(f"ErrorType.{word.name} has no entry in error_docs.ERROR_TYPE_DOCS")
        lines.append(f"| `{word.value}` | {_cell(doc.happened)} | {_cell(doc.action)} |")
    return "\n".join(lines) + "\n"


def command_help(*command: str) -> str:
    """`connector [COMMAND] --help` as a fenced block, at a fixed width."""
    from click.testing import CliRunner

    from connector.cli import main

    args = [*command, "--help"]
    result = CliRunner().invoke(main, args, prog_name="connector", terminal_width=HELP_WIDTH)
    if result.exit_code != 0:
        raise RuntimeError(f"connector {' '.join(args)} exited {result.exit_code}: {result.output}")
    return f"```text\n$ connector {' '.join(args)}\n{result.output.rstrip()}\n```\n"


def every_command_help() -> str:
    """One section per command of `cli.COMMANDS`, so a new command is documented by itself."""
    from connector.cli import COMMANDS

    return "\n".join(f"### `connector {name}`\n\n{command_help(name)}" for name in sorted(COMMANDS))


def library_api() -> str:
    """Every public name of `connector.__all__`: a function's signature, and the first line of
    each docstring."""
    import connector

    blocks = []
    for name in connector.__all__:
        value = getattr(connector, name)
        if inspect.isfunction(value):
            blocks.append(f"```python\nconnector.{name}{_signature(value)}\n```\n")
            blocks.append(_summary(value) + "\n")
        elif inspect.isclass(value):
            blocks.append(f"- `connector.{name}` (class): {_summary(value)}\n")
        elif name != "__version__":
            blocks.append(f"- `connector.{name}` (`{type(value).__name__}`)\n")
    return "\n".join(blocks)


def _signature(function: typing.Callable[..., object]) -> str:
    """The signature as written in the source (annotations unevaluated), one parameter a line."""
    signature = inspect.signature(function)
    params = []
    star_done = False
    for param in signature.parameters.values():
        if param.kind is param.KEYWORD_ONLY and not star_done:
            params.append("*")
            star_done = True
        text = param.name
        if param.annotation is not param.empty:
            text += f": {param.annotation}"
        if param.default is not param.empty:
            text += f" = {param.default!r}"
        params.append(text)
    returns = "" if signature.return_annotation is signature.empty else signature.return_annotation
    arrow = f" -> {returns}" if returns else ""
    return "(\n" + "".join(f"    {p},\n" for p in params) + f"){arrow}"


def _summary(value: object) -> str:
    doc = inspect.getdoc(value) or ""
    return _cell(" ".join(doc.split("\n\n")[0].split()))


def _cell(text: str | None) -> str:
    """Text for one Markdown table cell: one line, `|` escaped."""
    return " ".join((text or "").split()).replace("|", "\\|")
