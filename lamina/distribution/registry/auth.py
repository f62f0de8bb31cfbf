"""Registry authentication: credentials, the ``WWW-Authenticate`` challenge, bearer tokens.

A registry answers an unauthenticated request with 401 and a challenge:

* ``Basic realm="..."``: every request then carries ``Authorization: Basic base64(user:pass)``;
* ``Bearer realm="https://auth/token",service="registry",scope="repository:x:pull"``: the
  client asks ``realm`` for a token (``GET realm?service=...&scope=...``, with Basic
  credentials when it has some, anonymously otherwise; an identity token is sent as a
  ``refresh_token`` in a ``POST`` form, as Docker does) and sends ``Authorization: Bearer
  <token>``.  Tokens are cached per scope until ``expires_in`` (default 60 s) runs out.

Credentials never appear in ``repr``, logs or error messages.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from typing import TYPE_CHECKING

from lamina import errdefs
from lamina.records import dataclass

if TYPE_CHECKING:
    import httpx

__all__ = ["Credentials", "Challenge", "parse_challenge", "TokenCache", "ANONYMOUS"]


@dataclass(frozen=True)
class Credentials:
    """What a user logged in with (any field may be empty)."""

    username: str = ""
    password: str = ""
    identity_token: str = ""
    registry_token: str = ""

    def __repr__(self) -> str:  # never the secret
        return f"Credentials(username={self.username!r}, password={'***' if self.password else ''!r})"

    __str__ = __repr__

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


ANONYMOUS = Credentials()


@dataclass(frozen=True)
class Challenge:
    scheme: str                      # "basic" or "bearer"
    parameters: dict[str, str]


_PARAMETER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` value; None when it is not one."""
    header = header.strip()
    scheme, _, rest = header.partition(" ")
    if not scheme:
        return None
    parameters: dict[str, str] = {}
    position = 0
    while position < len(rest):
        match = _PARAMETER.match(rest, position)
        if match is None or match.end() == position:
            break
        value = match.group(2) if match.group(2) is not None else match.group(3)
        parameters[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        position = match.end()
    return Challenge(scheme.lower(), parameters)


class TokenCache:
    """Bearer tokens by scope, until they expire (10 s of margin)."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, scope: str) -> str | None:
        with self._lock:
            entry = self._tokens.get(scope)
            if entry is None or entry[1] < time.monotonic():
                return None
            return entry[0]

    def put(self, scope: str, token: str, expires_in: float) -> None:
        with self._lock:
            self._tokens[scope] = (token, time.monotonic() + max(expires_in - 10, 1))


def fetch_token(client: "httpx.Client", challenge: Challenge, scope: str, credentials: Credentials,
                registry: str) -> tuple[str, float]:
    """Ask the challenge's realm for a token for ``scope``; (token, seconds it lives)."""
    import httpx

    realm = challenge.parameters.get("realm")
    if not realm:
        raise errdefs.Unauthorized(f"registry {registry} sent a bearer challenge without a realm")
    service = challenge.parameters.get("service", "")
    try:
        if credentials.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": credentials.identity_token,
                    "service": service, "scope": " ".join(scope.split()), "client_id": "lamina"}
            response = client.post(realm, data=form)
        else:
            # several scopes (a mount reads one repository and writes another): one parameter each
            query = [("service", service)] + [("scope", part) for part in scope.split()]
            headers = {}
            if credentials.username or credentials.password:
                headers["Authorization"] = credentials.basic()
            response = client.get(realm, params=query, headers=headers)
    except httpx.HTTPError as exc:
        raise errdefs.Unavailable(f"registry {registry}: cannot reach the token service {realm}: "
                                  f"{type(exc).__name__}: {exc}") from None
    if response.status_code in (401, 403):
        kind = errdefs.Unauthorized if response.status_code == 401 else errdefs.Forbidden
        who = "anonymous access" if credentials.empty else f"user {credentials.username!r}"
        raise kind(f"registry {registry}: the token service refused {who} for {scope or 'the registry'} "
                   f"(HTTP {response.status_code})")
    if response.status_code != 200:
        raise errdefs.Unavailable(f"registry {registry}: the token service answered HTTP {response.status_code}")
    try:
        document = response.json()
    except ValueError:
        raise errdefs.Unavailable(f"registry {registry}: the token service answered no JSON") from None
    token = document.get("token") or document.get("access_token") if isinstance(document, dict) else None
    if not isinstance(token, str) or not token:
        raise errdefs.Unavailable(f"registry {registry}: the token service answered no token")
    expires = document.get("expires_in")
    return token, float(expires) if isinstance(expires, (int, float)) and expires > 0 else 60.0
