"""lamina.log: loggers that load logging only when a record must be emitted."""

from __future__ import annotations

import logging
import subprocess
import sys

from lamina.log import get_logger


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return result.stdout + result.stderr


def test_records_below_the_threshold_never_load_logging() -> None:
    out = _run(
        "import sys\n"
        "from lamina import log\n"
        "log.configure(30, lambda: print('set up'))\n"
        "logger = log.get_logger('lamina.test')\n"
        "logger.debug('quiet %s', 1); logger.info('quiet')\n"
        "print('loaded' if 'logging' in sys.modules else 'not loaded')\n"
        "logger.warning('loud %s', 2)\n"
        "print('loaded' if 'logging' in sys.modules else 'not loaded')\n")
    assert out.splitlines()[:3] == ["not loaded", "set up", "loaded"]
    assert "loud 2" in out and "quiet" not in out


def test_the_command_line_handler_formats_what_is_emitted() -> None:
    out = _run(
        "from lamina.cli.main import _configure_logging\n"
        "from lamina.log import get_logger\n"
        "_configure_logging('info')\n"
        "get_logger('lamina.x').debug('hidden')\n"
        "get_logger('lamina.x').info('shown %d', 3)\n")
    assert out.strip() == "INFO lamina.x: shown 3"


def test_once_logging_is_loaded_every_record_is_forwarded_with_its_caller(caplog) -> None:
    logger = get_logger("lamina.test.forward")
    with caplog.at_level(logging.DEBUG, logger="lamina.test.forward"):
        logger.debug("one %s", "arg")
        logger.exception("failed", exc_info=False)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(10, "one arg"), (40, "failed")]
    assert {r.funcName for r in caplog.records} == {
        "test_once_logging_is_loaded_every_record_is_forwarded_with_its_caller"}
    assert get_logger("lamina.test.forward") is logger
