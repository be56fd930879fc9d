"""`Config`: a whole, validated configuration file, and what a run asks of it (its targets,
each org's credential, every secret to scrub)."""

from __future__ import annotations

from pydantic import (
    Field,
    PrivateAttr,
    field_validator,
)

from connector.config.base import Settings, listed_twice
from connector.config.output import OutputSettings
from connector.config.registry import OrgSettings, RegistrySettings
from connector.credentials import Credential, api_key_warning


class Config(Settings):
    """A validated configuration file."""

    registry: RegistrySettings
    orgs: list[OrgSettings] = Field(min_length=1, description="the orgs to snapshot, each once")
    output: OutputSettings

    @field_validator("orgs")
    @classmethod
    def _unique_orgs(cls, value: list[OrgSettings]) -> list[OrgSettings]:
        duplicates = listed_twice([org.name for org in value])
        if duplicates:
            raise ValueError(f"org listed more than once: {', '.join(duplicates)}")
        return value

    _warnings: tuple[str, ...] = PrivateAttr(default=())
    _source: str | None = PrivateAttr(default=None)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Non-fatal problems found while loading (e.g. a literal token in the file)."""
        return self._warnings

    @property
    def source(self) -> str | None:
        """The file this config was read from, if any."""
        return self._source

    def targets(self) -> list[tuple[str, str]]:
        """Every (org, model) named exactly, in configuration order; discovered targets come
        from `connector.extraction.plan.plan_targets`."""
        return [(org.name, model) for org in self.orgs for model in org.slugs]

    def discovers(self) -> bool:
        """Whether any org has a pattern, so resolving the targets calls listModels."""
        return any(org.patterns for org in self.orgs)

    def covers(self, org: str, model: str) -> bool:
        """Whether this config targets `org/model` when the registry lists it: named exactly,
        or matched by a pattern and not excluded."""
        for settings in self.orgs:
            if settings.name == org:
                return model in settings.slugs or settings.wants(model)
        return False

    def credential_for(self, org: str) -> Credential:
        """The org's token and scheme: its own where set, else the registry's."""
        registry = self.registry
        token, scheme = registry.token.get_secret_value(), registry.auth_scheme
        setting = "registry.auth_scheme"
        for index, settings in enumerate(self.orgs):
            if settings.name != org:
                continue
            if settings.token is not None:
                token = settings.token.get_secret_value()
            if settings.auth_scheme is not None:
                scheme, setting = settings.auth_scheme, f"orgs[{index}].auth_scheme"
        return Credential(token, scheme, setting)

    def auth_warnings(self) -> list[str]:
        """A warning for each API-key-looking token configured to go as Bearer."""
        registry = self.registry
        found = [
            api_key_warning(
                "registry.token",
                registry.token.get_secret_value(),
                registry.auth_scheme,
                "registry.auth_scheme",
            )
        ]
        for index, org in enumerate(self.orgs):
            if org.token is None and org.auth_scheme is None:
                continue  # registry.token as registry.auth_scheme sends it: checked above
            where = f"orgs[{index}].token" if org.token is not None else "registry.token"
            credential = self.credential_for(org.name)
            found.append(
                api_key_warning(
                    f"{where} (org {org.name})",
                    credential.token,
                    credential.scheme,
                    credential.setting,
                )
            )
        return [warning for warning in found if warning is not None]

    def secrets(self) -> list[str]:
        """Every token in this config, so outputs can be scrubbed of them."""
        tokens = [self.registry.token.get_secret_value()]
        tokens += [o.token.get_secret_value() for o in self.orgs if o.token is not None]
        return [t for t in tokens if t]
