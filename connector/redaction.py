"""Scrub secrets from any text that leaves the process: logs, summaries, manifests, kept bodies;
and make server text safe for each medium it is written to.

Text from a server is data. One function escapes it per medium, and every writer uses it:
`printable` for a terminal or a log line (the table, the summaries, `Error:` lines), `csv_cell`
for a spreadsheet, `json_printable` for JSON shown on a terminal; HTML escaping is the standard
library's `html.escape`, applied to `printable` text. Shared by every layer (HTTP errors,
rejected payloads, logs), so it depends on nothing.

A server that echoes the request back rarely echoes it verbatim: JSON escapes `/` as `\\/` or
any character as `\\u0074`, Python's repr writes `\\x74`, URLs percent-encode (`%74`, or `%2574`
twice), HTML writes `&#116;`, and a body may be encoded again inside another. So a secret is
matched character by character, each character in any of those forms (mixed freely), plus its
base64 encodings, also inside a longer base64 string (`Basic` credentials, an encoded header or
body), at any of the three byte alignments; the pattern is compiled once per secret.
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
_UNPRINTABLE_CHARS = "\x0b-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNPRINTABLE = re.compile(f"[\x00-\x0a{_UNPRINTABLE_CHARS}]")
_UNPRINTABLE_BUT_NEWLINE = re.compile(f"[\x00-\x09{_UNPRINTABLE_CHARS}]")
# What a spreadsheet takes for the start of a formula (OWASP, "CSV Injection"): =, +, -, @,
# and a tab or carriage return, which some strip before looking at the next character.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


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


def _base64_fragments(encoded: bytes) -> list[str]:
    """The base64 characters that only `encoded` decides, at each of its three alignments
    inside a longer encoded string (`Bearer <token>`, a whole header or body), in the standard
    and the URL-safe alphabet. At byte offset k (mod 3) the encoded bytes cover the bits
    8k..8(k+n); character i covers bits 6i..6i+6, so characters ceil(8k/6)..floor(8(k+n)/6)-1
    hold only the secret's bits, whatever surrounds it; the ones at the edges share bits with
    the neighbours and differ from one string to the next."""
    fragments: list[str] = []
    size = len(encoded)
    for offset in range(3):
        padded = bytes(offset) + encoded + bytes(2)
        first, end = -(-8 * offset // 6), 8 * (offset + size) // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            fragment = encode(padded).decode()[first:end]
            if len(fragment) >= 8 and fragment not in fragments:
                fragments.append(fragment)
    return fragments


def _base64_forms(fragment: str) -> str:
    """A base64 fragment as it may be written in JSON (`\\/`) or a URL (`%2F`, `%2B`)."""
    forms = {"/": r"(?:\\*/|%2[fF])", "+": r"(?:\+|%2[bB])"}
    return "".join(forms.get(char) or re.escape(char) for char in fragment)


@functools.lru_cache(maxsize=64)
def _pattern(secret: str) -> re.Pattern[str]:
    encoded = secret.encode("utf-8")
    alternatives = ["".join(_char_forms(char) for char in secret)]
    # The secret encoded alone, its last character and padding included, before the fragments
    # that any longer encoding contains, so that nothing of it is left over.
    whole = {encode(encoded).decode() for encode in (base64.b64encode, base64.urlsafe_b64encode)}
    alternatives += [_base64_forms(form.rstrip("=")) + "=*" for form in sorted(whole)]
    alternatives += [_base64_forms(form) for form in _base64_fragments(encoded)]
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

    if text.isprintable():  # every character the patterns match is unprintable to Python
        return text
    pattern = _UNPRINTABLE_BUT_NEWLINE if keep_newlines else _UNPRINTABLE
    return pattern.sub(lambda match: ascii(match.group())[1:-1], text)


def csv_cell(text: str) -> str:
    """A text cell for CSV that a spreadsheet shows as text and never runs: control characters
    escaped as `printable` does (no line break or terminal sequence survives), then, as OWASP
    recommends, a single quote put in front of a cell that starts like a formula (`=`, `+`, `-`,
    `@`, tab, CR). The quote is visible to a program that reads the CSV; for numbers, which
    cannot carry a formula, the writer passes the value itself and never calls this."""
    cell = printable(text)
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def json_printable(document: str) -> str:
    """JSON text (from `json.dumps(..., ensure_ascii=False)`) with every character `printable`
    would escape written as a JSON `\\uXXXX` escape instead: the same string for a JSON reader,
    but no C1 control, bidi override or line separator reaches the terminal it is shown on.
    Such characters can only be inside JSON strings (which `json.dumps` writes with every C0
    control escaped already), where the escape is always valid; a raw newline is the indent's."""

    return _UNPRINTABLE_BUT_NEWLINE.sub(lambda match: f"\\u{ord(match.group()):04x}", document)
