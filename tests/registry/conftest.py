"""A real registry for the tests: Debian's ``docker-registry`` (distribution v2) on 127.0.0.1.

``registry`` is plain HTTP; ``tls_registry`` serves TLS with a certificate for 127.0.0.1 made
by a CA the fixture creates with ``openssl`` and asks for htpasswd Basic auth (user
``lamina``, password :data:`PASSWORD`).  Each has its own port (a free one, chosen by binding
port 0) and storage directory, written into a config YAML; the process is killed and every file
removed at teardown, also when the test failed.  ``lamina`` runs the real CLI on a temp data
root (``lamina.env`` is the environment it gets: ``HOME`` a temp dir, so ``~/.docker`` is the
test's).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import ssl
import urllib.request
from collections.abc import Iterator

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "fixtures", "busybox-docker-archive.tar")
FIXTURE_IMAGE_ID = "sha256:657c25c9202d852638f95a0f738d8582b72f68be37cf845fec02f34fb0f8d6ed"
FIXTURE_DIFF_ID = "sha256:a8cc1059680454e58aa2d5a4ebdebe9e83b1ae7b769ab1d0221b9637448b0b51"
LAMINA = os.path.join(os.path.dirname(sys.executable), "lamina")
USER = "lamina"
PASSWORD = "s3cret-pa55"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (make test installs it with apt)")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RegistryProcess:
    """One ``docker-registry`` process; ``host`` is ``127.0.0.1:<port>``."""

    def __init__(self, directory: str, *, tls: bool = False, auth: list[str] | None = None) -> None:
        self.directory = directory
        self.auth = auth or []
        self.storage = os.path.join(directory, "storage")
        self.tls = tls
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.ca = os.path.join(directory, "ca.crt")
        self.certs_d = os.path.join(directory, "certs.d")
        os.makedirs(self.storage)
        if tls:
            self._make_certificates()
            htpasswd = subprocess.run([need("htpasswd"), "-Bbn", USER, PASSWORD], check=True,
                                      capture_output=True).stdout
            with open(os.path.join(directory, "htpasswd"), "wb") as handle:
                handle.write(htpasswd)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _make_certificates(self) -> None:
        openssl = need("openssl")
        d = self.directory
        run = lambda *args: subprocess.run([openssl, *args], check=True, capture_output=True)  # noqa: E731
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=lamina test CA",
            "-keyout", f"{d}/ca.key", "-out", self.ca)
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", f"{d}/server.key",
            "-out", f"{d}/server.csr")
        with open(f"{d}/ext.cnf", "w") as handle:
            handle.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        run("x509", "-req", "-in", f"{d}/server.csr", "-CA", self.ca, "-CAkey", f"{d}/ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{d}/ext.cnf", "-out", f"{d}/server.crt")

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            "  secret: lamina-test-secret",
        ]
        if self.tls:
            lines += ["  tls:", f"    certificate: {self.directory}/server.crt", f"    key: {self.directory}/server.key",
                      "auth:", "  htpasswd:", "    realm: lamina-test", f"    path: {self.directory}/htpasswd"]
        lines += self.auth
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 20.0) -> None:
        binary = need("docker-registry")
        for _ in range(5):  # another process may take the free port first: pick again
            self.port = _free_port()
            config = os.path.join(self.directory, "config.yml")
            with open(config, "w") as handle:
                handle.write(self._config())
            self.log = open(os.path.join(self.directory, "registry.log"), "wb")  # noqa: SIM115
            self.process = subprocess.Popen([binary, "serve", config], stdout=self.log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
            if self._wait_ready(timeout):
                if self.tls:
                    os.makedirs(os.path.join(self.certs_d, self.host))
                    shutil.copy(self.ca, os.path.join(self.certs_d, self.host, "ca.crt"))
                return
            self.stop()
        raise AssertionError(f"docker-registry did not start: {self.output()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        scheme = "https" if self.tls else "http"
        context = ssl.create_default_context(cafile=self.ca) if self.tls else None
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                urllib.request.urlopen(f"{scheme}://{self.host}/v2/", timeout=2, context=context)
                return True
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        return False

    def output(self) -> str:
        try:
            with open(os.path.join(self.directory, "registry.log"), "rb") as handle:
                return handle.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None
        log = getattr(self, "log", None)
        if log is not None:
            log.close()

    def blob_path(self, digest: str) -> str:
        hex_ = digest.split(":", 1)[1]
        return os.path.join(self.storage, "docker", "registry", "v2", "blobs", "sha256", hex_[:2], hex_, "data")


def _registry(tmp_path_factory, tls: bool) -> Iterator[RegistryProcess]:
    directory = str(tmp_path_factory.mktemp("registry-tls" if tls else "registry"))
    registry = RegistryProcess(directory, tls=tls)
    try:
        registry.start()
        yield registry
    finally:
        registry.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def registry(tmp_path_factory) -> Iterator[RegistryProcess]:
    yield from _registry(tmp_path_factory, tls=False)


@pytest.fixture
def tls_registry(tmp_path_factory) -> Iterator[RegistryProcess]:
    yield from _registry(tmp_path_factory, tls=True)


class Lamina:
    """The real ``lamina`` command on a temp data root and a temp ``HOME``."""

    def __init__(self, root: str, home: str) -> None:
        self.root = root
        self.env = {key: value for key, value in os.environ.items()
                    if key not in ("DOCKER_HOST", "LAMINA_HOST", "DOCKER_CONFIG", "LAMINA_DATA_ROOT")}
        self.env["HOME"] = home
        self.env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")

    def command(self) -> list[str]:
        return [LAMINA, "--data-root", self.root]

    def __call__(self, *args: str, input: bytes | None = None, check: bool = True,
                 env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([LAMINA, "--data-root", self.root, *args], input=input, capture_output=True,
                                timeout=timeout, env={**self.env, **(env or {})})
        if check and result.returncode != 0:
            raise AssertionError(f"lamina {' '.join(args)} exited {result.returncode}: "
                                 f"{result.stderr.decode(errors='replace')}")
        return result

    def inspect(self, name: str) -> dict:
        return json.loads(self("image", "inspect", name).stdout)[0]


@pytest.fixture
def lamina(tmp_path) -> Iterator[Lamina]:
    home = tmp_path / "home"
    home.mkdir()
    root = tmp_path / "root"
    yield Lamina(str(root), str(home))
    subprocess.run(["umount", "-R", str(root)], capture_output=True)


@pytest.fixture
def other_lamina(tmp_path) -> Iterator[Lamina]:
    """A second engine (its own data root) sharing nothing with ``lamina``."""
    home = tmp_path / "home2"
    home.mkdir()
    root = tmp_path / "root2"
    yield Lamina(str(root), str(home))
    subprocess.run(["umount", "-R", str(root)], capture_output=True)


def skopeo_push_fixture(registry: RegistryProcess, repository: str = "busybox:latest",
                        extra: tuple[str, ...] = ()) -> None:
    """Push the busybox fixture archive to ``registry`` with skopeo (gzip layers)."""
    skopeo = need("skopeo")
    subprocess.run([skopeo, "copy", "--dest-tls-verify=false", *extra, f"docker-archive:{FIXTURE}",
                    f"docker://{registry.host}/{repository}"], check=True, capture_output=True, timeout=120)


class TokenServer:
    """A small bearer-token endpoint for ``docker-registry``'s ``auth: token`` (RS256 JWTs with
    an ``x5c`` certificate the registry trusts; signed with ``openssl dgst``).  Anonymous
    requests get ``pull`` only; Basic ``lamina``/:data:`PASSWORD` gets what it asks for; a
    wrong password gets 401.  ``requests`` counts the tokens handed out."""

    ISSUER = "lamina-test-issuer"
    SERVICE = "lamina-test-registry"

    def __init__(self, directory: str) -> None:
        import base64
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        openssl = need("openssl")
        self.key = os.path.join(directory, "token.key")
        self.certificate = os.path.join(directory, "token.crt")
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=lamina token signer", "-keyout", self.key, "-out", self.certificate],
                       check=True, capture_output=True)
        der = subprocess.run([openssl, "x509", "-in", self.certificate, "-outform", "DER"], check=True,
                             capture_output=True).stdout
        self.requests: list[dict] = []
        server_self = self

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        def sign(claims: dict) -> str:
            header = {"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(der).decode()]}
            signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
            signature = subprocess.run([openssl, "dgst", "-sha256", "-sign", self.key], input=signing_input.encode(),
                                       check=True, capture_output=True).stdout
            return f"{signing_input}.{b64(signature)}"

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                header = self.headers.get("Authorization") or ""
                user = None
                if header.startswith("Basic "):
                    name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if (name, password) != (USER, PASSWORD):
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = name
                access = []
                for scope in query.get("scope", []):
                    kind, name, actions = scope.split(":")
                    granted = actions.split(",") if user else [a for a in actions.split(",") if a == "pull"]
                    access.append({"type": kind, "name": name, "actions": granted})
                server_self.requests.append({"user": user, "scopes": query.get("scope", [])})
                now = int(time.time())
                token = sign({"iss": TokenServer.ISSUER, "sub": user or "", "aud": query.get("service", [""])[0],
                              "exp": now + 600, "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(),
                              "access": access})
                body = json.dumps({"token": token, "expires_in": 600}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def registry_config(self) -> list[str]:
        return ["auth:", "  token:", f"    realm: {self.realm}", f"    service: {self.SERVICE}",
                f"    issuer: {self.ISSUER}", f"    rootcertbundle: {self.certificate}"]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token_registry(tmp_path_factory) -> Iterator[tuple[RegistryProcess, TokenServer]]:
    """A plain-HTTP registry that asks for bearer tokens from a :class:`TokenServer`."""
    directory = str(tmp_path_factory.mktemp("registry-token"))
    tokens = TokenServer(directory)
    registry = RegistryProcess(os.path.join(directory, "registry"), auth=tokens.registry_config())
    try:
        registry.start()
        yield registry, tokens
    finally:
        registry.stop()
        tokens.stop()
        shutil.rmtree(directory, ignore_errors=True)
