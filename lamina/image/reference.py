"""Image references: Docker's grammar, normalisation and familiar forms.

This follows ``github.com/distribution/reference`` (v0.6, the version the Docker daemon
vendors) rule for rule, so a string lamina accepts is one Docker accepts and it names the
same repository::

    reference       := name [ ":" tag ] [ "@" digest ]
    name            := [domain "/"] remote-name
    domain          := host [":" port-number]
    host            := domain-name | "[" IPv6address "]"
    domain-name     := domain-component ["." domain-component]*
    domain-component:= /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    remote-name     := path-component ["/" path-component]*
    path-component  := /[a-z0-9]+/ [separator /[a-z0-9]+/]*
    separator       := /[_.]|__|[-]+/
    tag             := /[\\w][\\w.-]{0,127}/          (ASCII \\w)
    digest          := algorithm ":" hex            (hex at least 32 characters)

Vocabulary:

- **name**: ``domain/path``, always with a domain after normalisation
  (``docker.io/library/busybox``).
- **familiar name**: what the Docker UI shows: ``docker.io/`` dropped, and ``library/``
  dropped when nothing else follows (``busybox``, ``user/app``, ``localhost:5000/app``).
- **normalisation** (:func:`parse_normalized_named`): the first path element is a domain only
  when it is ``localhost`` or contains ``.`` or ``:`` or an uppercase letter; otherwise the
  name is on Docker Hub (``docker.io``) and a single-element path gets ``library/``.
  ``index.docker.io`` is rewritten to ``docker.io``.

Limits: the path (without the domain) is at most 255 characters (Docker checks the path only,
so ``example.com/`` + 255 characters is valid); a tag at most 128.  A bare 64-character hex
string is never a repository name (it would be ambiguous with an image id).

Errors are :class:`lamina.errdefs.InvalidArgument` with Docker's messages.
"""

from __future__ import annotations

import functools
import re

from lamina import errdefs
from lamina.digest import Digest, is_hex_id
from lamina.records import dataclass

__all__ = [
    "Reference",
    "DEFAULT_DOMAIN",
    "LEGACY_DEFAULT_DOMAIN",
    "registry_domain",
    "OFFICIAL_REPOSITORY_PREFIX",
    "DEFAULT_TAG",
    "REPOSITORY_NAME_MAX_LENGTH",
    "parse",
    "parse_normalized_named",
    "parse_any_reference",
    "parse_docker_reference",
    "with_default_tag",
    "with_tag",
    "with_digest",
    "trim_name",
    "validate_tag",
    "is_image_id",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPOSITORY_PREFIX = "library/"
DEFAULT_TAG = "latest"
REPOSITORY_NAME_MAX_LENGTH = 255

# The grammar, built from the same pieces as distribution/reference's regexp.go.  Python's
# ``\w`` is Unicode-aware, so the tag uses an explicit ASCII class; every match is a
# ``fullmatch`` (``$`` would accept a trailing newline).
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALPHANUMERIC + r"(?:" + _SEPARATOR + _ALPHANUMERIC + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6_ADDRESS = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = r"(?:" + _DOMAIN_NAME + r"|" + _IPV6_ADDRESS + r")"
_DOMAIN_AND_PORT = _HOST + r"(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

# groups: domain, path, tag, digest (distribution's anchored name pattern splits the name the
# same way: both try the domain first, and the first split that reaches the name's end wins)
_REFERENCE = (r"(?:(" + _DOMAIN_AND_PORT + r")/)?(" + _REMOTE_NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST
              + r"))?")


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    """The grammar's expressions, compiled on first use (a listing from its index parses none)."""
    return re.compile(pattern)


_ERR_INVALID_FORMAT = "invalid reference format"
_ERR_NAME_EMPTY = "repository name must have at least one component"
_ERR_NAME_UPPERCASE = "invalid reference format: repository name must be lowercase"
_ERR_NAME_TOO_LONG = f"repository name must not be more than {REPOSITORY_NAME_MAX_LENGTH} characters"


@dataclass(frozen=True)
class Reference:
    """A parsed, normalised image reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """The full repository name, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def familiar_name(self) -> str:
        """The name as the Docker UI shows it, e.g. ``busybox`` or ``localhost:5000/app``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_REPOSITORY_PREFIX):
            remainder = self.path[len(OFFICIAL_REPOSITORY_PREFIX):]
            if "/" not in remainder:
                return remainder
        return self.path

    def _suffix(self) -> str:
        suffix = ""
        if self.tag is not None:
            suffix += ":" + self.tag
        if self.digest is not None:
            suffix += "@" + self.digest
        return suffix

    def string(self) -> str:
        """The full form, e.g. ``docker.io/library/busybox:latest``."""
        return self.name + self._suffix()

    def familiar_string(self) -> str:
        """The familiar form, e.g. ``busybox:latest`` or ``busybox@sha256:...``."""
        return self.familiar_name + self._suffix()

    @property
    def is_name_only(self) -> bool:
        return self.tag is None and self.digest is None

    def __str__(self) -> str:
        return self.string()


def _invalid(message: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(message)


def _split_docker_domain(name: str) -> tuple[str, str]:
    """Split a familiar name into (domain, remainder) like Docker's splitDockerDomain."""
    maybe_domain, slash, maybe_remainder = name.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, OFFICIAL_REPOSITORY_PREFIX + name
    if maybe_domain == "localhost":
        domain, remainder = maybe_domain, maybe_remainder
    elif maybe_domain == LEGACY_DEFAULT_DOMAIN:
        domain, remainder = DEFAULT_DOMAIN, maybe_remainder
    elif "." in maybe_domain or ":" in maybe_domain:
        domain, remainder = maybe_domain, maybe_remainder
    elif maybe_domain.lower() != maybe_domain:
        # Uppercase namespaces are not allowed, so an uppercase first element is a host name.
        domain, remainder = maybe_domain, maybe_remainder
    else:
        domain, remainder = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPOSITORY_PREFIX + remainder
    return domain, remainder


def _parse_digest(text: str) -> Digest:
    try:
        return Digest(text)
    except errdefs.InvalidArgument as exc:
        raise _invalid(f"invalid reference format: {exc}") from exc


def parse(text: str) -> Reference:
    """Docker's ``reference.Parse``: the grammar only, no normalisation (the domain is ``""``
    when the text has none).  Digest-only references are refused."""
    if not isinstance(text, str):
        raise _invalid(_ERR_INVALID_FORMAT)
    if text == "":
        raise _invalid(_ERR_NAME_EMPTY)
    reference = _compiled(_REFERENCE)
    match = reference.fullmatch(text)
    if match is None:
        lowered = text.lower()
        if lowered != text and reference.fullmatch(lowered) is not None:
            raise _invalid(_ERR_NAME_UPPERCASE)
        raise _invalid(_ERR_INVALID_FORMAT)
    domain, path, tag, digest_text = match.group(1) or "", match.group(2), match.group(3), match.group(4)
    if len(path) > REPOSITORY_NAME_MAX_LENGTH:
        raise _invalid(_ERR_NAME_TOO_LONG)
    digest = _parse_digest(digest_text) if digest_text else None
    return Reference(domain=domain, path=path, tag=tag or None, digest=digest)


def parse_normalized_named(text: str) -> Reference:
    """Parse what a user typed (``busybox``, ``user/app:1``, ``localhost:5000/x@sha256:...``)
    into a fully qualified reference.  No default tag is added (see :func:`with_default_tag`).
    """
    if not isinstance(text, str):
        raise _invalid(_ERR_INVALID_FORMAT)
    if is_hex_id(text):
        raise _invalid(f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_docker_domain(text)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise _invalid(f"invalid reference format: repository name ({remote}) must be lowercase")
    return parse(domain + "/" + remainder)


def parse_any_reference(text: str) -> Reference | Digest:
    """A bare 64-hex string or a valid ``algorithm:hex`` digest is an image id (returned as a
    :class:`~lamina.digest.Digest`); anything else is parsed as a normalised name."""
    if is_hex_id(text):
        return Digest("sha256:" + text)
    try:
        return Digest(text)
    except errdefs.InvalidArgument:
        pass
    return parse_normalized_named(text)


def parse_docker_reference(text: str) -> Reference:
    """Docker's ``ParseDockerRef``: normalised, ``:latest`` added to a bare name, and a tag
    dropped when a digest is present (the digest wins)."""
    reference = parse_normalized_named(text)
    if reference.digest is not None and reference.tag is not None:
        return Reference(domain=reference.domain, path=reference.path, digest=reference.digest)
    return with_default_tag(reference)


def is_image_id(text: str) -> bool:
    """True for a full 64-character lowercase hex id."""
    return is_hex_id(text)


def with_default_tag(reference: Reference) -> Reference:
    """Add ``:latest`` when the reference has neither a tag nor a digest."""
    if reference.tag is None and reference.digest is None:
        return Reference(domain=reference.domain, path=reference.path, tag=DEFAULT_TAG)
    return reference


def validate_tag(tag: str) -> str:
    """Return ``tag`` when it is a valid tag (``[\\w][\\w.-]{0,127}``, ASCII)."""
    if not isinstance(tag, str) or _compiled(_TAG).fullmatch(tag) is None:
        raise _invalid(f"invalid tag format: {tag!r}")
    return tag


def with_tag(reference: Reference, tag: str) -> Reference:
    """The same repository (and digest, if any) with ``tag``."""
    return Reference(domain=reference.domain, path=reference.path, tag=validate_tag(tag),
                     digest=reference.digest)


def with_digest(reference: Reference, digest: str) -> Reference:
    """The same repository (and tag, if any) with ``digest``."""
    return Reference(domain=reference.domain, path=reference.path, tag=reference.tag,
                     digest=_parse_digest(digest))


def registry_domain(server: str) -> str:
    """The registry host of a server address as a user or a credentials file writes it:
    ``https://index.docker.io/v1/`` -> ``docker.io``; ``http://localhost:5000`` -> ``localhost:5000``."""
    text = server.strip()
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = text.split("/", 1)[0]
    if text in ("", LEGACY_DEFAULT_DOMAIN, "registry-1.docker.io", DEFAULT_DOMAIN):
        return DEFAULT_DOMAIN
    return text


def trim_name(reference: Reference) -> Reference:
    """Only the repository: tag and digest removed."""
    return Reference(domain=reference.domain, path=reference.path)
