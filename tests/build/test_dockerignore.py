"""``.dockerignore``: Docker's matcher vectors (moby patternmatcher), Go's filepath.Match
vectors, the file format, and the walk (what the Docker client would send)."""

from __future__ import annotations

import os
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.build.dockerignore import (BadPattern, DockerIgnore, contains_wildcards, go_clean, go_match,
                                       read_patterns)

# (pattern, path, excluded) -- MatchesOrParentMatches with one pattern.
SINGLE = [
    ("**", "file", True), ("**", "file/", True), ("**/", "file", True), ("**", "dir/file", True),
    ("**/**", "dir/file", True), ("dir/**", "dir/file", True), ("dir/**", "dir/dir2/file", True),
    ("**/dir", "dir", True), ("**/dir", "dir/file", True), ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True), ("**file", "file", True), ("**file", "dir/file", True),
    ("**/file", "dir/file", True), ("**file", "dir/dir/file", True), ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True), ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True), ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True), ("**/**/*.txt", "file.txt", True), ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True), ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True), ("a/*.txt**", "a/file.txt", True), ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True), ("a[b-d]e", "aae", False), ("a[^b-d]e", "aze", True), (".*", ".foo", True),
    (".*", "foo", False), ("abc.def", "abcdef", False), ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False), ("abc?def", "abcZdef", True), ("abc?def", "abcdef", False),
    ("a\\\\", "a\\", True), ("**/foo/bar", "foo/bar", True), ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False), ("abc/**", "abc/def", True), ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True), ("**/.foo", "bar.foo", False), ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False), ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\*b", "a*b", True),
    # filepath.Match vectors through the matcher (a parent directory match counts)
    ("abc", "abc", True), ("*", "abc", True), ("*c", "abc", True), ("a*", "a", True), ("a*", "ab/c", True),
    ("a*/b", "abc/b", True), ("a*/b", "a/c/b", False), ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False), ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False), ("ab[^c]", "abc", False), ("ab[^e-g]", "abc", True),
    ("a?b", "a☺b", True), ("a[^a]b", "a☺b", True), ("a???b", "a☺b", False), ("[a-ζ]*", "α", True),
    ("*[a-ζ]", "A", False), ("a?b", "a/b", False), ("a*b", "a/b", False), ("[\\]a]", "]", True),
    ("[\\-]", "-", True), ("[x\\-]", "-", True), ("[x\\-]", "z", False), ("*x", "xxx", True),
    ("docs/", "docs/README.md", True), ("/abs/path", "abs/path/x", True),
]


@pytest.mark.parametrize("pattern,path,excluded", SINGLE,
                         ids=[f"{pattern} against {path} is {'excluded' if excluded else 'kept'}"
                              for pattern, path, excluded in SINGLE])
def test_single_pattern_vectors(pattern: str, path: str, excluded: bool) -> None:
    assert DockerIgnore(read_patterns(pattern)).matches(path) is excluded


MULTI = [
    ("an exception after a wildcard wins", ["**", "!util/docker/web"], "util/docker/web/foo", False),
    ("a later exclusion wins again", ["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    ("an exception before the pattern loses", ["!fileutils.go", "*.go"], "fileutils.go", True),
    ("a pattern then its exception", ["*.go", "!fileutils.go"], "fileutils.go", False),
    ("a folder then an exception inside", ["docs", "!docs/README.md"], "docs/README.md", False),
    ("a folder with slash then an exception", ["docs/", "!docs/README.md"], "docs/README.md", False),
    ("a folder wildcard then an exception", ["docs/*", "!docs/README.md"], "docs/README.md", False),
    ("a wildcard exception", ["**", "!dist/*.whl"], "dist/a.whl", False),
    ("the context root is never excluded", ["*"], ".", False),
    ("no patterns exclude nothing", [], "any/path", False),
]


@pytest.mark.parametrize("patterns,path,excluded", [case[1:] for case in MULTI], ids=[case[0] for case in MULTI])
def test_multi_pattern_vectors(patterns: list[str], path: str, excluded: bool) -> None:
    assert DockerIgnore(patterns).matches(path) is excluded


BAD = ["[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[", "!"]


@pytest.mark.parametrize("pattern", BAD, ids=[f"{pattern!r} is malformed" for pattern in BAD])
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(BadPattern):
        DockerIgnore([pattern])


GO_MATCH = [
    ("abc", "abc", True), ("*", "abc", True), ("a*", "ab/c", False), ("a*/b", "abc/b", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True), ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("ab[c]", "abc", True), ("ab[b-d]", "abc", True), ("ab[e-g]", "abc", False), ("ab[^b-d]", "abc", False),
    ("a\\*b", "ab", False), ("a[^a][^a][^a]b", "a☺b", False), ("[x\\-]", "x", True), ("[\\-x]", "a", False),
    ("*.txt", "dir/a.txt", False), ("*/*.txt", "dir/a.txt", True), ("**", "a/b", False), ("", "", True),
    ("x[/]y", "x/y", True),
]


@pytest.mark.parametrize("pattern,name,matched", GO_MATCH,
                         ids=[f"go match {pattern!r} {name!r}" for pattern, name, _ in GO_MATCH])
def test_go_filepath_match(pattern: str, name: str, matched: bool) -> None:
    assert go_match(pattern, name) is matched


def test_go_match_validates_the_rest_after_a_mismatch() -> None:
    with pytest.raises(BadPattern):
        go_match("x*[", "abc")


def test_read_patterns_format() -> None:
    text = "\ufeff# comment\n  # not a comment (leading space)\n\n  spaced  \n/abs\n./dot/../x/\n! keep\n!/rooted\r\n"
    assert read_patterns(text.encode()) == ["# not a comment (leading space)", "spaced", "abs", "x", "!keep",
                                            "!rooted"]


def test_go_clean() -> None:
    cases = {"": ".", "a/../..": "..", "/../a": "/a", "a//b/./c/": "a/b/c", "//a": "/a", "./": "."}
    assert {path: go_clean(path) for path in cases} == cases


def test_contains_wildcards() -> None:
    assert contains_wildcards("*.go") and contains_wildcards("a?") and contains_wildcards("[ab]")
    assert not contains_wildcards("a\\*b") and not contains_wildcards("plain/path")


def _tree(root: pathlib.Path, paths: list[str]) -> None:
    for path in paths:
        target = root / path
        if path.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path)


WALKS = [
    ("no patterns send everything", [], ["a/", "a/b", "c"], ["a", "a/b", "c"]),
    ("an excluded directory is not entered", ["a"], ["a/", "a/b", "c"], ["c"]),
    ("an exception below an excluded directory is sent", ["a", "!a/keep"], ["a/keep", "a/drop", "c"],
     ["a/keep", "c"]),
    ("a double-star exception does not reopen a directory", ["a", "!**/keep"], ["a/keep", "c"], ["c"]),
    ("a wildcard exclusion with an exception", ["*.log", "!important.log"], ["x.log", "important.log", "y"],
     ["important.log", "y"]),
    ("nested exclusions", ["**/node_modules"], ["node_modules/x", "src/node_modules/y", "src/a"], ["src", "src/a"]),
    ("everything but one directory", ["*", "!src"], ["src/a", "src/b/c", "other"], ["src", "src/a", "src/b", "src/b/c"]),
]


@pytest.mark.parametrize("patterns,paths,expected", [case[1:] for case in WALKS], ids=[case[0] for case in WALKS])
def test_walk(tmp_path: pathlib.Path, patterns: list[str], paths: list[str], expected: list[str]) -> None:
    _tree(tmp_path, paths)
    ignore = DockerIgnore(patterns)
    walked = [relative for relative, _info in ignore.walk(tmp_path)]
    assert walked == expected
    # included() agrees with the walk for every path on disk.
    for directory, directories, files in os.walk(tmp_path):
        for name in directories + files:
            relative = os.path.relpath(os.path.join(directory, name), tmp_path)
            assert ignore.included(relative) is (relative in expected), relative


def test_walk_does_not_enter_excluded_directories(tmp_path: pathlib.Path) -> None:
    _tree(tmp_path, ["big/x", "small"])
    (tmp_path / "big").chmod(0)  # unreadable: entering it would fail for a non-root walker
    try:
        assert [relative for relative, _ in DockerIgnore(["big"]).walk(tmp_path)] == ["small"]
    finally:
        (tmp_path / "big").chmod(0o755)


def test_walk_reports_symlinks_without_following(tmp_path: pathlib.Path) -> None:
    _tree(tmp_path, ["real/file"])
    (tmp_path / "link").symlink_to("real")
    assert [relative for relative, _ in DockerIgnore().walk(tmp_path)] == ["link", "real", "real/file"]


PATTERN_PARTS = st.sampled_from(["a", "b", "*", "**", "?", "/", ".", "..", "!", "[a-c]", "\\*", " ", "x.txt"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(PATTERN_PARTS, max_size=6).map("".join), max_size=5),
       st.lists(st.sampled_from(["a", "b", "x.txt", "c"]), min_size=1, max_size=4).map("/".join))
def test_matcher_raises_only_bad_pattern(patterns: list[str], path: str) -> None:
    try:
        ignore = DockerIgnore(read_patterns("\n".join(patterns)))
    except BadPattern:
        return
    excluded = ignore.matches(path)
    assert isinstance(excluded, bool)
    if not ignore.has_exclusions and excluded:
        assert not ignore.included(path)
