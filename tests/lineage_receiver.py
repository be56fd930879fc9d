"""A lineage backend for the tests: an HTTP server on 127.0.0.1 that keeps every OpenLineage
event POSTed to it, and the validation of an event against the OpenLineage spec.

openlineage-python 1.54 ships no JSON Schema files (its wheel holds none; the spec's
`OpenLineage.json` and `facets/*.json` stay in the project's repository). What it ships are the
classes generated from those schemas (`openlineage.client.generated`: one attrs class per
object, its required fields without default, its `_schemaURL`, and validators such as the
run id's UUID check). `validate` rebuilds a received event with those classes, strictly: every
required field present, no field the schema does not define, every value of its type, every
facet of the class its `_schemaURL` names, the generated validators run; then the rebuilt
event, serialised by the client's own `Serde`, must equal what was received.
"""

from __future__ import annotations

import enum
import importlib
import json
import pkgutil
import threading
import types
import typing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attr
from openlineage.client import event_v2
from openlineage.client.generated import base
from openlineage.client.serde import Serde


class Receiver:
    """Keeps the JSON bodies POSTed to it; answers `status` (200 unless told otherwise)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.events: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.raw.append(body)
                receiver.events.append(json.loads(body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # serve_forever notices shutdown() only between polls: its default 0.5 s poll made every
        # test using a receiver wait up to half a second in teardown.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def runs(self) -> dict[str, list[dict[str, Any]]]:
        """The events by run id, in the order they arrived."""
        found: dict[str, list[dict[str, Any]]] = {}
        for event in self.events:
            found.setdefault(event["run"]["runId"], []).append(event)
        return found


def _facet_classes() -> dict[str, type]:
    """Every generated facet class by the `_schemaURL` it carries."""
    found: dict[str, type] = {}
    package = importlib.import_module("openlineage.client.generated")
    for module in pkgutil.iter_modules(package.__path__):
        loaded = importlib.import_module(f"openlineage.client.generated.{module.name}")
        for value in vars(loaded).values():
            if isinstance(value, type) and attr.has(value) and issubclass(value, base.BaseFacet):
                found[value._get_schema()] = value
    return found


FACETS = _facet_classes()
_FACET_BASES = (base.BaseFacet,)  # every facet kind: the class comes from its _schemaURL


def _structure(cls: type, data: Any, where: str) -> Any:
    assert isinstance(data, dict), f"{where}: expected an object, got {data!r}"
    fields = {field.name: field for field in attr.fields(cls)}
    facet = issubclass(cls, base.BaseFacet)
    unknown = set(data) - set(fields) - ({"_deleted"} if facet else set())
    assert not unknown, f"{where}: {sorted(unknown)} are not fields of {cls.__name__}"
    kwargs = {}
    for name, field in fields.items():
        if name not in data:
            assert field.default is not attr.NOTHING, f"{where}: required {name} missing"
            continue
        if not field.init:
            continue  # _schemaURL: checked against the class below
        kwargs[field.alias] = _convert(_hint(cls, name), data[name], f"{where}.{name}")
    built = cls(**kwargs)  # the generated validators run here
    for name, field in fields.items():  # _schemaURL, schemaURL: what the class says
        if not field.init and name in data:
            assert data[name] == getattr(built, name), f"{where}.{name}: {data[name]!r}"
    return built


def _hint(cls: type, name: str) -> Any:
    """A field's annotation, evaluated in the module of the class that declares it."""
    for klass in cls.__mro__:
        annotation = vars(klass).get("__annotations__", {}).get(name)
        if annotation is not None:
            module = vars(importlib.import_module(klass.__module__))
            return (
                eval(annotation, {**vars(typing), **module})
                if isinstance(annotation, str)
                else annotation
            )
    raise AssertionError(f"{cls.__name__}.{name} has no annotation")


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            assert type(None) in args, f"{where}: may not be null"
            return None
        (hint,) = [a for a in args if a is not type(None)]
        return _convert(hint, value, where)
    if hint is Any:
        return value
    if origin is list:
        assert isinstance(value, list), f"{where}: expected an array"
        return [_convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        assert isinstance(value, dict), f"{where}: expected an object"
        return {key: _convert(args[1], item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if isinstance(hint, type) and issubclass(hint, _FACET_BASES):
        url = value.get("_schemaURL") if isinstance(value, dict) else None
        assert url in FACETS, f"{where}: no facet of the spec has the _schemaURL {url}"
        return _structure(FACETS[url], value, where)
    if isinstance(hint, type) and attr.has(hint):
        return _structure(hint, value, where)
    expected = {str: str, int: int, bool: bool, float: (int, float)}[hint]
    assert isinstance(value, expected) and (hint is bool or not isinstance(value, bool)), (
        f"{where}: {value!r} is not a {hint.__name__}"
    )
    return value


def validate(event: dict[str, Any]) -> None:
    """Assert that a received event is a valid OpenLineage RunEvent (module docstring)."""
    built = _structure(event_v2.RunEvent, event, "event")
    assert Serde.to_dict(built) == event, "the event does not serialise back to what was sent"
