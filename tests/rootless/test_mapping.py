"""The id mapping of the rootless user namespace, from /etc/subuid-format files (no root)."""

from __future__ import annotations

import pytest

from lamina.rootless import IdRange, id_mapping, subordinate_ranges


def test_ranges_are_found_by_name_or_by_uid_in_file_order(tmp_path) -> None:
    path = tmp_path / "subuid"
    path.write_text("other:100000:65536\nalice:165536:65536\n# comment\n1500:300000:1000\n"
                    "alice:bad:10\nalice:400000:0\nalice:500000:10\n")
    assert subordinate_ranges(str(path), "alice", 1500) == [
        IdRange(165536, 65536), IdRange(300000, 1000), IdRange(500000, 10)]


def test_a_missing_file_has_no_ranges(tmp_path) -> None:
    assert subordinate_ranges(str(tmp_path / "absent"), "alice", 1000) == []


@pytest.mark.parametrize("ranges, expected", [
    ([IdRange(100000, 65536)], ["0", "1000", "1", "1", "100000", "65536"]),
    ([IdRange(100000, 10), IdRange(200000, 5)], ["0", "1000", "1", "1", "100000", "10", "11", "200000", "5"]),
], ids=["one range follows the user's own id", "ranges are laid end to end"])
def test_the_mapping_puts_the_user_at_zero(ranges, expected) -> None:
    assert id_mapping(1000, ranges) == expected
