"""The exit-code table."""

from __future__ import annotations

import pytest

from lamina.cli.errors import EXIT_CODES_HELP, exit_code_for_status


@pytest.mark.parametrize("status, code", [
    (200, 0), (201, 0), (204, 0),
    (0, 9),
    (400, 3), (404, 4), (409, 5), (412, 6), (401, 6), (403, 6), (405, 6), (499, 6),
    (500, 1), (502, 1), (501, 7), (503, 8),
])
def test_exit_code_for_status(status: int, code: int) -> None:
    assert exit_code_for_status(status) == code


def test_usage_error_code_is_not_used_by_any_status() -> None:
    assert 2 not in {exit_code_for_status(status) for status in range(200, 600)}


def test_help_documents_every_code() -> None:
    for code in range(10):
        assert f"  {code}  " in EXIT_CODES_HELP
