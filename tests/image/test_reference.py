"""References: Docker's own test vectors (distribution/reference) and properties (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lamina import errdefs
from lamina.digest import Digest
from lamina.image.reference import (
    Reference,
    is_image_id,
    parse,
    parse_any_reference,
    parse_docker_reference,
    parse_normalized_named,
    trim_name,
    validate_tag,
    with_default_tag,
    with_digest,
    with_tag,
)

F64 = "f" * 64
DIGEST = "sha256:" + F64
REDIS = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"

# ---- distribution/reference TestReferenceParse (reference.Parse: grammar, no normalisation)
# (input, error substring or None, name, domain, tag, digest)
PARSE_VECTORS = [
    ("test_com", None, "test_com", "", None, None),
    ("test.com:tag", None, "test.com", "", "tag", None),
    ("test.com:5000", None, "test.com", "", "5000", None),
    ("test.com/repo:tag", None, "test.com/repo", "test.com", "tag", None),
    ("test:5000/repo", None, "test:5000/repo", "test:5000", None, None),
    ("test:5000/repo:tag", None, "test:5000/repo", "test:5000", "tag", None),
    (f"test:5000/repo@{DIGEST}", None, "test:5000/repo", "test:5000", None, DIGEST),
    (f"test:5000/repo:tag@{DIGEST}", None, "test:5000/repo", "test:5000", "tag", DIGEST),
    ("", "repository name must have at least one component", None, None, None, None),
    (":justtag", "invalid reference format", None, None, None, None),
    (f"@{DIGEST}", "invalid reference format", None, None, None, None),
    ("repo@sha256:" + "f" * 34, "invalid", None, None, None, None),
    (f"validname@invaliddigest:{F64}", "unsupported digest algorithm", None, None, None, None),
    ("Uppercase:tag", "repository name must be lowercase", None, None, None, None),
    ("test:5000/Uppercase/lowercase:tag", "repository name must be lowercase", None, None, None, None),
    ("lowercase:Uppercase", None, "lowercase", "", "Uppercase", None),
    ("domain/" + "a" * 256 + ":tag", "repository name must not be more than 255 characters", None, None, None, None),
    ("a/" * 127 + "a:tag-puts-this-over-max", None, "a/" * 127 + "a", "a", "tag-puts-this-over-max", None),
    ("aa/asdf$$^/aa", "invalid reference format", None, None, None, None),
    ("sub-dom1.foo.com/bar/baz/quux", None, "sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", None, None),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", None, "sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com",
     "some-long-tag", None),
    ("b.gcr.io/test.example.com/my-app:test.example.com", None, "b.gcr.io/test.example.com/my-app", "b.gcr.io",
     "test.example.com", None),
    ("xn--n3h.com/myimage:xn--n3h.com", None, "xn--n3h.com/myimage", "xn--n3h.com", "xn--n3h.com", None),
    (f"xn--7o8h.com/myimage:xn--7o8h.com@{DIGEST}", None, "xn--7o8h.com/myimage", "xn--7o8h.com", "xn--7o8h.com",
     DIGEST),
    ("foo_bar.com:8080", None, "foo_bar.com", "", "8080", None),
    ("foo/foo_bar.com:8080", None, "foo/foo_bar.com", "foo", "8080", None),
    ("192.168.1.1", None, "192.168.1.1", "", None, None),
    ("192.168.1.1:tag", None, "192.168.1.1", "", "tag", None),
    ("192.168.1.1:5000", None, "192.168.1.1", "", "5000", None),
    ("192.168.1.1/repo", None, "192.168.1.1/repo", "192.168.1.1", None, None),
    ("192.168.1.1:5000/repo", None, "192.168.1.1:5000/repo", "192.168.1.1:5000", None, None),
    ("192.168.1.1:5000/repo:5050", None, "192.168.1.1:5000/repo", "192.168.1.1:5000", "5050", None),
    ("[2001:db8::1]", "invalid reference format", None, None, None, None),
    ("[2001:db8::1]:5000", "invalid reference format", None, None, None, None),
    ("[2001:db8::1]:tag", "invalid reference format", None, None, None, None),
    ("[2001:db8::1]/repo", None, "[2001:db8::1]/repo", "[2001:db8::1]", None, None),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", None, "[2001:db8:1:2:3:4:5:6]/repo", "[2001:db8:1:2:3:4:5:6]", "tag", None),
    ("[2001:db8::1]:5000/repo", None, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", None, None),
    ("[2001:db8::1]:5000/repo:tag", None, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "tag", None),
    (f"[2001:db8::1]:5000/repo@{DIGEST}", None, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", None, DIGEST),
    (f"[2001:db8::1]:5000/repo:tag@{DIGEST}", None, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "tag", DIGEST),
    ("[2001:db8::]:5000/repo", None, "[2001:db8::]:5000/repo", "[2001:db8::]:5000", None, None),
    ("[::1]:5000/repo", None, "[::1]:5000/repo", "[::1]:5000", None, None),
    ("[fe80::1%eth0]:5000/repo", "invalid reference format", None, None, None, None),
    ("[fe80::1%@invalidzone]:5000/repo", "invalid reference format", None, None, None, None),
    ("example.com/" + "a" * 255 + ":tag", None, "example.com/" + "a" * 255, "example.com", "tag", None),
]


@pytest.mark.parametrize(
    "text, error, name, domain, tag, digest", PARSE_VECTORS,
    ids=[f"parse {vector[0][:60]!r} {'fails' if vector[1] else 'works'}" for vector in PARSE_VECTORS])
def test_parse_matches_dockers_vectors(text, error, name, domain, tag, digest) -> None:
    if error is not None:
        with pytest.raises(errdefs.InvalidArgument, match=error.replace("$", r"\$")):
            parse(text)
        return
    reference = parse(text)
    assert reference.string() == text
    assert reference.name == name
    assert reference.domain == domain
    assert reference.tag == tag
    assert reference.digest == digest


VALID_NORMALIZED = [
    "docker/docker", "library/debian", "debian", "localhost/library/debian", "localhost/debian",
    "LOCALDOMAIN/library/debian", "LOCALDOMAIN/debian", "docker.io/docker/docker",
    "docker.io/library/debian", "docker.io/debian", "index.docker.io/docker/docker",
    "index.docker.io/library/debian", "index.docker.io/debian", "127.0.0.1:5000/docker/docker",
    "127.0.0.1:5000/library/debian", "127.0.0.1:5000/debian", "192.168.0.1", "192.168.0.1:80",
    "192.168.0.1:8/debian", "192.168.0.2:25000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "[fc00::1]:5000/docker",
    "[fc00::1]:5000/docker/docker", "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
    "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "Docker/docker", "DOCKER/docker",
    # TestValidateRemoteName
    "docker-rules/docker", "docker---rules/docker", "doc/docker", "d/docker", "jess/t", "dock__er/docker",
]
INVALID_NORMALIZED = [
    "https://github.com/docker/docker", "docker/Docker", "-docker", "-docker/docker",
    "-docker.io/docker/docker", "docker///docker", "docker.io/docker/Docker",
    "docker.io/docker///docker", "[fc00::1]", "[fc00::1]:5000", "fc00::1:5000/debian",
    "[fe80::1%eth0]:5000/debian", "[2001:db8:3:4::192.0.2.33]:5000/debian",
    "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    # TestValidateRemoteName
    "docker-/docker", "-docker-/docker", "____/____", "_docker/_docker", "dock..er/docker",
    "dock_.er/docker", "dock-.er/docker", "docker/",
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_" * 4 + "/docker",
]


@pytest.mark.parametrize("text", VALID_NORMALIZED, ids=[f"{text[:50]} is a valid name" for text in VALID_NORMALIZED])
def test_docker_accepts_these_names_and_so_do_we(text: str) -> None:
    assert isinstance(parse_normalized_named(text), Reference)


@pytest.mark.parametrize("text", INVALID_NORMALIZED,
                         ids=[f"{text[:50]} is not a valid name" for text in INVALID_NORMALIZED])
def test_docker_refuses_these_names_and_so_do_we(text: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        parse_normalized_named(text)


# TestParseRepositoryInfo: (path, familiar name, full name, ambiguous spelling, domain)
REPOSITORY_INFO = [
    ("fooo", "localhost/fooo", "localhost/fooo", "localhost/fooo", "localhost"),
    ("fooo/bar", "localhost/fooo/bar", "localhost/fooo/bar", "localhost/fooo/bar", "localhost"),
    ("fooo", "LOCALDOMAIN/fooo", "LOCALDOMAIN/fooo", "LOCALDOMAIN/fooo", "LOCALDOMAIN"),
    ("fooo/bar", "LOCALDOMAIN/fooo/bar", "LOCALDOMAIN/fooo/bar", "LOCALDOMAIN/fooo/bar", "LOCALDOMAIN"),
    ("fooo/bar", "fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar", "docker.io"),
    ("library/ubuntu", "ubuntu", "docker.io/library/ubuntu", "library/ubuntu", "docker.io"),
    ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", None, "docker.io"),
    ("other/library", "other/library", "docker.io/other/library", None, "docker.io"),
    ("private/moonbase", "127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", None, "127.0.0.1:8000"),
    ("privatebase", "127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", None, "127.0.0.1:8000"),
    ("private/moonbase", "example.com/private/moonbase", "example.com/private/moonbase", None, "example.com"),
    ("privatebase", "example.com/privatebase", "example.com/privatebase", None, "example.com"),
    ("private/moonbase", "example.com:8000/private/moonbase", "example.com:8000/private/moonbase", None,
     "example.com:8000"),
    ("privatebasee", "example.com:8000/privatebasee", "example.com:8000/privatebasee", None, "example.com:8000"),
    ("library/ubuntu-12.04-base", "ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base",
     "index.docker.io/library/ubuntu-12.04-base", "docker.io"),
    ("library/foo", "foo", "docker.io/library/foo", "docker.io/foo", "docker.io"),
    ("library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar", None, "docker.io"),
    ("store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar", None, "docker.io"),
    ("bar", "Foo/bar", "Foo/bar", None, "Foo"),
    ("bar", "FOO/bar", "FOO/bar", None, "FOO"),
]


@pytest.mark.parametrize(
    "path, familiar, full, ambiguous, domain", REPOSITORY_INFO,
    ids=[f"{info[1]} is {info[2]}" for info in REPOSITORY_INFO])
def test_every_spelling_of_a_repository_normalises_to_the_same_name(path, familiar, full, ambiguous, domain) -> None:
    for spelling in filter(None, (familiar, full, ambiguous)):
        reference = parse_normalized_named(spelling)
        assert reference.familiar_name == familiar
        assert reference.string() == full
        assert reference.domain == domain
        assert reference.path == path


SPLIT_HOSTNAME = [
    ("test.com/foo", "test.com", "foo"), ("test_com/foo", "docker.io", "test_com/foo"),
    ("docker/migrator", "docker.io", "docker/migrator"), ("test.com:8080/foo", "test.com:8080", "foo"),
    ("test-com:8080/foo", "test-com:8080", "foo"), ("foo", "docker.io", "library/foo"),
    ("xn--n3h.com/foo", "xn--n3h.com", "foo"), ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
    ("docker.io/foo", "docker.io", "library/foo"), ("docker.io/library/foo", "docker.io", "library/foo"),
    ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
]


@pytest.mark.parametrize("text, domain, path", SPLIT_HOSTNAME,
                         ids=[f"{text} is on {domain}" for text, domain, _ in SPLIT_HOSTNAME])
def test_domain_and_path_are_split_like_docker(text: str, domain: str, path: str) -> None:
    reference = parse_normalized_named(text)
    assert (reference.domain, reference.path) == (domain, path)


ANY_REFERENCE = [
    ("redis", "docker.io/library/redis"),
    ("redis:latest", "docker.io/library/redis:latest"),
    ("docker.io/library/redis:latest", "docker.io/library/redis:latest"),
    (f"redis@{REDIS}", f"docker.io/library/redis@{REDIS}"),
    (f"docker.io/library/redis@{REDIS}", f"docker.io/library/redis@{REDIS}"),
    ("dmcgowan/myapp", "docker.io/dmcgowan/myapp"),
    ("dmcgowan/myapp:latest", "docker.io/dmcgowan/myapp:latest"),
    ("docker.io/mcgowan/myapp:latest", "docker.io/mcgowan/myapp:latest"),
    (f"dmcgowan/myapp@{REDIS}", f"docker.io/dmcgowan/myapp@{REDIS}"),
    (REDIS[7:], REDIS),
    (REDIS, REDIS),
    (REDIS[7:-1], "docker.io/library/" + REDIS[7:-1]),
    ("dbcc1", "docker.io/library/dbcc1"),
    # a digest that is too short is not an id: Docker reads it as repository "sha256", tag "abc"
    ("sha256:abc", "docker.io/library/sha256:abc"),
]


@pytest.mark.parametrize("text, equivalent", ANY_REFERENCE,
                         ids=[f"{text[:30]} means {equivalent[:40]}" for text, equivalent in ANY_REFERENCE])
def test_any_reference_is_an_id_or_a_name_like_docker(text: str, equivalent: str) -> None:
    parsed = parse_any_reference(text)
    if isinstance(parsed, Reference):
        assert parsed.string() == equivalent
        assert parsed == parse(equivalent)
    else:
        assert isinstance(parsed, Digest)
        assert parsed == equivalent


DOCKER_REF = [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:latest", "docker.io/library/busybox:latest"),
    ("busybox@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
     "docker.io/library/busybox@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox:latest", "docker.io/library/busybox:latest"),
    ("library/busybox:latest", "docker.io/library/busybox:latest"),
    ("gcr.io/library/busybox", "gcr.io/library/busybox:latest"),
    ("gcr.io/library/busybox:latest@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
     "gcr.io/library/busybox@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"),
]


@pytest.mark.parametrize("text, expected", DOCKER_REF, ids=[f"{text[:40]} becomes {expected[:45]}" for text, expected in DOCKER_REF])
def test_docker_reference_gets_a_default_tag_and_prefers_the_digest(text: str, expected: str) -> None:
    assert parse_docker_reference(text).string() == expected


def test_a_reference_with_tag_and_digest_keeps_both_and_familiarises() -> None:
    short = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
    reference = parse_normalized_named(short)
    assert reference.string() == "docker.io/library/" + short
    assert reference.tag == "latest" and reference.digest is not None
    assert reference.familiar_string() == short


def test_uppercase_repository_error_names_the_repository_like_docker() -> None:
    with pytest.raises(errdefs.InvalidArgument) as caught:
        parse_normalized_named("Busybox")
    assert str(caught.value) == "invalid reference format: repository name (library/Busybox) must be lowercase"


def test_a_64_hex_string_is_refused_as_a_repository_name() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="cannot specify 64-byte hexadecimal strings"):
        parse_normalized_named(F64)
    assert is_image_id(F64) and not is_image_id(F64.upper())


def test_no_default_tag_until_asked_and_then_only_without_a_digest() -> None:
    bare = parse_normalized_named("busybox")
    assert bare.tag is None and bare.is_name_only
    assert with_default_tag(bare).familiar_string() == "busybox:latest"
    digested = parse_normalized_named(f"busybox@{DIGEST}")
    assert with_default_tag(digested) == digested
    tagged = parse_normalized_named("busybox:1")
    assert with_default_tag(tagged) == tagged


def test_tag_validation_follows_the_tag_grammar() -> None:
    assert validate_tag("v1.2_3-rc") == "v1.2_3-rc"
    assert validate_tag("a" * 128)
    for bad in ("", "-x", ".x", "a" * 129, "tag with space", "tàg", "x\n"):
        with pytest.raises(errdefs.InvalidArgument):
            validate_tag(bad)


def test_with_tag_with_digest_and_trim_name() -> None:
    reference = parse_normalized_named("localhost:5000/app")
    assert with_tag(reference, "2").familiar_string() == "localhost:5000/app:2"
    assert with_digest(reference, DIGEST).string() == f"localhost:5000/app@{DIGEST}"
    assert trim_name(with_tag(reference, "2")) == reference
    with pytest.raises(errdefs.InvalidArgument):
        with_digest(reference, "sha256:abc")


def test_a_trailing_newline_is_not_part_of_a_valid_reference() -> None:
    # Python's "$" would accept it; Docker's anchored RE2 pattern does not.
    for text in ("busybox\n", "busybox:latest\n", "busybox:lat\nest"):
        with pytest.raises(errdefs.InvalidArgument):
            parse_normalized_named(text)


def test_a_hub_path_that_looks_like_a_host_does_not_survive_familiarising_in_docker_either() -> None:
    reference = parse_normalized_named("docker.io/0.0/app")
    assert reference.familiar_string() == "0.0/app"
    assert parse_normalized_named("0.0/app").domain == "0.0"


def test_unicode_word_characters_are_not_tag_characters() -> None:
    with pytest.raises(errdefs.InvalidArgument):
        parse_normalized_named("busybox:versión")


# ---- properties

_path_components = st.from_regex(r"[a-z0-9]{1,8}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,8}){0,2}", fullmatch=True)
_paths = st.lists(_path_components, min_size=1, max_size=4).map("/".join)
_domain_component = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
_domains = st.one_of(
    st.just("docker.io"),
    st.just("localhost"),
    st.builds(lambda name, port: f"localhost:{port}", st.none(), st.integers(1, 65535)),
    st.lists(_domain_component, min_size=2, max_size=4).map(".".join),
    st.builds(lambda host, port: f"{host}:{port}", _domain_component, st.integers(0, 99999)),
    st.builds(lambda port: f"[::1]:{port}", st.integers(1, 65535)),
    st.from_regex(r"[A-Z][a-zA-Z0-9]{0,5}", fullmatch=True),
)
_tags = st.none() | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digests = st.none() | st.from_regex(r"[a-f0-9]{64}", fullmatch=True).map(lambda hex_: Digest("sha256:" + hex_))


@st.composite
def references(draw: st.DrawFn) -> Reference:
    domain = draw(_domains)
    path = draw(_paths)
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    assume(len(path) <= 255)
    return Reference(domain=domain, path=path, tag=draw(_tags), digest=draw(_digests))


@settings(max_examples=300, deadline=None)
@given(references())
def test_full_and_familiar_strings_round_trip(reference: Reference) -> None:
    assert parse_normalized_named(reference.string()) == reference
    # Docker quirks, kept: a familiar name that is 64 hex characters reads as an image id, and
    # a Docker Hub path whose first element looks like a host ("0.0/x") reads as that host.
    assume(not is_image_id(reference.familiar_name))
    first = reference.familiar_name.split("/", 1)[0]
    assume(not (reference.domain == "docker.io" and "/" in reference.familiar_name
                and ("." in first or first == "localhost")))
    assert parse_normalized_named(reference.familiar_string()) == reference
    assert parse_normalized_named(reference.familiar_name) == trim_name(reference)


_reference_alphabet = st.sampled_from(list("abcAZ019-_.:/@[]%$ \n") + ["sha256:", "localhost", "docker.io/"])


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(_reference_alphabet, max_size=30).map("".join)))
def test_parsing_any_text_gives_a_reference_or_invalid_argument_and_normalising_is_idempotent(text: str) -> None:
    try:
        reference = parse_normalized_named(text)
    except errdefs.InvalidArgument:
        pass
    else:
        assert parse_normalized_named(reference.string()) == reference
    try:
        parse_any_reference(text)
    except errdefs.InvalidArgument:
        pass
    try:
        parse(text)
    except errdefs.InvalidArgument:
        pass


# distribution's anchored name pattern, written out independently of lamina's grammar pieces
_ANCHORED_NAME = (r"(?:((?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9]"
                  r"[a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?)/)?"
                  r"([a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*)")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(list("ab0Z9-_.:/@[]") + ["sha256:" + "c" * 64]), min_size=1, max_size=16).map("".join))
def test_the_reference_expression_splits_domain_and_path_as_the_anchored_name_pattern(text: str) -> None:
    """parse() takes domain and path from the reference expression's own groups; Docker
    matches the name again with its anchored name pattern: both give the same split."""
    import re

    try:
        reference = parse(text)
    except errdefs.InvalidArgument:
        return
    name = f"{reference.domain}/{reference.path}" if reference.domain else reference.path
    split = re.fullmatch(_ANCHORED_NAME, name)
    assert split is not None and ((split.group(1) or ""), split.group(2)) == (reference.domain, reference.path)
