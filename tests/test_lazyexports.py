"""lamina.lazyexports: a package's names imported from their homes when first read."""

from __future__ import annotations

import subprocess
import sys

import pytest

import lamina.archive
import lamina.container.monitor


def test_a_name_is_imported_when_read_and_then_set_on_the_package():
    code = ("import sys, lamina.archive as archive\n"
            "assert 'lamina.archive.tarstream' not in sys.modules\n"
            "reader = archive.TarReader\n"
            "assert 'lamina.archive.tarstream' in sys.modules and vars(archive)['TarReader'] is reader\n"
            "assert 'lamina.archive.changes' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_public_name_has_a_home_and_dir_lists_them():
    for package in (lamina.archive, lamina.container.monitor):
        assert set(package.__all__) <= set(dir(package))
        for name in package.__all__:
            assert getattr(package, name) is not None


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        lamina.container.monitor.Nope  # noqa: B018
    assert not hasattr(lamina.archive, "Nope")
