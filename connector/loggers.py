"""The connector's module loggers, which escape what they log whatever handler prints it.

`connector` on the command line prints through its own handler (`connector.logs`), which
escapes and redacts. A library caller (an Airflow task, a notebook) attaches its own handlers
instead, and a log line quoting a server's text (an error `detail`, a model name) would reach
them raw: a newline forges a log line, an escape sequence drives the terminal showing the log.
A filter on each module's logger runs before any handler sees the record, so the message is
escaped at the source (`connector.redaction.printable`), and so is the traceback a record
carries (pre-formatted into `exc_text`, which standard formatters print as it is).
"""

from __future__ import annotations

import logging
import traceback

from connector.redaction import printable


def escaped_traceback(error: BaseException) -> str:
    """The traceback `logging` would print, with each exception's message escaped on its own
    line (`printable`): the stack is our code, the message may be a server's, and a newline in
    it must not start a line of its own."""
    return "".join(_lines(traceback.TracebackException.from_exception(error))).rstrip("\n")


def _lines(summary: traceback.TracebackException) -> list[str]:
    lines: list[str] = []
    if summary.__cause__ is not None:
        lines += _lines(summary.__cause__)
        lines.append("\nThe above exception was the direct cause of the following exception:\n\n")
    elif summary.__context__ is not None and not summary.__suppress_context__:
        lines += _lines(summary.__context__)
        lines.append("\nDuring handling of the above exception, another exception occurred:\n\n")
    if summary.stack:
        lines += ["Traceback (most recent call last):\n", *summary.stack.format()]
    messages = summary.format_exception_only()
    return lines + [printable(message.removesuffix("\n")) + "\n" for message in messages]


class EscapingFilter(logging.Filter):
    """Escapes a record's message and its traceback in place; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = printable(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and not record.exc_text:
            record.exc_text = escaped_traceback(error)
        return True


_ESCAPING = EscapingFilter()


def get_logger(name: str) -> logging.Logger:
    """`logging.getLogger(name)` with the escaping filter (added once)."""
    logger = logging.getLogger(name)
    if _ESCAPING not in logger.filters:
        logger.addFilter(_ESCAPING)
    return logger
