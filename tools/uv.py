"""Run the Makefile's pinned uv with this machine's package-index settings.

uv does not read pip's configuration (pip.conf, PIP_* variables), so a machine whose package
index or certificate bundle is set up for pip would send uv elsewhere. This reads pip's
effective settings at run time (nothing about the host is committed) and hands them to uv
through its own variables, unless those are already set:

- ``index-url``            -> ``UV_DEFAULT_INDEX`` (a mirror of PyPI)
- ``cert``                 -> ``SSL_CERT_FILE`` (the CA bundle that reaches it)
- ``timeout``              -> ``UV_HTTP_TIMEOUT``

pip's ``find-links`` and ``extra-index-url`` are deliberately not carried over: they point at
local copies of some packages, and uv would write those paths into ``uv.lock``.

Usage: ``python tools/uv.py UV_BINARY ARGS...`` (the Makefile passes the bootstrapped binary).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

# pip setting name -> uv environment variable
CARRIED = {"index-url": "UV_DEFAULT_INDEX", "cert": "SSL_CERT_FILE", "timeout": "UV_HTTP_TIMEOUT"}


def pip_settings() -> dict[str, str]:
    """pip's effective values for the carried settings; environment variables win over files."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    from_files: dict[str, str] = {}
    from_env: dict[str, str] = {}
    for line in listing.splitlines():
        name, sep, raw = line.partition("=")
        if not sep or "." not in name:
            continue
        section, key = name.rsplit(".", 1)
        key = "timeout" if key == "default-timeout" else key
        if key not in CARRIED or section not in {":env:", "global", "install"}:
            continue
        try:
            value = str(ast.literal_eval(raw))
        except (SyntaxError, ValueError):
            value = raw.strip("'\"")
        (from_env if section == ":env:" else from_files)[key] = value
    return {**from_files, **from_env}


def main(argv: list[str]) -> None:
    """Exec uv with the carried settings in its environment."""
    env = dict(os.environ)
    for key, value in pip_settings().items():
        env.setdefault(CARRIED[key], value)
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main(sys.argv[1:])
