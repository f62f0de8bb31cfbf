"""Several ``lamina`` CLI processes on one data root at once (``scripts/hammer.py``, small):
every command succeeds and nothing is left.  The long campaign is the same script with
``--workers 8 --operations 50``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.privileged

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "hammer.py")


def test_cli_processes_hammering_one_data_root_break_nothing_and_leave_nothing(tmp_path) -> None:
    process = subprocess.run([sys.executable, SCRIPT, "--workers", "3", "--operations", "3", "--timeout", "60",
                              "--root", str(tmp_path), "--json"], capture_output=True, timeout=240, check=False)
    assert process.returncode in (0, 1), process.stderr.decode()
    report = json.loads(process.stdout)
    assert report["failures"] == [] and report["leftovers"] == [], json.dumps(report, indent=2)
