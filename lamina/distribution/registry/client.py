"""The registry HTTP client (Docker registry HTTP API v2 / OCI distribution spec) on httpx.

One :class:`Registry` talks to one registry host (``docker.io`` is reached at
``registry-1.docker.io``) with one set of credentials:

* **transport**: HTTPS verified against the system CAs plus ``<certs.d>/<host[:port]>/*.crt``,
  with a client certificate when ``*.cert`` and its ``*.key`` are there (the directories of
  :attr:`RegistryOptions.certs_directories`, ``/etc/lamina/certs.d`` then
  ``/etc/docker/certs.d``).  An *insecure* registry (``localhost``, 127.0.0.0/8, ``::1`` and
  the configured names/CIDRs) is tried over HTTPS without verification, then over plain HTTP
  when TLS fails, as Docker does.
* **auth**: the first 401 carries the ``WWW-Authenticate`` challenge (see
  :mod:`lamina.distribution.registry.auth`); the request is repeated with Basic credentials or
  a bearer token for the request's scope (``repository:<path>:pull[,push]``).
* **retries**: connection failures, timeouts and 5xx answers are retried (4 attempts, back-off
  0.25 s, 0.5 s, 1 s) when the request can be repeated (no streamed body).
* **mirrors**: a :class:`Registry` built with an ``endpoint`` talks to that URL (a pull-through
  mirror of ``docker.io``) under the registry's name (``domain`` stays ``docker.io``).
* **redirects** (to blob storage) are followed; httpx drops ``Authorization`` when a redirect
  leaves the registry's origin.

Errors name the registry, the repository and the cause: a 404 is
:class:`~lamina.errdefs.NotFound`, 401/403 :class:`~lamina.errdefs.Unauthorized` /
:class:`~lamina.errdefs.Forbidden`, an unreachable registry or a broken transfer
:class:`~lamina.errdefs.Unavailable`.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import urljoin

import httpx

from lamina import errdefs
from lamina.distribution.registry.auth import ANONYMOUS, Challenge, Credentials, TokenCache, fetch_token, parse_challenge
from lamina.log import get_logger
from lamina.records import dataclass

__all__ = ["Registry", "RegistryOptions", "BlobReader", "api_host", "is_insecure"]

log = get_logger("lamina.distribution")

_BACKOFF = (0.25, 0.5, 1.0)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RegistryOptions:
    insecure_registries: tuple[str, ...] = ("127.0.0.0/8", "::1/128", "localhost")
    certs_directories: tuple[str, ...] = ("/etc/lamina/certs.d", "/etc/docker/certs.d")
    timeout: float = 60.0          # seconds without progress (connect, read, write)
    attempts: int = 4


def api_host(domain: str) -> str:
    """Where a registry's API answers: Docker Hub's is ``registry-1.docker.io``."""
    return "registry-1.docker.io" if domain in ("docker.io", "index.docker.io") else domain


def _split_host(host: str) -> str:
    if host.startswith("["):
        return host[1:host.index("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_insecure(host: str, insecure: Iterable[str]) -> bool:
    """``host[:port]`` is in the insecure list (by name, name:port, or an address in a CIDR)."""
    name = _split_host(host)
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    for entry in insecure:
        if entry in (host, name):
            return True
        if "/" in entry and address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def _ssl_context(host: str, directories: Iterable[str], verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    for root in directories:
        directory = os.path.join(root, host)
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            try:
                if name.endswith(".crt"):
                    context.load_verify_locations(cafile=path)
                elif name.endswith(".cert"):
                    key = path[: -len(".cert")] + ".key"
                    if not os.path.exists(key):
                        raise errdefs.InvalidArgument(f"client certificate {path} has no key {key}")
                    context.load_cert_chain(path, key)
            except (ssl.SSLError, OSError) as exc:
                raise errdefs.InvalidArgument(f"cannot use {path} for registry {host}: {exc}") from exc
    return context


def _registry_errors(response: httpx.Response) -> str:
    """The ``code: message`` pairs of a registry error body, or the HTTP reason."""
    try:
        document = response.json()
        errors = document.get("errors") if isinstance(document, dict) else None
        parts = [f"{str(e.get('code', '')).lower().replace('_', ' ')}: {e.get('message', '')}".strip(": ")
                 for e in errors or [] if isinstance(e, dict)]
        if parts:
            return "; ".join(parts)
    except (ValueError, httpx.ResponseNotRead):
        pass
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()


class BlobReader:
    """A file-like view (``read``/``readinto``) of a streamed response body; transfer failures
    become :class:`~lamina.errdefs.Unavailable` naming the blob."""

    def __init__(self, response: httpx.Response, describe: str) -> None:
        self._response = response
        # chunks as the connection delivers them: httpx's re-chunking to a fixed size costs
        # more than the transfer over a local connection
        self._chunks: Iterator[bytes] = response.iter_raw()
        self._buffer = memoryview(b"")
        self._describe = describe
        self.size = int(response.headers.get("content-length") or 0) or None

    def _fill(self) -> bool:
        try:
            self._buffer = memoryview(next(self._chunks))
            return True
        except StopIteration:
            return False
        except httpx.HTTPError as exc:
            raise errdefs.Unavailable(f"{self._describe}: the transfer broke off: {type(exc).__name__}: {exc}") \
                from None

    def readinto(self, buffer: bytearray | memoryview) -> int:
        while not self._buffer:
            if not self._fill():
                return 0
        count = min(len(buffer), len(self._buffer))
        memoryview(buffer)[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count

    def batches(self, size: int = _CHUNK) -> Iterator[bytes]:
        """The rest of the body in pieces of about ``size`` bytes (joined, not split)."""
        pending: list[bytes] = [bytes(self._buffer)] if self._buffer else []
        self._buffer = memoryview(b"")
        length = sum(len(part) for part in pending)
        while self._fill():
            pending.append(self._buffer.obj)  # type: ignore[arg-type]
            length += len(self._buffer)
            self._buffer = memoryview(b"")
            if length >= size:
                yield b"".join(pending)
                pending, length = [], 0
        if pending:
            yield b"".join(pending)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = [bytes(self._buffer)]
            self._buffer = memoryview(b"")
            while self._fill():
                parts.append(bytes(self._buffer))
            self._buffer = memoryview(b"")
            return b"".join(parts)
        while not self._buffer:
            if not self._fill():
                return b""
        data = bytes(self._buffer[:size])
        self._buffer = self._buffer[size:]
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Body = bytes | Callable[[], Iterable[bytes]] | None


class Registry:
    """One registry host, one set of credentials; see the module docstring."""

    def __init__(self, domain: str, *, credentials: Credentials = ANONYMOUS,
                 options: RegistryOptions = RegistryOptions(), endpoint: str | None = None) -> None:
        """``endpoint``: where to reach ``domain`` instead of its own host (a mirror's URL;
        with a scheme, that scheme is used without probing)."""
        from urllib.parse import urlsplit

        self.domain = domain
        self.host = api_host(domain)
        self.credentials = credentials
        self.options = options
        scheme = ""
        if endpoint:
            parts = urlsplit(endpoint if "://" in endpoint else "//" + endpoint)
            if not parts.netloc or parts.scheme not in ("", "http", "https"):
                raise errdefs.InvalidArgument(f"invalid registry mirror {endpoint!r}: use https://host[:port]")
            self.host, scheme = parts.netloc, parts.scheme
        self.insecure = is_insecure(self.host, options.insecure_registries) or scheme == "http"
        self._challenge: Challenge | None = None
        self._base: str | None = None
        self._tokens = TokenCache()
        timeout = httpx.Timeout(options.timeout, connect=min(options.timeout, 15.0))
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=8)
        self._https = httpx.Client(verify=_ssl_context(self.host, options.certs_directories, not self.insecure),
                                   timeout=timeout, limits=limits, follow_redirects=True,
                                   headers={"User-Agent": "lamina"})
        self._http = httpx.Client(timeout=timeout, limits=limits, follow_redirects=True,
                                  headers={"User-Agent": "lamina"}) if self.insecure else None
        self._client = self._https
        if scheme:
            self._base = f"{scheme}://{self.host}"
            self._client = self._https if scheme == "https" else self._http  # type: ignore[assignment]

    def close(self) -> None:
        self._https.close()
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- endpoint and auth ----------------------------------------------------------------------

    def base(self) -> str:
        """``https://host`` (or ``http://host`` for an insecure registry without TLS), found by
        pinging ``/v2/`` once; the ping's 401 challenge is kept."""
        if self._base is not None:
            return self._base
        schemes = [("https", self._https)]
        if self._http is not None:
            schemes.append(("http", self._http))
        failure: str = ""
        for scheme, client in schemes:
            url = f"{scheme}://{self.host}/v2/"
            try:
                # an insecure registry's HTTPS probe is tried once: HTTP comes next
                response = self._with_retries(lambda: client.get(url), f"GET {url}",
                                              repeatable=scheme == schemes[-1][0])
            except errdefs.Unavailable as exc:
                failure = str(exc)
                continue
            response.close()
            if response.status_code == 401:
                self._challenge = parse_challenge(response.headers.get("www-authenticate", ""))
            elif response.status_code >= 400 and response.status_code != 404:
                raise errdefs.Unavailable(f"registry {self.domain}: /v2/ answered HTTP {response.status_code}: "
                                          "not a registry (API v2)")
            self._base, self._client = f"{scheme}://{self.host}", client
            return self._base
        raise errdefs.Unavailable(failure or f"registry {self.domain} cannot be reached")

    def ping(self) -> None:
        """Check that the registry answers and accepts the credentials (``docker login``)."""
        self.base()
        if self._challenge is None:
            return
        response = self.request("GET", "/v2/", scope="", what="logging in")
        response.close()
        if response.status_code != 200:
            raise self.fail(response, "logging in")

    def _authorization(self, scope: str) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            if self.credentials.username or self.credentials.password:
                return self.credentials.basic()
            return None
        if challenge.scheme == "bearer":
            if self.credentials.registry_token:
                return "Bearer " + self.credentials.registry_token
            token = self._tokens.get(scope)
            if token is None:
                token, lifetime = fetch_token(self._client, challenge, scope, self.credentials, self.domain)
                self._tokens.put(scope, token, lifetime)
            return "Bearer " + token
        return None

    # -- requests -------------------------------------------------------------------------------

    def _with_retries(self, send: Callable[[], httpx.Response], what: str, *,
                      repeatable: bool = True) -> httpx.Response:
        attempts = self.options.attempts if repeatable else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = send()
            except httpx.ConnectError as exc:
                if last:
                    raise errdefs.Unavailable(f"registry {self.domain}: cannot connect ({what}): {_cause(exc)}") \
                        from None
            except httpx.TimeoutException as exc:
                if last:
                    raise errdefs.Unavailable(f"registry {self.domain}: timed out ({what}): {_cause(exc)}") from None
            except httpx.HTTPError as exc:
                if last:
                    raise errdefs.Unavailable(f"registry {self.domain}: {what} failed: {_cause(exc)}") from None
            else:
                if response.status_code < 500 or last:
                    return response
                response.close()
            log.debug("registry %s: %s failed, attempt %d", self.domain, what, attempt + 1)
            time.sleep(_BACKOFF[min(attempt, len(_BACKOFF) - 1)])
        raise AssertionError("unreachable")

    def request(self, method: str, path_or_url: str, *, scope: str, what: str, headers: dict[str, str] | None = None,
                body: Body = None, stream: bool = False, params: dict[str, str] | None = None) -> httpx.Response:
        """One request with auth and retries; any status is returned (the caller judges)."""
        url = httpx.URL(urljoin(self.base() + "/", path_or_url))
        if params:  # merged: an upload location carries its own query (_state=...)
            url = url.copy_merge_params(params)
        repeatable = not callable(body)
        for round in range(2):
            request_headers = dict(headers or {})
            authorization = self._authorization(scope)
            if authorization is not None:
                request_headers["Authorization"] = authorization

            def send() -> httpx.Response:
                content = body() if callable(body) else body
                request = self._client.build_request(method, url, headers=request_headers, content=content)
                return self._client.send(request, stream=stream)

            response = self._with_retries(send, what, repeatable=repeatable)
            if response.status_code != 401 or round == 1:
                return response
            challenge = parse_challenge(response.headers.get("www-authenticate", ""))
            if challenge is None or (challenge == self._challenge and authorization is not None
                                     and challenge.scheme == "basic"):
                return response
            response.close()
            self._challenge = challenge
        return response

    def fail(self, response: httpx.Response, what: str, *, not_found: str | None = None) -> errdefs.LaminaError:
        """The error for an unexpected answer (the body is read for the registry's message)."""
        try:
            response.read()
        except httpx.HTTPError:
            pass
        response.close()
        detail = _registry_errors(response)
        status = response.status_code
        if status == 404:
            return errdefs.NotFound(not_found + ": " + detail if not_found else f"registry {self.domain}: {what}: {detail}")
        if status == 401:
            who = "without credentials" if self.credentials.empty else f"as {self.credentials.username!r}"
            return errdefs.Unauthorized(f"registry {self.domain}: {what}: authentication required "
                                        f"({who}): {detail}")
        if status == 403:
            return errdefs.Forbidden(f"registry {self.domain}: {what}: denied: {detail}")
        if status in (400, 405, 409, 412, 413, 415, 416, 422):
            return errdefs.InvalidArgument(f"registry {self.domain}: {what}: {detail}")
        return errdefs.Unavailable(f"registry {self.domain}: {what}: {detail}")

    # -- the API --------------------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str, accept: Iterable[str]) -> tuple[bytes, str]:
        """(body, media type) of a manifest by tag or digest, checked against the
        ``Docker-Content-Digest`` the registry announces (a digest reference is checked by
        the caller too)."""
        what = f"fetching manifest {repository}:{reference}" if ":" not in reference \
            else f"fetching manifest {repository}@{reference}"
        response = self.request("GET", f"/v2/{repository}/manifests/{reference}", scope=_scope(repository),
                                what=what, headers={"Accept": ", ".join(accept)})
        if response.status_code != 200:
            separator = "@" if ":" in reference else ":"
            raise self.fail(response, what,
                            not_found=f"manifest for {self.domain}/{repository}{separator}{reference} not found")
        if len(response.content) > 4 << 20:
            raise errdefs.InvalidArgument(f"registry {self.domain}: manifest {repository}:{reference} is over 4 MiB")
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        announced = response.headers.get("docker-content-digest", "")
        if announced.startswith("sha256:"):
            import hashlib

            actual = "sha256:" + hashlib.sha256(response.content).hexdigest()
            if actual != announced:
                raise errdefs.DataLoss(f"registry {self.domain}: {what}: manifest verification failed: the "
                                       f"registry announced {announced}, the content hashes to {actual}")
        return response.content, media_type

    def open_blob(self, repository: str, digest: str) -> BlobReader:
        what = f"fetching blob {digest} of {repository}"
        response = self.request("GET", f"/v2/{repository}/blobs/{digest}", scope=_scope(repository), what=what,
                                stream=True)
        if response.status_code != 200:
            raise self.fail(response, what, not_found=f"registry {self.domain}: blob {digest} of {repository} not found")
        return BlobReader(response, f"registry {self.domain}: blob {digest} of {repository}")

    def read_blob(self, repository: str, digest: str, limit: int = 64 << 20) -> bytes:
        with self.open_blob(repository, digest) as reader:
            data = reader.read(limit + 1)
            rest = reader.read(1)
        if len(data) > limit or rest:
            raise errdefs.InvalidArgument(f"registry {self.domain}: blob {digest} of {repository} is over {limit} bytes")
        return data

    def blob_size(self, repository: str, digest: str, *, push: bool = False) -> int | None:
        """The size of a blob the repository has (HEAD), None when it lacks it."""
        what = f"checking blob {digest} in {repository}"
        response = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", scope=_scope(repository, push), what=what)
        response.close()
        if response.status_code == 200:
            return int(response.headers.get("content-length") or 0)
        if response.status_code == 404:
            return None
        raise self.fail(response, what)

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Cross-repository mount; True when the registry mounted it (201)."""
        what = f"mounting blob {digest} from {source} into {repository}"
        scope = f"{_scope(repository, True)} {_scope(source)}"
        response = self.request("POST", f"/v2/{repository}/blobs/uploads/", scope=scope, what=what,
                                params={"mount": digest, "from": source})
        response.close()
        if response.status_code == 201:
            return True
        if response.status_code == 202:  # not mounted: an upload session was opened instead; drop it
            location = response.headers.get("location")
            if location:
                self.request("DELETE", location, scope=_scope(repository, True), what=what).close()
            return False
        raise self.fail(response, what)

    def upload_blob(self, repository: str, body: Callable[[], Iterable[bytes]], digest: Callable[[], str]) -> str:
        """Upload a blob: POST a session, PATCH the streamed content (hashed by the caller while
        it streams), then PUT ``?digest=`` with what ``digest()`` says once the stream ended."""
        what = f"uploading a blob to {repository}"
        scope = _scope(repository, True)
        response = self.request("POST", f"/v2/{repository}/blobs/uploads/", scope=scope, what=what)
        response.close()
        if response.status_code != 202:
            raise self.fail(response, what)
        location = response.headers.get("location") or ""
        response = self.request("PATCH", location, scope=scope, what=what, body=body,
                                headers={"Content-Type": "application/octet-stream"})
        response.close()
        if response.status_code != 202:
            raise self.fail(response, what)
        location = response.headers.get("location") or location
        value = digest()
        response = self.request("PUT", location, scope=scope, what=f"committing blob {value} to {repository}",
                                params={"digest": value})
        response.close()
        if response.status_code != 201:
            raise self.fail(response, f"committing blob {value} to {repository}")
        return value

    def upload_bytes(self, repository: str, data: bytes, digest: str) -> None:
        """A monolithic upload (POST, then PUT with the content and ``?digest=``)."""
        what = f"uploading blob {digest} to {repository}"
        scope = _scope(repository, True)
        response = self.request("POST", f"/v2/{repository}/blobs/uploads/", scope=scope, what=what)
        response.close()
        if response.status_code != 202:
            raise self.fail(response, what)
        response = self.request("PUT", response.headers.get("location") or "", scope=scope, what=what,
                                params={"digest": digest}, body=data,
                                headers={"Content-Type": "application/octet-stream"})
        response.close()
        if response.status_code != 201:
            raise self.fail(response, what)

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str | None:
        what = f"pushing manifest {repository}:{reference}"
        response = self.request("PUT", f"/v2/{repository}/manifests/{reference}", scope=_scope(repository, True),
                                what=what, body=body, headers={"Content-Type": media_type})
        response.close()
        if response.status_code not in (200, 201, 202):
            raise self.fail(response, what)
        return response.headers.get("docker-content-digest")

    def catalog(self, limit: int = 1000) -> list[str]:
        what = "listing repositories"
        response = self.request("GET", "/v2/_catalog", scope="registry:catalog:*", what=what,
                                params={"n": str(limit)})
        if response.status_code != 200:
            raise self.fail(response, what)
        repositories = response.json().get("repositories") or []
        return [name for name in repositories if isinstance(name, str)]


def _scope(repository: str, push: bool = False) -> str:
    return f"repository:{repository}:{'pull,push' if push else 'pull'}"


def _cause(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text

