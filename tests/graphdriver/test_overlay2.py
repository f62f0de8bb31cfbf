"""overlay2 specifics: Docker's on-disk layout, mount options, metadata, check, probe."""

from __future__ import annotations

import errno
import os
import re

import pytest

from lamina import errdefs
from lamina import mount as lmount
from lamina.graphdriver import common
from lamina.graphdriver.overlay2 import LINK_DIR, MAX_DEPTH, Overlay2Driver, native_diff_problem, probe
from lamina.mount import Mount

from . import layers as L

pytestmark = pytest.mark.privileged

SHORT_ID = re.compile(r"^[A-Z2-7]{26}$")


def read(path: str) -> str:
    with open(path, "r", encoding="ascii") as handle:
        return handle.read()


def chain(driver: Overlay2Driver, depth: int) -> list[str]:
    ids: list[str] = []
    for _ in range(depth):
        id = L.new_id()
        driver.create(id, ids[-1] if ids else None)
        ids.append(id)
    return ids


def test_short_links_and_lower_files_follow_dockers_layout(overlay2):
    home = overlay2.home
    base, child, grandchild = chain(overlay2, 3)
    links = {}
    for id in (base, child, grandchild):
        short_id = read(f"{home}/{id}/link")
        assert SHORT_ID.match(short_id), short_id  # no newline either
        assert os.readlink(f"{home}/{LINK_DIR}/{short_id}") == f"../{id}/diff"
        assert os.path.samefile(f"{home}/{LINK_DIR}/{short_id}", f"{home}/{id}/diff")
        links[id] = short_id
    assert not os.path.exists(f"{home}/{base}/lower") and not os.path.exists(f"{home}/{base}/work")
    assert read(f"{home}/{child}/lower") == f"l/{links[base]}"
    assert read(f"{home}/{grandchild}/lower") == f"l/{links[child]}:l/{links[base]}"
    assert os.stat(f"{home}/{child}/work").st_mode & 0o777 == 0o700
    assert os.path.exists(f"{home}/{base}/committed") and os.path.exists(f"{home}/{child}/committed")
    assert not os.path.exists(f"{home}/{grandchild}/committed")
    assert sorted(os.listdir(f"{home}/{LINK_DIR}")) == sorted(links.values())
    assert overlay2.check() == []


def test_remove_deletes_the_short_link(overlay2):
    base, child = chain(overlay2, 2)
    short_id = read(f"{overlay2.home}/{child}/link")
    overlay2.remove(child)
    assert not os.path.lexists(f"{overlay2.home}/{LINK_DIR}/{short_id}")
    assert not os.path.exists(f"{overlay2.home}/{child}")
    assert overlay2.check() == []


def test_mounts_are_data_with_short_relative_lowers(overlay2):
    base, child, top = chain(overlay2, 3)
    home = overlay2.home
    assert overlay2.mounts(base) == [Mount(type="bind", source=f"{home}/{base}/diff", options=("bind",))]
    (mount,) = overlay2.mounts(top)
    index = ("index=off",) if os.path.exists("/sys/module/overlay/parameters/index") else ()
    assert mount.type == "overlay" and mount.chdir == home
    assert mount.options == index + (f"lowerdir={read(f'{home}/{top}/lower')}", f"upperdir={home}/{top}/diff",
                                      f"workdir={home}/{top}/work")
    # a layer with children is mounted read-only: its own diff becomes the top lower
    (committed,) = overlay2.mounts(child)
    own = read(f"{home}/{child}/link")
    assert committed.options == index + (f"lowerdir=l/{own}:{read(f'{home}/{child}/lower')}",)


def test_mount_options_of_120_layers_fit_a_page(overlay2):
    ids = chain(overlay2, 121)
    (mount,) = overlay2.mounts(ids[-1])
    _flags, _propagation, data = mount.flags_and_data()
    assert len(data) < lmount.PAGE_SIZE
    lowerdir = next(option for option in mount.options if option.startswith("lowerdir="))
    assert len(lowerdir.split(":")) == 120


def test_long_home_paths_switch_upper_and_work_to_relative(tmp_path):
    home = str(tmp_path / ("x" * 200) / ("y" * 200) / "overlay2")
    if probe(home) is not None:
        pytest.skip("overlay2 unusable here")
    driver = Overlay2Driver(home)
    try:
        ids = chain(driver, MAX_DEPTH + 1)
        (mount,) = driver.mounts(ids[-1])
        assert f"upperdir={ids[-1]}/diff" in mount.options and f"workdir={ids[-1]}/work" in mount.options
        assert len(mount.flags_and_data()[2]) < lmount.PAGE_SIZE
        path = driver.get(ids[-1])
        with open(os.path.join(path, "written"), "w") as handle:
            handle.write("x")
        driver.put(ids[-1])
        assert os.path.exists(f"{home}/{ids[-1]}/diff/written")
    finally:
        lmount.unmount_all_under(str(tmp_path))


def test_depth_beyond_dockers_limit_is_refused(overlay2):
    ids = chain(overlay2, MAX_DEPTH + 1)
    with pytest.raises(errdefs.FailedPrecondition, match="more than 128 layers"):
        overlay2.create(L.new_id(), ids[-1])


def test_metadata_paths_like_docker_inspect(overlay2):
    base, child, top = chain(overlay2, 3)
    home = overlay2.home
    assert overlay2.metadata(base) == {"UpperDir": f"{home}/{base}/diff", "WorkDir": f"{home}/{base}/work",
                                       "MergedDir": f"{home}/{base}/merged"}
    assert overlay2.metadata(top) == {
        "LowerDir": f"{home}/{child}/diff:{home}/{base}/diff",
        "UpperDir": f"{home}/{top}/diff", "WorkDir": f"{home}/{top}/work", "MergedDir": f"{home}/{top}/merged",
    }


def test_check_finds_broken_and_stray_links(overlay2):
    base, child = chain(overlay2, 2)
    home = overlay2.home
    base_link = read(f"{home}/{base}/link")
    os.unlink(f"{home}/{LINK_DIR}/{base_link}")
    os.symlink("../nowhere/diff", f"{home}/{LINK_DIR}/AAAAAAAAAAAAAAAAAAAAAAAAAA")
    with open(f"{home}/{LINK_DIR}/stray-file", "w"):
        pass
    problems = "\n".join(overlay2.check())
    assert f"overlay2 layer {base}: short link l/{base_link} is missing" in problems
    assert f"overlay2 layer {child}: lower file names l/{base_link}, which is missing or broken" in problems
    assert "short link l/AAAAAAAAAAAAAAAAAAAAAAAAAA is broken" in problems
    assert "l/stray-file is not a symbolic link" in problems
    os.rename(f"{home}/{child}/diff", f"{home}/{child}/diff.moved")
    assert f"overlay2 layer {child}: diff directory is missing" in "\n".join(overlay2.check())


def test_get_put_count_references_and_remove_the_mount_point(overlay2):
    base, child = chain(overlay2, 2)
    merged = f"{overlay2.home}/{child}/merged"
    assert overlay2.get(base) == f"{overlay2.home}/{base}/diff"  # a base layer needs no mount
    overlay2.put(base)
    assert overlay2.get(child) == merged and overlay2.get(child) == merged
    assert lmount.is_mountpoint(merged)
    overlay2.put(child)
    assert lmount.is_mountpoint(merged)
    overlay2.put(child)
    assert not lmount.is_mountpoint(merged) and not os.path.exists(merged)
    with pytest.raises(errdefs.FailedPrecondition, match="not mounted"):
        overlay2.put(child)


def test_a_layer_with_children_mounts_read_only(overlay2):
    base, middle = chain(overlay2, 2)
    path = overlay2.get(middle)
    with open(os.path.join(path, "written-before-a-child"), "w"):
        pass
    overlay2.put(middle)
    overlay2.create(L.new_id(), middle)
    path = overlay2.get(middle)
    assert os.listdir(path) == ["written-before-a-child"]
    try:
        with open(os.path.join(path, "probe"), "w"):
            pass
    except OSError as exc:
        assert exc.errno == errno.EROFS
    else:
        pytest.fail("a committed layer was writable")
    finally:
        overlay2.put(middle)


def test_a_mount_made_by_another_process_is_used_and_left_mounted(overlay2):
    base, child = chain(overlay2, 2)
    other = Overlay2Driver(overlay2.home)  # stands for another process on the same data root
    merged = other.get(child)
    assert overlay2.get(child) == merged
    overlay2.put(child)
    assert lmount.is_mountpoint(merged)
    other.put(child)
    assert not lmount.is_mountpoint(merged)


def test_status_is_computed(overlay2):
    status = dict(overlay2.status())
    assert list(status) == ["Backing Filesystem", "Supports d_type", "Using metacopy", "Native Overlay Diff",
                            "userxattr"]
    assert status["Backing Filesystem"] == common.backing_filesystem(overlay2.home)
    assert status["Supports d_type"] == "true"
    metacopy = open("/sys/module/overlay/parameters/metacopy").read().strip() == "Y"
    assert status["Using metacopy"] == ("true" if metacopy else "false")
    native = native_diff_problem(overlay2.home) is None
    assert status["Native Overlay Diff"] == ("true" if native else "false")
    assert [name for name in os.listdir(overlay2.home) if name.startswith(".")] == []


def test_native_diff_matches_the_kernel_parameters(overlay2):
    redirect = open("/sys/module/overlay/parameters/redirect_dir").read().strip()
    metacopy = open("/sys/module/overlay/parameters/metacopy").read().strip()
    problem = native_diff_problem(overlay2.home)
    if redirect == "N" and metacopy == "N":
        assert problem is None
    else:
        assert problem is not None


@pytest.fixture
def scratch_mounts(tmp_path):
    yield tmp_path
    lmount.unmount_all_under(str(tmp_path))


def test_probe_refuses_an_overlayfs_backing_filesystem(scratch_mounts):
    root = scratch_mounts
    for name in ("lower", "upper", "work", "merged"):
        os.mkdir(root / name)
    Mount(type="overlay", source="overlay",
          options=(f"lowerdir={root}/lower", f"upperdir={root}/upper", f"workdir={root}/work")).mount(str(root / "merged"))
    home = str(root / "merged" / "overlay2")
    assert common.backing_filesystem(str(root / "merged")) == "overlayfs"
    reason = probe(home)
    assert reason is not None and "overlayfs" in reason
    assert not os.path.exists(home)  # a failed probe leaves no driver directory


def test_probe_accepts_tmpfs(scratch_mounts):
    target = scratch_mounts / "tmpfs"
    os.mkdir(target)
    Mount(type="tmpfs", source="tmpfs", options=("size=16m",)).mount(str(target))
    assert common.backing_filesystem(str(target)) == "tmpfs"
    assert probe(str(target / "overlay2")) is None
    assert os.listdir(target / "overlay2") == []


def test_supports_d_type_reads_real_directory_entry_types(tmp_path):
    assert common.supports_d_type(str(tmp_path)) is True
    assert os.listdir(tmp_path) == []


def test_sweep_removes_stranded_short_links(overlay2):
    (base,) = chain(overlay2, 1)
    os.symlink("../vanished/diff", f"{overlay2.home}/{LINK_DIR}/BBBBBBBBBBBBBBBBBBBBBBBBBB")
    assert overlay2.sweep() == [f"{LINK_DIR}/BBBBBBBBBBBBBBBBBBBBBBBBBB"]
    assert overlay2.check() == []
    assert overlay2.exists(base)


def test_ids_reserved_by_the_layout_are_refused(overlay2):
    with pytest.raises(errdefs.InvalidArgument):
        overlay2.create(LINK_DIR, None)
    assert not overlay2.exists(LINK_DIR)


def _mounts_under(path: str) -> list[str]:
    prefix = os.path.realpath(path) + "/"
    return [target for target in lmount.mounted_targets() if target.startswith(prefix)]


def test_naive_diff_against_an_ancestor_holds_mounts_only_while_streaming(overlay2):
    base, middle, top = chain(overlay2, 3)
    stream = overlay2.diff(top, base)  # not the real parent: mounts both and compares
    assert len(_mounts_under(overlay2.home)) == 1  # top's overlay; a base layer needs none
    next(iter(stream))
    stream.close()
    assert _mounts_under(overlay2.home) == []
    assert b"".join(overlay2.diff(top, base)).endswith(bytes(1024))
    assert _mounts_under(overlay2.home) == []
    with pytest.raises(errdefs.FailedPrecondition):
        overlay2.put(top)


def test_a_layer_put_on_its_parent_late_is_stacked_as_if_created_there(overlay2):
    home = overlay2.home
    base, child = chain(overlay2, 2)
    late = L.new_id()
    overlay2.create(late, None)
    assert overlay2.late_parent_supported() == (native_diff_problem(home) is None)
    overlay2.set_parent(late, child)
    assert read(f"{home}/{late}/lower") == f"l/{read(f'{home}/{child}/link')}:l/{read(f'{home}/{base}/link')}"
    assert os.stat(f"{home}/{late}/work").st_mode & 0o777 == 0o700
    assert os.path.exists(f"{home}/{child}/committed")
    assert overlay2._is_parent(late, child)
    with pytest.raises(errdefs.FailedPrecondition, match="has a parent already"):
        overlay2.set_parent(late, base)
    with pytest.raises(errdefs.NotFound):
        overlay2.set_parent(L.new_id(), base)
    assert overlay2.check() == []
