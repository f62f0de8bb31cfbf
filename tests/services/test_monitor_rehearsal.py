"""The monitor template's rehearsal (lamina.container.monitor.bootstrap.rehearse) on a real
engine's monitor context: it must leave nothing behind in the template that runs it."""

from __future__ import annotations

import os
import signal

from lamina.container.monitor.bootstrap import REHEARSAL_ID, rehearse
from lamina.services.containers.common import monitor_context


def _tree(root: str) -> list[str]:
    found = []
    for directory, names, files in os.walk(root):
        found += [os.path.join(directory, name) for name in names + files]
    return sorted(found)


def test_a_rehearsal_creates_no_file_opens_no_descriptor_and_changes_no_signal(engine) -> None:
    context = monitor_context(engine.containers.monitor_recipe.arguments)
    stores = context.stores()
    container_id = engine.create("true")
    files = _tree(engine.root)
    descriptors = sorted(os.listdir("/proc/self/fd"))
    dispositions = {number: signal.getsignal(number) for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGPIPE)}
    wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup)

    rehearse(context, stores)

    assert _tree(engine.root) == files
    assert sorted(os.listdir("/proc/self/fd")) == descriptors
    assert {number: signal.getsignal(number) for number in dispositions} == dispositions
    assert signal.set_wakeup_fd(-1) == wakeup
    signal.set_wakeup_fd(wakeup)
    assert not stores.store.exists(REHEARSAL_ID)
    assert stores.store.get(container_id).state.get("Running") is not True
