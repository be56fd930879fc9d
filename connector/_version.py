"""The connector's version, kept in one place so the package, the User-Agent and manifests agree."""

__version__ = "0.1.0"
