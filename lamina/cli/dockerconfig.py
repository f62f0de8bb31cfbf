"""Registry credentials in the docker CLI's ``config.json`` (``$DOCKER_CONFIG/config.json``,
default ``~/.docker/config.json``), read and written as the docker CLI does::

    {"auths": {"localhost:5000": {"auth": "<base64 of user:password>"},
               "https://index.docker.io/v1/": {"auth": "...", "identitytoken": "..."}},
     "credsStore": "pass",                        # optional: every registry through a helper
     "credHelpers": {"registry.example": "ecr"}}  # optional: one registry through a helper

A helper is the program ``docker-credential-<name>``: ``get`` reads the server on stdin and
answers ``{"ServerURL", "Username", "Secret"}`` (``Username`` ``<token>`` means the secret is
an identity token), ``store`` reads that object, ``erase`` reads the server.  Docker Hub's
key is ``https://index.docker.io/v1/``.  Other keys of the file are kept as they are.  The
file is replaced atomically with mode 0600; secrets never go to stdout, stderr or logs.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess

from lamina.cli.errors import CommandError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DockerConfig", "registry_key", "encode_auth"]

DOCKER_HUB_KEY = "https://index.docker.io/v1/"


def registry_key(domain: str) -> str:
    """The ``auths`` key of a registry: Docker Hub's historical URL, else ``host[:port]``."""
    from lamina.image.reference import DEFAULT_DOMAIN, registry_domain

    host = registry_domain(domain)
    return DOCKER_HUB_KEY if host == DEFAULT_DOMAIN else host


def encode_auth(username: str = "", password: str = "", server: str = "", identity_token: str = "") -> str:
    """The ``X-Registry-Auth`` value: base64url of the auth configuration JSON."""
    document: dict[str, str] = {"serveraddress": server}
    if identity_token:
        document["identitytoken"] = identity_token
    else:
        document.update(username=username, password=password)
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode()


class DockerConfig:
    def __init__(self, path: str | None = None) -> None:
        if path is None:
            directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
            path = os.path.join(directory, "config.json")
        self.path = path

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, "rb") as handle:
                document = json.loads(handle.read() or b"{}")
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read {self.path}: {exc}") from None
        if not isinstance(document, dict):
            raise CommandError(f"{self.path} is not a JSON object")
        return document

    def _write(self, document: dict[str, Any]) -> None:
        from lamina import fsutil

        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        fsutil.atomic_write(self.path, json.dumps(document, indent="\t") + "\n", mode=0o600)

    def _helper(self, document: dict[str, Any], key: str) -> str | None:
        helpers = document.get("credHelpers")
        if isinstance(helpers, dict) and isinstance(helpers.get(key), str):
            return str(helpers[key])
        store = document.get("credsStore")
        return store if isinstance(store, str) and store else None

    def credentials(self, domain: str) -> tuple[str, str, str]:
        """(username, password, identity token) for a registry; empty strings when none."""
        key = registry_key(domain)
        document = self._read()
        helper = self._helper(document, key)
        if helper is not None:
            answer = _run_helper(helper, "get", key.encode(), missing_ok=True)
            if not answer:
                return "", "", ""
            found = json.loads(answer)
            if found.get("Username") == "<token>":
                return "", "", str(found.get("Secret") or "")
            return str(found.get("Username") or ""), str(found.get("Secret") or ""), ""
        entry = (document.get("auths") or {}).get(key)
        if not isinstance(entry, dict):
            return "", "", ""
        username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
        if entry.get("auth"):
            try:
                decoded = base64.b64decode(str(entry["auth"])).decode()
            except (ValueError, UnicodeDecodeError):
                raise CommandError(f"{self.path}: the auth entry of {key} is not base64 of user:password") from None
            username, _, password = decoded.partition(":")
        return username, password, str(entry.get("identitytoken") or "")

    def auth_header(self, domain: str) -> str | None:
        """``X-Registry-Auth`` for a registry, or None without credentials."""
        username, password, token = self.credentials(domain)
        if not (username or password or token):
            return None
        return encode_auth(username, password, registry_key(domain), token)

    def registry_config(self) -> str | None:
        """``X-Registry-Config`` (``docker build``): base64url of every registry's auth
        configuration, by ``auths`` / ``credHelpers`` key, or None without any.  The registries
        a ``credsStore`` alone knows are not listed (the docker CLI asks the helper's ``list``)."""
        document = self._read()
        keys = set(document.get("auths") or {}) | set(document.get("credHelpers") or {})
        entries: dict[str, dict[str, str]] = {}
        for key in sorted(str(key) for key in keys):
            username, password, token = self.credentials(key)
            if username or password or token:
                entry = {"serveraddress": key}
                entry.update({"identitytoken": token} if token else {"username": username, "password": password})
                entries[key] = entry
        if not entries:
            return None
        return base64.urlsafe_b64encode(json.dumps(entries).encode()).decode()

    def store(self, domain: str, username: str, password: str) -> None:
        key = registry_key(domain)
        document = self._read()
        helper = self._helper(document, key)
        if helper is not None:
            payload = json.dumps({"ServerURL": key, "Username": username, "Secret": password}).encode()
            _run_helper(helper, "store", payload)
            return
        auths = document.setdefault("auths", {})
        auths[key] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
        self._write(document)

    def erase(self, domain: str) -> bool:
        """Forget a registry's credentials; False when there were none."""
        key = registry_key(domain)
        document = self._read()
        helper = self._helper(document, key)
        if helper is not None:
            _run_helper(helper, "erase", key.encode(), missing_ok=True)
            return True
        auths = document.get("auths")
        if not isinstance(auths, dict) or key not in auths:
            return False
        del auths[key]
        self._write(document)
        return True


def _run_helper(name: str, action: str, payload: bytes, *, missing_ok: bool = False) -> bytes:
    program = f"docker-credential-{name}"
    try:
        result = subprocess.run([program, action], input=payload, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise CommandError(f"credential helper {program} is not installed (named in the docker config)") from None
    except subprocess.TimeoutExpired:
        raise CommandError(f"credential helper {program} {action} timed out") from None
    if result.returncode != 0:
        text = result.stdout.decode(errors="replace").strip()
        if missing_ok and "credentials not found" in text.lower():
            return b""
        # the helper's output may hold a secret only on success: its error text is safe to show
        raise CommandError(f"credential helper {program} {action} failed: {text[:200]}")
    return result.stdout
