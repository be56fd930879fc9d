"""`connector validate` calls nothing, so it needs no secret: an unset `${VAR}` is checked as a
placeholder, every real problem is still reported at once, and it says which variables a run
needs and which are not set here. `--require-env` is the check for the machine that runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from connector.cli import main

SAMPLES = Path(__file__).resolve().parent.parent / "sample_configs"
CONFIG = """\
registry:
  base_url: https://registry.example.com
  token: ${MODEL_REGISTRY_TOKEN}
  proxy: ${HTTPS_PROXY:-}
orgs:
  - name: acme
    models: [a, b]
  - name: globex
    token: ${GLOBEX_TOKEN}
    models: [c]
output:
  uri: ./data
"""


def validate(path: Path, *args: str, **env: str | None) -> Result:
    environment: dict[str, str | None] = {
        "MODEL_REGISTRY_TOKEN": None,
        "GLOBEX_TOKEN": None,
        "HTTPS_PROXY": None,
    }
    return CliRunner().invoke(
        main, ["validate", "--config", str(path), *args], env={**environment, **env}
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_file_validates_without_its_secrets_and_names_them(tmp_path: Path) -> None:
    result = validate(write(tmp_path, CONFIG), GLOBEX_TOKEN="set-here")
    assert result.exit_code == 0, result.output
    assert "OK: " in result.stdout and "2 org(s), 3 model(s)" in result.stdout
    assert (
        "A run needs these environment variables: GLOBEX_TOKEN (set), "
        "MODEL_REGISTRY_TOKEN (not set)" in result.stdout
    )
    assert "HTTPS_PROXY" not in result.output  # it has a default: a run does not need it
    [warning] = result.stderr.splitlines()
    assert warning.startswith("Warning: MODEL_REGISTRY_TOKEN is not set here (registry.token): ")
    assert "extract, targets and publish stop with exit 2 until it is set" in warning


def test_every_real_problem_is_still_reported_at_once(tmp_path: Path) -> None:
    text = CONFIG.replace("models: [a, b]", "models: [a, 'bad slug']").replace(
        "  proxy:", "  concurency: 3\n  proxy:"
    )
    result = validate(write(tmp_path, text))
    assert result.exit_code == 2
    assert "Error: 2 configuration problem(s)" in result.stderr
    assert "registry.concurency: unknown key" in result.stderr
    assert "orgs[0].models[1]: not a valid slug" in result.stderr
    assert "Warning: GLOBEX_TOKEN is not set here (orgs[1].token)" in result.stderr


def test_require_env_makes_an_unset_variable_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    result = validate(path, "--require-env", GLOBEX_TOKEN="x")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: 1 configuration problem(s)")
    assert "registry.token: environment variable MODEL_REGISTRY_TOKEN is not set" in result.stderr
    both = validate(path, "--require-env", GLOBEX_TOKEN="x", MODEL_REGISTRY_TOKEN="y")
    assert both.exit_code == 0, both.output
    assert "GLOBEX_TOKEN (set), MODEL_REGISTRY_TOKEN (set)" in both.stdout


def test_a_value_a_placeholder_cannot_stand_for_says_so(tmp_path: Path) -> None:
    """A token passes as `${VAR}`; a URL cannot: validate says it cannot check it yet."""
    text = CONFIG.replace("https://registry.example.com", "${REGISTRY_URL}")
    result = validate(write(tmp_path, text), REGISTRY_URL=None)
    assert result.exit_code == 2
    assert "registry.base_url: cannot be checked while REGISTRY_URL is not set" in result.stderr
    fine = validate(write(tmp_path, text), REGISTRY_URL="https://r.example.com")
    assert fine.exit_code == 0, fine.output


def test_a_run_still_needs_its_variables(tmp_path: Path) -> None:
    """The placeholders are validate's alone: extract refuses as before, naming the key."""
    result = CliRunner().invoke(
        main,
        ["extract", "--config", str(write(tmp_path, CONFIG))],
        env={"MODEL_REGISTRY_TOKEN": None, "GLOBEX_TOKEN": "x"},
    )
    assert result.exit_code == 2
    assert "registry.token: environment variable MODEL_REGISTRY_TOKEN is not set" in result.stderr


@pytest.mark.parametrize("sample", sorted(SAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_sample_validates_on_a_fresh_machine(sample: Path) -> None:
    """A new user's first command, before any secret is exported."""
    result = validate(sample)
    assert result.exit_code == 0, result.output
    assert "A run needs these environment variables: " in result.stdout
