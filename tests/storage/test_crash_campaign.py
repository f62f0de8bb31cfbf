"""The real program killed at random moments during load, run, create, commit, rm, build and
rmi (``scripts/crash.py``, one short round): after each kill the next command and ``system
check`` find a clean store.  The long campaign is the same script with ``--kills 400``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.privileged

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "crash.py")


def test_kills_at_random_moments_leave_a_store_that_passes_system_check(tmp_path) -> None:
    process = subprocess.run([sys.executable, SCRIPT, "--kills", "14", "--seconds", "150", "--seed", "7",
                              "--root", str(tmp_path), "--json"], capture_output=True, timeout=300, check=False)
    assert process.returncode in (0, 1), process.stderr.decode()
    report = json.loads(process.stdout)
    assert report["kills"] >= 7, report
    assert report["problems"] == [], json.dumps(report, indent=2)
