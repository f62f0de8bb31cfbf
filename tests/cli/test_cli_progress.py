"""Rendering JSON-message streams: plain lines, rich bars on a terminal, in-band errors."""

from __future__ import annotations

import io

from lamina.cli.progress import error_exit_code, render_stream

MESSAGES = [
    {"status": "Loading layer", "id": "abcd1234", "progressDetail": {"current": 0, "total": 100}},
    {"status": "Loading layer", "id": "abcd1234", "progressDetail": {"current": 50, "total": 100}},
    {"status": "Loading layer", "id": "abcd1234", "progressDetail": {"current": 100, "total": 100}},
    {"status": "Loading layer", "id": "ef567890", "progressDetail": {"current": 10, "total": 10}},
    {"stream": "Loaded image: busybox:latest\n"},
    {"status": "sha256:1111"},
    {"aux": {"ID": "sha256:1111"}},
]


def test_plain_output_prints_each_status_change_once() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert render_stream(iter(MESSAGES), out, err) == 0
    assert out.getvalue() == ("abcd1234: Loading layer\nef567890: Loading layer\n"
                              "Loaded image: busybox:latest\nsha256:1111\n")
    assert err.getvalue() == ""


def test_an_error_message_ends_rendering_with_its_exit_code() -> None:
    out, err = io.StringIO(), io.StringIO()
    messages = [MESSAGES[0], {"errorDetail": {"message": "No such image: x", "code": 404}, "error": "No such image: x"},
                {"stream": "never shown\n"}]
    assert render_stream(iter(messages), out, err) == 4
    assert err.getvalue() == "Error response from daemon: No such image: x\n"
    assert "never shown" not in out.getvalue()


def test_error_codes_without_a_status_are_generic() -> None:
    assert error_exit_code({"error": "x"}) == 1
    assert error_exit_code({"error": "x", "errorDetail": {"message": "x"}}) == 1
    assert error_exit_code({"error": "x", "errorDetail": {"message": "x", "code": 409}}) == 5


def test_terminal_output_draws_bars_and_keeps_text() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert render_stream(iter(MESSAGES), out, err, terminal=True) == 0
    text = out.getvalue()
    assert "abcd1234: Loading layer" in text
    assert "Loaded image: busybox:latest" in text
    assert "\x1b[" in text  # drawn with terminal control sequences


def test_terminal_output_reports_errors_on_stderr() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = render_stream(iter([MESSAGES[0], {"error": "broken", "errorDetail": {"message": "broken", "code": 500}}]),
                         out, err, terminal=True)
    assert code == 1
    assert err.getvalue() == "Error response from daemon: broken\n"
