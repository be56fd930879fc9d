"""A hostile server: the token echoed back in every encoding, ambiguous JSON, oversized bodies."""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from helpers import VALID_BODY, ScriptedServer, config_document, json_reply, write_config

from connector.cli import main
from connector.errors import ExitCode, PayloadError
from connector.http.responses import parse_payload
from connector.redaction import REDACTED, redact
from connector.simulator.faults import Reply

SLASHED_TOKEN = "tk/3f9a+c77=secret/do-not-leak"


def encodings(token: str) -> dict[str, str]:
    """Every form of the token a server could plausibly echo back."""
    json_u = "".join(f"\\u{ord(c):04x}" for c in token)
    return {
        "literal": token,
        "json-slash": token.replace("/", "\\/"),
        "json-u": json_u,
        "json-u-upper": json_u.upper().replace("\\U", "\\u"),
        "json-in-json": json.dumps(json.dumps(token.replace("/", "\\/"))[1:-1])[1:-1],
        "repr-x": "".join(f"\\x{ord(c):02x}" for c in token),
        "url": quote(token, safe=""),
        "url-twice": quote(quote(token, safe=""), safe=""),
        "url-lower": quote(token, safe="").lower(),
        "html-dec": "".join(f"&#{ord(c)};" for c in token),
        "html-hex": "".join(f"&#x{ord(c):x};" for c in token),
        "mixed": token[:3] + "\\u0033" + token[4:8] + "%63" + token[9:],
        "base64": base64.b64encode(token.encode()).decode(),
        "base64-bearer-free": base64.urlsafe_b64encode(token.encode()).decode().rstrip("="),
    }


def embedded_base64(token: str) -> dict[str, str]:
    """The token inside a longer base64 string, at each of the three byte alignments (and in
    both alphabets): `Basic` credentials, an encoded header or body echoed back."""
    forms = {}
    for prefix in ("", "B", "Be", "Bearer ", "Authorization: Bearer "):
        for suffix in ("", "!", "; path=/x"):
            raw = f"{prefix}{token}{suffix}".encode()
            at = f"at {len(prefix) % 3} ({prefix!r}, {suffix!r})"
            forms[f"base64 {at}"] = base64.b64encode(raw).decode()
            forms[f"urlsafe {at}"] = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return forms


def recoverable(text: str, token: str, piece: int = 8) -> list[str]:
    """The base64 runs of `text` from which `piece` consecutive bytes of the token decode,
    trying every start character (so every alignment) and both alphabets."""
    wanted = token.encode()
    pieces = {wanted[i : i + piece] for i in range(len(wanted) - piece + 1)}
    found = []
    for run in re.findall(r"[A-Za-z0-9+/_-]{8,}", text.replace("\\/", "/")):
        for start in range(4):
            chunk = run[start:]
            chunk = chunk[: len(chunk) - len(chunk) % 4]
            for alphabet in (b"+/", b"-_"):
                try:
                    decoded = base64.b64decode(chunk, altchars=alphabet)
                except binascii.Error:
                    continue
                if any(p in decoded for p in pieces):
                    found.append(run)
    return found


@pytest.mark.parametrize(("name", "form"), embedded_base64(SLASHED_TOKEN).items())
def test_the_token_inside_a_longer_base64_string_is_redacted(name: str, form: str) -> None:
    assert recoverable(form, SLASHED_TOKEN), name  # the check itself finds the token
    text = redact(f"before {form} after", [SLASHED_TOKEN])
    assert REDACTED in text, name
    assert not recoverable(text, SLASHED_TOKEN), (name, text)


@pytest.mark.parametrize("length", [9, 10, 11])  # every remainder of the length mod 3
def test_a_token_of_any_length_is_redacted_at_every_alignment(length: int) -> None:
    token = SLASHED_TOKEN[:length]
    for name, form in embedded_base64(token).items():
        text = redact(f"before {form} after", [token])
        assert not recoverable(text, token, piece=6), (name, text)


@pytest.mark.parametrize(("name", "form"), encodings(SLASHED_TOKEN).items())
def test_every_encoding_of_the_token_is_redacted(name: str, form: str) -> None:
    text = f"before {form} after"
    assert redact(text, [SLASHED_TOKEN]) == f"before {REDACTED} after", name


def test_redaction_leaves_other_text_alone() -> None:
    text = "tk/3f9a is a prefix, %2F and \\u0074 alone are not secrets"
    assert redact(text, [SLASHED_TOKEN]) == text


@pytest.mark.parametrize("scheme", ["bearer", "api-key"])
def test_no_encoding_of_the_token_reaches_any_output(scheme: str, tmp_path: Path) -> None:
    header = f"X-API-Key: {SLASHED_TOKEN}" if scheme == "api-key" else ""
    echoed = " ".join(
        [header, *encodings(SLASHED_TOKEN).values(), *embedded_base64(SLASHED_TOKEN).values()]
    )
    detail = json.dumps({"code": 404, "type": "not_found", "detail": f"echo: {echoed}"})
    rejected = f"<html>echo: {echoed}</html>".encode()
    script = [
        Reply(404, detail.encode()),
        Reply(200, rejected, content_type="text/html"),
        json_reply(200, VALID_BODY),
    ]
    out = tmp_path / "out"
    with ScriptedServer(script) as server:
        document = config_document(
            server,  # type: ignore[arg-type]
            out,
            orgs=[{"name": "acme", "models": ["a", "b", "m"]}],
            registry_settings={"concurrency": 1, "auth_scheme": scheme},
            output_settings={"min_success_ratio": 0.3},
        )
        config = write_config(tmp_path / "c.yaml", document)
        result = CliRunner().invoke(
            main,
            ["extract", "--config", str(config), "--log-level", "DEBUG"],
            env={"MODEL_REGISTRY_TOKEN": SLASHED_TOKEN},
        )
    assert result.exit_code == ExitCode.PARTIAL, result.output
    sent = "X-API-Key" if scheme == "api-key" else "Authorization"
    assert all(
        sent in request and len(request.keys() & {"X-API-Key", "Authorization"}) == 1
        for request in server.requests
    )
    written = [p.read_text() for p in out.rglob("*.json")]
    assert any("_rejected" in str(p) for p in out.rglob("*.json"))
    everything = result.stdout + result.stderr + "".join(written)
    assert REDACTED in everything
    for name, form in encodings(SLASHED_TOKEN).items():
        assert form not in everything, name
        assert json.dumps(form)[1:-1] not in everything, name  # as stored in JSON files
    assert not recoverable(everything, SLASHED_TOKEN)  # nor inside a longer base64 string


def test_duplicate_keys_are_an_invalid_payload() -> None:
    body = b'{"name": "acme/m", "versions": ["1.0.0"], "versions": []}'
    with pytest.raises(PayloadError, match="duplicate key 'versions'"):
        parse_payload(body, {"Content-Type": "application/json"}, org="o", model="m", status=200)


def test_a_number_out_of_range_is_an_invalid_payload() -> None:
    body = b'{"name": "acme/m", "versions": [], "origin": {"score": 1e400}}'
    with pytest.raises(PayloadError, match="out of range"):
        parse_payload(body, {"Content-Type": "application/json"}, org="o", model="m", status=200)


def test_a_duplicate_key_body_never_replaces_a_good_partition(
    tmp_path: Path, token_env: str
) -> None:
    out = tmp_path / "out"
    good, ambiguous = (
        json_reply(200, VALID_BODY),
        Reply(
            200,
            b'{"name": "acme/m", "latest": null, "versions": ["1.0.0"], "versions": []}',
        ),
    )
    for reply, code in [(good, ExitCode.OK), (ambiguous, ExitCode.NOT_PUBLISHED)]:
        with ScriptedServer([reply]) as server:
            document = config_document(
                server,  # type: ignore[arg-type]
                out,
                orgs=[{"name": "acme", "models": ["m"]}],
            )
            config = write_config(tmp_path / "c.yaml", document)
            result = CliRunner().invoke(main, ["extract", "--config", str(config)])
        assert result.exit_code == code, result.output
    assert "duplicate key 'versions'" in result.stdout
    [manifest] = out.glob("model_versions/*/_manifest.json")
    assert json.loads(manifest.read_text())["rows"] == 1  # the good snapshot stayed


def test_oversized_responses_are_counted_in_requests(tmp_path: Path, token_env: str) -> None:
    body = json.dumps({**VALID_BODY, "pad": "x" * 4096}).encode()
    with ScriptedServer([Reply(200, body)]) as server:
        document = config_document(
            server,  # type: ignore[arg-type]
            tmp_path / "out",
            orgs=[{"name": "acme", "models": ["m"]}],
            registry_settings={"max_response_bytes": 1024},
        )
        config = write_config(tmp_path / "c.yaml", document)
        result = CliRunner().invoke(
            main, ["extract", "--config", str(config), "--summary-format", "json"]
        )
    summary = json.loads(result.stdout)
    assert summary["failures"][0]["error_type"] == "payload_too_large"
    assert summary["requests"] == {"200": 1}
