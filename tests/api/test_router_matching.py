"""The router's literal matcher agrees with the route regexes (compile_pattern) on every path."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from lamina.api.router import ROUTES, _Matcher, compile_pattern

_PIECES = st.sampled_from(["/", "images", "containers", "json", "abc", "x/y", "{", "}", "\n", "", "get",
                           "checkpoints", "/json", "exec", "start", "networks", "build", "prune"])


@given(st.lists(_PIECES, max_size=8), st.sampled_from([route.pattern for route in ROUTES]))
def test_literal_matching_equals_the_regex(pieces: list[str], pattern: str) -> None:
    path = "".join(pieces)
    found = compile_pattern(pattern).match(path)
    assert _Matcher(pattern).match(path) == (None if found is None else found.groupdict())


@given(st.sampled_from([route.pattern for route in ROUTES]), st.text(min_size=1, max_size=12))
@example("/containers/{id}", "0\n")  # a trailing newline: "$" matched before it, "\Z" does not
def test_every_pattern_matches_its_own_instances(pattern: str, value: str) -> None:
    path = pattern.replace("{checkpoint}", value).replace("{id}", value).replace("{name}", value)
    found = compile_pattern(pattern).match(path)
    assert _Matcher(pattern).match(path) == (None if found is None else found.groupdict())


def test_every_route_names_a_handler_that_exists() -> None:
    for route in ROUTES:
        assert callable(route.resolve()), route


_VERSION_PIECES = st.sampled_from(["/", "/v", "v", "1", "45", ".", "\n", "a", "\u0663", "images", "/json", ""])


@given(st.lists(_VERSION_PIECES, max_size=8))
@example(["/v", "1.45", "/", "json", "\n"])  # "$" matches before a final newline, which the match leaves out
@example(["/v", ".", "/", "json"])
def test_the_version_prefix_is_split_as_the_regex_split_it(pieces: list[str]) -> None:
    import re

    from lamina.api.router import _versioned

    path = "".join(pieces)
    found = re.match(r"^/v([0-9][0-9.]*)(/.*)$", path)
    assert _versioned(path) == (None if found is None else (found.group(1), found.group(2)))
