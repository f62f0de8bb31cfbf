"""lamina.idmap without root: --userns-remap values, /etc/subuid ranges, id translation."""

from __future__ import annotations

import pytest

from lamina import errdefs
from lamina.idmap import IDMap, IdentityMapping, parse_remap, read_ranges


@pytest.mark.parametrize("value, expected", [
    ("default", ("dockremap", "dockremap")),
    ("someone", ("someone", "someone")),
    ("someone:staff", ("someone", "staff")),
    ("1000:1000", ("1000", "1000")),
], ids=["default", "a user", "a user and a group", "numeric ids"])
def test_remap_values(value, expected) -> None:
    assert parse_remap(value) == expected


@pytest.mark.parametrize("value", ["", ":", "user:", ":group", "a:b:c", "default:staff", " user"],
                         ids=["empty", "colon", "no group", "no user", "three parts", "default with a group",
                              "blank"])
def test_bad_remap_values_are_invalid(value) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        parse_remap(value)


def test_ranges_by_name_or_uid_in_file_order_from_container_id_0(tmp_path) -> None:
    path = tmp_path / "subuid"
    path.write_text("# comment\nother:100000:65536\nme:200000:1000\n1234:300000:500\n\nme:400000:10\n")
    assert read_ranges(str(path), "me", 1234) == (IDMap(0, 200000, 1000), IDMap(1000, 300000, 500),
                                                 IDMap(1500, 400000, 10))
    assert read_ranges(str(path), "nobody-here", None) == ()
    assert read_ranges(str(tmp_path / "missing"), "me", None) == ()
    path.write_text("me:x:10\n")
    with pytest.raises(errdefs.InvalidArgument, match="line 1"):
        read_ranges(str(path), "me", None)


def test_translation_both_ways_and_json() -> None:
    mapping = IdentityMapping((IDMap(0, 100000, 1000), IDMap(1000, 300000, 10)), (IDMap(0, 200000, 65536),))
    assert mapping.root_pair() == (100000, 200000)
    assert mapping.to_host(5, 6) == (100005, 200006)
    assert mapping.to_host(1005, 0) == (300005, 200000)
    assert mapping.to_host(1010, 0) is None
    assert mapping.to_container(100005, 200006) == (5, 6)
    assert mapping.to_container(0, 0) == (65534, 65534)  # outside: the overflow id, as the kernel shows it
    assert mapping.size() == (1010, 65536)
    assert mapping.uid_map_text() == "0 100000 1000\n1000 300000 10\n"
    assert IdentityMapping.from_json(mapping.to_json()) == mapping
    with pytest.raises(errdefs.DataLoss):
        IdentityMapping.from_json({"UIDMaps": [{"ContainerID": 0}], "GIDMaps": []})
