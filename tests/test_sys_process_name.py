"""lamina.sys.set_process_name: the name ps shows, and the one it replaced."""

from __future__ import annotations

import subprocess
import sys

_PROGRAM = """
from lamina.sys import set_process_name
had = set_process_name("lamina-test-name-too-long")
print(had)
print(open("/proc/self/comm").read().strip())
print(set_process_name(had))
print(open("/proc/self/comm").read().strip())
"""


def test_a_name_is_set_truncated_as_the_kernel_keeps_it_and_given_back() -> None:
    done = subprocess.run([sys.executable, "-c", _PROGRAM], capture_output=True, text=True, timeout=60, check=True)
    had, named, replaced, back = done.stdout.split("\n")[:4]
    assert named == "lamina-test-nam"  # 15 bytes
    assert replaced == named
    assert back == had and had != named
