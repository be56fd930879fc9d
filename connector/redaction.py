"""Scrub secrets from any text that leaves the process: logs, summaries, manifests, kept bodies;
and make server text safe to print.

Shared by every layer (HTTP errors, rejected payloads, logs), so it depends on nothing.

A server that echoes the request back rarely echoes it verbatim: JSON escapes `/` as `\\/` or
any character as `\\u0074`, Python's repr writes `\\x74`, URLs percent-encode (`%74`, or `%2574`
twice), HTML writes `&#116;`, and a body may be encoded again inside another. So a secret is
matched character by character, each character in any of those forms (mixed freely), plus its
base64 encodings; the pattern is compiled once per secret.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable

REDACTED = "[REDACTED]"

# Control characters (C0, DEL, C1), lone surrogates, line/paragraph separators and bidi
# controls: in a log line or a terminal they forge lines, colour or move the cursor, or reorder
# what is shown.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _char_forms(char: str) -> str:
    """A regex matching one character in every escaped form a server may send it back in."""
    code = ord(char)
    forms = [
        re.escape(char),
        rf"\\+u(?i:{code:04x})",  # JSON \u0074 (any case, backslashes doubled by re-encoding)
        rf"\\+x(?i:{code:02x})" if code < 0x100 else None,  # Python repr / C escapes
        rf"%(?:25)*(?i:{code:02x})" if code < 0x80 else None,  # URL encoding, possibly twice
        rf"&#0*{code};",  # HTML decimal entity
        rf"&#[xX]0*(?i:{code:x});",  # HTML hex entity
        r"\\+/" if char == "/" else None,  # JSON's optional \/
        r"\+" if char == " " else None,  # form encoding
    ]
    return "(?:" + "|".join(form for form in forms if form) + ")"


@functools.lru_cache(maxsize=64)
def _pattern(secret: str) -> re.Pattern[str]:
    encoded = secret.encode("utf-8")
    literal = [
        base64.b64encode(encoded).decode().rstrip("="),
        base64.urlsafe_b64encode(encoded).decode().rstrip("="),
    ]
    alternatives = ["".join(_char_forms(char) for char in secret)]
    alternatives += [re.escape(form) for form in literal if len(form) >= 8]
    return re.compile("|".join(alternatives))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret in `text`, in any encoding; used on anything a server sends back."""
    for secret in secrets:
        if secret:
            text = _pattern(secret).sub(REDACTED, text)
    return text


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every control character, lone surrogate and bidi control written as its
    Python escape (`\\n`, `\\x1b`, `\\udcff`), so server text cannot forge a log line, drive
    the terminal or break an encoder. `keep_newlines` leaves `\\n` alone (our own messages)."""

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        return char if keep_newlines and char == "\n" else ascii(char)[1:-1]

    return _UNPRINTABLE.sub(escape, text)
