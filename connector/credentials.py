"""How a token goes to the registry: the two authentication schemes, one header per call.

The registry's API reference shows `Authorization: Bearer <token>`; its own client sends API
keys (`dn_key_...`) as `X-API-Key: <key>` and keeps Bearer for session tokens. Which one a
deployment takes is configuration (`registry.auth_scheme`, `orgs[].auth_scheme`), never a
guess: trying one scheme after the other would send every token twice, under two names.

Kept apart from `config` and `http` because both need it: the config decides the credential of
each org, the client sends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AuthScheme = Literal["bearer", "api-key"]
AUTH_SCHEMES: tuple[AuthScheme, ...] = ("bearer", "api-key")
API_KEY_PREFIX = "dn_key_"
# Every header that can carry a credential: a call sends exactly one of them.
CREDENTIAL_HEADERS = ("Authorization", "X-API-Key")


def header_name(scheme: AuthScheme) -> str:
    """The header a scheme sends the token in."""
    return "X-API-Key" if scheme == "api-key" else "Authorization"


def _other(scheme: AuthScheme) -> AuthScheme:
    return "bearer" if scheme == "api-key" else "api-key"


@dataclass(frozen=True)
class Credential:
    """One org's token and its scheme; `setting` is the config key that chose the scheme, so a
    message can say which key to change. The token never appears in a repr."""

    token: str = field(repr=False)
    scheme: AuthScheme = "bearer"
    setting: str = "registry.auth_scheme"

    def headers(self) -> dict[str, str]:
        """The one credential header of a call."""
        if self.scheme == "api-key":
            return {"X-API-Key": self.token}
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def header(self) -> str:
        """The name of the header the token goes in."""
        return header_name(self.scheme)

    def sent_as(self) -> str:
        """How the token went out, in words (`Authorization: Bearer`, `X-API-Key`)."""
        return "Authorization: Bearer" if self.scheme == "bearer" else "X-API-Key"

    def refused_hint(self) -> str:
        """What a 401 adds to its one line: the scheme used, and that the other one exists."""
        other = _other(self.scheme)
        return (
            f"the token was sent as {self.sent_as()} ({self.setting}: {self.scheme}); the "
            f"registry also takes {other} ({header_name(other)}): if the token is "
            f"{'an API key (dn_key_...)' if other == 'api-key' else 'a session token'}, "
            f"set {self.setting}: {other}"
        )


def api_key_warning(where: str, token: str, scheme: AuthScheme, setting: str) -> str | None:
    """A warning when a token that looks like an API key is configured to go as Bearer, the
    first-night mistake: the registry's client sends such keys as X-API-Key. Never quotes the
    token."""
    if scheme != "bearer" or not token.startswith(API_KEY_PREFIX):
        return None
    return (
        f"{where} looks like an API key ({API_KEY_PREFIX}...) but {setting} is bearer, so it "
        f"goes out as Authorization: Bearer; the registry's own client sends API keys as "
        f"X-API-Key: set {setting}: api-key"
    )
