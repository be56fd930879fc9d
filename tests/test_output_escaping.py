"""Server strings never become commands: names a registry sent (org, model, version, framework,
failure notes from a manifest) go into every report format escaped for its medium. The table
and the page show control characters as the log lines do (`connector.redaction.printable`),
CSV never starts a text cell like a formula (OWASP), JSON is exact but terminal-safe.

The datasets are real Parquet partitions read back by the real `connector report`.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import logging
import pkgutil
import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result
from dataset_builders import V, write_snapshot
from helpers import VALID_BODY, ScriptedServer, json_reply, write_config

import connector
from connector import extract, load_config
from connector.cli import main
from connector.loggers import EscapingFilter, escaped_traceback
from connector.logs import configure_logging
from connector.redaction import csv_cell, json_printable, printable

# What a terminal acts on: C0 (but the newlines that end our own lines), DEL, C1, the line and
# paragraph separators, bidi controls.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
CONTROLS = {
    "ESC": "\x1b[2J\x1b[31m",
    "BEL": "\x07",
    "CR": "\r",
    "LF": "\n",
    "NUL": "\x00",
    "TAB": "\t",
    "DEL": "\x7f",
    "C1 CSI": "\x9b31m",
    "bidi override": "\u202e",
    "bidi isolate": "\u2066",
    "line separator": "\u2028",
}
FORMULAS = ['=HYPERLINK("http://x")', "+1+cmd|'/c calc'!A0", "-2+3", "@SUM(A1:A9)"]


def _dataset(root: Path, hostile: list[str]) -> Path:
    """Two days; each hostile string is a version, and the framework, of its own model (its
    gain is its index + 1, so every row is shown); one is also a failed model in a manifest."""

    def rows(day: int) -> list[V]:
        return [
            V("acme", f"m{i}", text, 10 + day * (i + 1), framework=text)
            for i, text in enumerate(hostile)
        ]

    failed = [{"org": "acme", "model": hostile[0], "status": 500, "error_type": "server"}]
    write_snapshot(root, "2024-01-01", rows(0), failures=failed)
    write_snapshot(root, "2024-01-02", rows(1))
    return root


def report(root: Path, *args: str) -> Result:
    result = CliRunner().invoke(main, ["report", "--data", str(root), "--top", "0", *args])
    assert result.exit_code == 0, result.output
    return result


def assert_no_raw_controls(text: str) -> None:
    found = sorted({hex(ord(char)) for char in RAW.findall(text)})
    assert found == [], f"raw control characters reach the output: {found}"


@pytest.mark.parametrize("name", sorted(CONTROLS))
@pytest.mark.parametrize("fmt", ["table", "csv", "json", "html"])
def test_no_format_passes_a_control_character_through(fmt: str, name: str, tmp_path: Path) -> None:
    text = f"1.0{CONTROLS[name]}evil"
    root = _dataset(tmp_path / "data", [text, "2.0"])
    result = report(root, "--by", "version", "--format", fmt)
    assert_no_raw_controls(result.stdout)
    assert_no_raw_controls(result.stderr)  # the `note:` lines of csv and json
    if fmt == "table":  # escaped exactly as a log line escapes it
        assert f"  {printable(text)}  " in result.stdout
    elif fmt == "json":  # exact for a JSON reader
        versions = {item["version"] for item in json.loads(result.stdout)}
        assert versions == {text, "2.0"}
    elif fmt == "html":
        assert printable(text) in result.stdout


def test_the_table_cuts_an_escaped_name_at_the_column_width(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data", ["\x1b" * 30, "2.0"])
    table = report(root, "--by", "version").stdout
    assert "\\x1b" * 9 + "\\..." in table  # 40 characters of the escapes, then "..."
    assert_no_raw_controls(table)


def test_notes_naming_a_failed_model_are_escaped_everywhere(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data", ["x\x1b]0;pwned\x07", "2.0"])
    for fmt in ("table", "csv", "json", "html"):
        result = report(root, "--format", fmt)
        notes = result.stdout if fmt in ("table", "html") else result.stderr
        assert "acme/x\\x1b]0;pwned\\x07" in notes, fmt
        assert_no_raw_controls(result.stdout + result.stderr)


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.mark.parametrize("formula", [*FORMULAS, "\t=1+1", "\r=1+1"])
def test_csv_never_starts_a_text_cell_like_a_formula(formula: str, tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data", [formula, "2.0"])
    text = report(root, "--by", "version", "--format", "csv").stdout
    rows = _csv_rows(text)
    assert len(rows) == 2 and len(text.splitlines()) == 3  # a header and one line per row
    [row] = [r for r in rows if r["model"] == "m0"]
    for column in ("version", "framework"):
        cell = row[column]
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (column, cell)
        assert cell == csv_cell(formula)
        assert cell.removeprefix("'") == printable(formula)  # the prefix, and nothing else


def test_csv_numbers_are_left_alone_even_when_negative(tmp_path: Path) -> None:
    """A number cannot carry a formula, and a spreadsheet must still read -2 as a number: only
    text cells get the prefix, so a negative count stays numeric."""
    root = tmp_path / "data"
    write_snapshot(root, "2024-01-01", [V("acme", "m", "-1", -5, framework="-fw")])
    write_snapshot(root, "2024-01-02", [V("acme", "m", "-1", -2, framework="-fw")])
    text = report(root, "--by", "version", "--format", "csv").stdout
    [row] = _csv_rows(text)
    assert (row["download_count"], row["baseline_count"]) == ("-2", "-5")
    assert (row["version"], row["framework"]) == ("'-1", "'-fw")  # text that looks negative
    parsed = pd.read_csv(io.StringIO(text))
    assert parsed["download_count"].tolist() == [-2]


def test_an_embedded_carriage_return_cannot_start_a_new_row(tmp_path: Path) -> None:
    """Python's csv writes a lone CR unquoted; a spreadsheet splits the row there and the rest,
    `=cmd...`, would start a cell of its own."""
    root = _dataset(tmp_path / "data", ["1.0\r=cmd|'/c calc'!A0", "2.0"])
    text = report(root, "--by", "version", "--format", "csv").stdout
    assert "\r" not in text
    assert not any(line.startswith(("=", "+", "-", "@")) for line in text.splitlines())
    assert not any(cell.startswith("=") for row in _csv_rows(text) for cell in row.values())


def test_json_printable_keeps_the_document_and_escapes_only_unprintables() -> None:
    document = [{"v": "a\x9b\u202e\x1b\n\u2028z", "n": -1, "ok": "plain ü 東京"}]
    text = json_printable(json.dumps(document, indent=2, ensure_ascii=False))
    assert json.loads(text) == document
    assert "東京" in text and "ü" in text  # readable text stays readable
    assert_no_raw_controls(text)


def test_printable_escapes_every_dangerous_character_and_only_those() -> None:
    """`printable` returns text Python calls printable untouched (its fast path): that is only
    right while every character it must escape is unprintable to Python, checked here for the
    whole of Unicode."""
    ranges = [(0x00, 0x1F), (0x7F, 0x9F), (0xD800, 0xDFFF), (0x2028, 0x202E), (0x2066, 0x2069)]
    dangerous = [chr(c) for first, last in ranges for c in range(first, last + 1)]
    for char in dangerous:
        assert not char.isprintable()
        assert printable(f"a{char}b") == f"a{ascii(char)[1:-1]}b"
        kept = printable(f"a{char}b", keep_newlines=True)
        assert kept == ("a\nb" if char == "\n" else f"a{ascii(char)[1:-1]}b")
    assert printable("plain ü 東京 \u00a0") == "plain ü 東京 \u00a0"


def test_server_names_reach_no_terminal_raw_from_any_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry that names things with terminal sequences: discovery lists a hostile name,
    the model's version and framework are hostile, a second model fails with a hostile detail.
    `targets`, `extract` (summary and logs) and `report` all write them escaped."""
    hostile = "\x1b]0;owned\x07\x1b[2J\u202e"
    listing = json_reply(200, {"models": [{"name": "acme/m"}, {"name": f"acme/x{hostile}"}]})
    body = {
        **VALID_BODY,
        "latest": {**VALID_BODY["latest"], "version": f"2{hostile}", "framework": hostile},
        "versions": [f"2{hostile}", "1.0.0"],
    }
    failed = json_reply(404, {"code": 404, "type": "not_found", "detail": f"gone {hostile}"})
    monkeypatch.setenv("MODEL_REGISTRY_TOKEN", "t0k3n-for-the-scripted-server")
    outputs = []
    with ScriptedServer([listing, failed, json_reply(200, body)]) as server:  # gone, then m
        document = {
            "registry": {"base_url": server.url, "token": "${MODEL_REGISTRY_TOKEN}"},
            "orgs": [{"name": "acme", "models": ["m", "gone"]}],
            "output": {"uri": str(tmp_path / "out"), "min_success_ratio": 0.5},
        }
        document["registry"]["concurrency"] = 1
        document["registry"]["version_detail"] = "off"
        discovering = {**document, "orgs": [{"name": "acme", "models": ["*"]}]}
        outputs.append(run_cli(write_config(tmp_path / "d.yaml", discovering), "targets"))
        outputs.append(run_cli(write_config(tmp_path / "c.yaml", document), "extract"))
    assert outputs[1].exit_code == 3, outputs[1].output  # published, one model failed
    write_snapshot(tmp_path / "out", "2020-01-01", [V("acme", "m", "1.0.0", 1)])
    arguments = ["report", "--data", str(tmp_path / "out"), "--by", "version"]
    outputs.append(CliRunner().invoke(main, arguments))
    assert "acme/x\\x1b]0;owned\\x07" in outputs[0].stderr  # the skipped listing entry
    assert "gone \\x1b]0;owned\\x07" in outputs[1].output
    assert "2\\x1b]0;owned\\x07" in outputs[2].stdout  # the version, in the table
    for result in outputs:
        assert_no_raw_controls(result.output)


def run_cli(config: Path, command: str) -> Result:
    return CliRunner().invoke(main, [command, "--config", str(config)])


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_logged_traceback_quoting_server_text_is_escaped(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The log filter escapes the message; the traceback appended to it (a bug while handling
    one model is logged with one) quotes the exception's message, which may be a server's."""
    configure_logging("INFO", fmt)
    try:
        raise ValueError("version \x1b]0;owned\x07\x1b[2J\u202e")
    except ValueError:
        logging.getLogger("connector.test").exception("model acme/m failed \x1b[31m")
    err = capsys.readouterr().err
    assert_no_raw_controls(err)
    if fmt == "text":
        assert "\\x1b]0;owned\\x07" in err and "failed \\x1b[31m" in err
        assert "Traceback (most recent call last)" in err  # the traceback is still there
    else:  # JSON escapes them itself, and a reader gets the exact text back
        [line] = err.splitlines()
        assert "owned\x07" in json.loads(line)["exception"]


def test_a_library_caller_s_own_handler_gets_escaped_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An Airflow task or a notebook calls `connector.extract` and prints the `connector`
    loggers through its own handler, not the CLI's: a failure's detail, a skipped listing entry
    and a traceback quoting server text still reach it escaped (one line per record)."""
    hostile = "\x1b]0;owned\x07\n[ERROR] forged line\u202e"
    listing = json_reply(200, {"models": [{"name": "acme/m"}, {"name": f"acme/x{hostile}"}]})
    failed = json_reply(404, {"code": 404, "type": "not_found", "detail": f"gone {hostile}"})
    monkeypatch.setenv("MODEL_REGISTRY_TOKEN", "t0k3n-for-the-scripted-server")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with ScriptedServer([listing, failed, json_reply(200, VALID_BODY)]) as server:
            document = {
                "registry": {"base_url": server.url, "token": "${MODEL_REGISTRY_TOKEN}"},
                "orgs": [{"name": "acme", "models": ["*"]}],
                "output": {"uri": str(tmp_path / "out"), "min_success_ratio": 0.1},
            }
            document["registry"].update(concurrency=1, version_detail="off")
            config = load_config(write_config(tmp_path / "c.yaml", document))
            summary = extract(config, progress=False)
        assert summary.targets_failed == 1  # acme/m answered 404 with the hostile detail
        try:
            raise ValueError(f"version {hostile}")
        except ValueError:
            # the logger of a module (its filter added when the module was imported)
            logging.getLogger("connector.extraction.run").exception("model acme/m failed")
    finally:
        root.removeHandler(handler)
    text = stream.getvalue()
    assert "\\x1b]0;owned\\x07\\n[ERROR] forged line" in text, text
    assert_no_raw_controls(text.replace("\n", ""))
    assert not any(line.startswith("[ERROR] forged") for line in text.splitlines())


def test_an_escaped_traceback_is_the_standard_one_when_nothing_needs_escaping() -> None:
    """The traceback the loggers hand any handler is Python's own, chains included; only an
    exception's message is escaped."""

    def fail() -> None:
        try:
            {}["missing"]
        except KeyError as error:
            raise RuntimeError("while reading\tthe body") from error

    try:
        try:
            fail()
        except RuntimeError:
            raise ValueError("then this")  # noqa: B904 (the implicit context is tested)
    except ValueError as error:
        caught = error
    expected = logging.Formatter().formatException((type(caught), caught, caught.__traceback__))
    assert escaped_traceback(caught) == expected.replace("\t", "\\t")
    assert "The above exception was the direct cause" in expected
    assert "During handling of the above exception" in expected


def test_every_module_logger_escapes() -> None:
    """A module that logs through a plain `logging.getLogger` would reach a library caller's
    handler unescaped: every module's `log` comes from `connector.loggers.get_logger`."""
    loggers = {}
    for info in pkgutil.walk_packages(connector.__path__, "connector."):
        if info.name.endswith("__main__"):  # runs the CLI when imported
            continue
        module = importlib.import_module(info.name)
        if isinstance(getattr(module, "log", None), logging.Logger):
            loggers[info.name] = module.log
    assert len(loggers) >= 15
    plain = [
        name
        for name, log in loggers.items()
        if not any(isinstance(f, EscapingFilter) for f in log.filters)
    ]
    assert plain == []
