"""Shared fixtures: a real simulated registry on 127.0.0.1 and configs that point at it."""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from helpers import TOKEN, PrivateCA
from s3_objects import new_bucket, use_s3_environment

from connector.simulator.server import SimulatedRegistry, SimulatorConfig

AIRFLOW_SKIP = (
    "needs Airflow, which lives in its own virtualenv: `make test-airflow` installs it into "
    ".venv-airflow and runs the tests marked `airflow` there (CI does)"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `slow` (child processes, seconds each) run first: spread over the workers
    while the short tests fill in behind them, a run never ends waiting on one of them.

    Tests marked `airflow` run where Airflow is importable (.venv-airflow) and are skipped,
    saying where they run, elsewhere. `make test-airflow` sets CONNECTOR_TESTS_REQUIRE_AIRFLOW,
    so a broken Airflow venv fails instead of skipping the DAG tests it exists for."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: slow first
    if importlib.util.find_spec("airflow") is not None:
        return
    if os.environ.get("CONNECTOR_TESTS_REQUIRE_AIRFLOW"):
        raise pytest.UsageError("CONNECTOR_TESTS_REQUIRE_AIRFLOW is set but Airflow is missing")
    skip = pytest.mark.skip(reason=AIRFLOW_SKIP)
    for item in items:
        if item.get_closest_marker("airflow"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _reset_connector_logging() -> Iterator[None]:
    """The CLI attaches a handler to stderr; a later test must not log into a closed stream."""
    yield
    logger = logging.getLogger("connector")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


@pytest.fixture
def start_simulator() -> Iterator[Callable[..., SimulatedRegistry]]:
    """Start simulators with SimulatorConfig keyword arguments; all are stopped afterwards."""
    started: list[SimulatedRegistry] = []

    def start(**settings: Any) -> SimulatedRegistry:
        settings.setdefault("token", TOKEN)
        registry = SimulatedRegistry(SimulatorConfig(**settings)).start()
        started.append(registry)
        return registry

    yield start
    for registry in started:
        registry.stop()


@pytest.fixture
def private_ca(tmp_path: Path) -> PrivateCA:
    """A private CA and a certificate for 127.0.0.1 (TLS test servers)."""
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1")
    bundle, chain, key = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    authority.cert_pem.write_to_path(str(bundle))
    chain.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    return PrivateCA(bundle, (chain, key))


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """The registry token, provided the way operators should: through the environment."""
    monkeypatch.setenv("MODEL_REGISTRY_TOKEN", TOKEN)
    return TOKEN


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    """moto's S3 API on 127.0.0.1:<free port> for the whole session (each test has its bucket)."""
    from s3_server import S3Server

    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: Any) -> str:
    """A fresh bucket; credentials and endpoint come from the environment, as in production."""
    use_s3_environment(monkeypatch, s3_server, tmp_path_factory.mktemp("aws") / "none")
    return new_bucket(s3_server)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """One dataset root on each store: a local directory, and a prefix of a fresh bucket on
    the S3 API (moto). A scenario that differs only by storage takes this and runs on both."""
    from connector.dataset.locate import open_store

    if request.param == "local":
        return open_store(str(tmp_path / "out"))
    bucket = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket}/lake")


# A dataset that takes runs to build is built once per module and kind of store: a module fixture
# builds it in `with shared_store() as store:`; a test that only reads it opens its URI under
# `store_environment`, and a test that changes it works on a copy in `fresh_store`
# (`stores.copy_tree`: a few object copies instead of runs).


@pytest.fixture(scope="module", params=["local", "s3"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """The kind of store ("local", "s3") of a module's shared dataset; ids as `store`'s."""
    return str(request.param)


@pytest.fixture(scope="module")
def shared_store(
    store_kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[], AbstractContextManager[Any]]:
    """A context manager that opens a new empty store of `store_kind`, with the S3 environment
    set inside it, for a module fixture to build its dataset in once."""
    from connector.dataset.locate import open_store

    server = request.getfixturevalue("s3_server") if store_kind == "s3" else None

    @contextmanager
    def open_new() -> Iterator[Any]:
        with pytest.MonkeyPatch.context() as monkeypatch:
            if server is None:
                yield open_store(str(tmp_path_factory.mktemp("shared") / "out"))
                return
            use_s3_environment(monkeypatch, server, tmp_path_factory.mktemp("aws") / "none")
            yield open_store(f"s3://{new_bucket(server)}/lake")

    return open_new


@pytest.fixture
def store_environment(
    store_kind: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """What reaching a store of the module's `store_kind` takes (on S3: the AWS variables)."""
    if store_kind == "s3":
        server = request.getfixturevalue("s3_server")
        use_s3_environment(monkeypatch, server, tmp_path_factory.mktemp("aws") / "none")


@pytest.fixture
def fresh_store(
    store_kind: str, store_environment: None, request: pytest.FixtureRequest, tmp_path: Path
) -> Any:
    """A new empty store of the module's `store_kind`, for a test that changes a copy of the
    module's shared dataset."""
    from connector.dataset.locate import open_store

    if store_kind == "local":
        return open_store(str(tmp_path / "out"))
    return open_store(f"s3://{new_bucket(request.getfixturevalue('s3_server'))}/lake")
