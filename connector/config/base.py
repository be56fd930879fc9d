"""What every setting shares: slugs and patterns, the token check, strict immutable models that
refuse a boolean where a number is wanted."""

from __future__ import annotations

import re
from collections import Counter
from typing import Annotated, Any, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)

ORG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"

OrgSlug = Annotated[str, Field(pattern=ORG_PATTERN, description="org slug, as in the API path")]
ModelSlug = Annotated[str, Field(pattern=MODEL_PATTERN, description="model slug, without org")]

SLUG_PROBLEM = "not a valid slug (letters, digits, '.', '_', '-'; starts alphanumeric)"
_GLOB_CHARACTERS = frozenset("*?[")
_GLOB_TEXT = re.compile(r"^[A-Za-z0-9._\-*?\[\]!]{1,200}$")
_BRACKET_SET = re.compile(r"\[!?[A-Za-z0-9._-]+\]")


def is_pattern(entry: str) -> bool:
    """Whether a `models`/`exclude` entry is a glob pattern (`*`, `?`, `[...]`), not a slug."""
    return not _GLOB_CHARACTERS.isdisjoint(entry)


def _model_entry(value: str) -> str:
    """A model slug, or a glob pattern over slugs (fnmatch syntax, case-sensitive)."""
    if not is_pattern(value):
        if not re.fullmatch(MODEL_PATTERN, value):
            raise ValueError(SLUG_PROBLEM)
        return value
    if not _GLOB_TEXT.fullmatch(value):
        raise ValueError(
            "not a valid pattern: slug characters and the wildcards *, ? and [...] only "
            "(no '/': the org is given by orgs[].name)"
        )
    outside = _BRACKET_SET.sub("", value)
    if "[" in outside or "]" in outside or "!" in outside:
        raise ValueError(
            "not a valid pattern: every [ must close with ] around at least one slug "
            "character, and ! only negates a [...] set"
        )
    return value


ModelEntry = Annotated[str, AfterValidator(_model_entry)]


def check_token(value: SecretStr, empty_message: str) -> SecretStr:
    """A token goes into an HTTP header: whitespace or control characters would break it (a CRLF
    env file leaves a trailing \\r), and the resulting error would quote the token."""
    token = value.get_secret_value()
    if not token.strip():
        raise ValueError(empty_message)
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in token):
        raise ValueError(
            "contains whitespace or control characters (a CRLF line ending in an env file?)"
        )
    if not token.isascii():  # an HTTP header is Latin-1 at best; tokens are ASCII
        raise ValueError("contains non-ASCII characters (a typographic quote pasted in?)")
    return value


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """Lax mode lets `${VAR}` text become a number, but it would also read `true` as 1."""
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if annotation in (int, float) or float in get_args(annotation):
                raise ValueError("expected a number, got a boolean")
        return value


def listed_twice(values: list[str]) -> list[str]:
    """The values listed more than once, sorted; counted in one pass (a `list.count` per item
    took 3 s for an org of 20,000 models, at every start)."""
    return sorted(value for value, seen in Counter(values).items() if seen > 1)
