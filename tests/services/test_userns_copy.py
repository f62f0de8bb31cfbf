"""``--userns-remap`` through chowned layer copies (``--userns-remap-layers copy``, and what
``auto`` falls back to where idmapped mounts are missing; the vfs driver): the behaviours of
``test_userns.py`` again, then what is particular to the copies (where they are, what they
hold, who removes them, what a crash mid-copy leaves)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from fstest import assert_same_tree, snapshot_tree
from lamina import errdefs
from lamina import mount as lmount
from lamina.config import EngineConfig
from lamina.graphdriver.remapcopy import RemapCopies
from lamina.records import asdict
from lamina.services.compose import build_services

from .conftest import FIXTURE, Engine
# the behaviours of the idmapped path, run again below with this module's ``remapped``
from .test_userns import (  # noqa: F401
    RANGE,
    _layer_fingerprints,
    _run,
    remap_user,
    test_commit_export_and_cp_give_container_relative_ids,
    test_container_root_cannot_read_a_host_root_file_through_a_bind_mount,
    test_cp_of_the_mounted_etc_files_of_a_remapped_container,
    test_exec_joins_the_container_s_user_namespace,
    test_files_created_in_a_volume_belong_to_the_remapped_ids,
    test_an_image_with_ids_beyond_the_range_is_refused_at_create,
    test_inside_a_remapped_container_uid_map_shows_the_range,
    test_options_work_in_a_remapped_container,
    test_shareable_ipc_restart_and_exec_in_a_remapped_container,
    test_userns_host_opts_out,
    test_what_needs_the_host_user_namespace_is_refused_under_remap,
)

pytestmark = pytest.mark.privileged


def _engine(root: str, remap: str = "", layers: str = "copy", driver: str | None = None) -> Engine:
    config = EngineConfig(data_root=os.path.join(root, "data"), exec_root=os.path.join(root, "run"),
                          userns_remap=remap, userns_remap_layers=layers, storage_driver=driver)
    return Engine(root, config, build_services(config))


def _load(engine: Engine) -> None:
    with open(FIXTURE, "rb") as handle:
        engine.images.load(handle, progress=lambda message: None)


@pytest.fixture(params=["overlay2", "vfs"], ids=["overlay2 with chowned copies", "vfs"])
def remapped(request, tmp_path, remap_user) -> Iterator[tuple[Engine, int]]:
    """(an engine remapped through chowned copies with busybox loaded, the host uid of its
    containers' root)."""
    instance = _engine(str(tmp_path), remap_user[0], driver=request.param)
    try:
        assert instance.system.info()["SecurityOptions"][-1].endswith(",idmap=copy")
        _load(instance)
        yield instance, remap_user[1]
    finally:
        instance.cleanup()
        lmount.unmount_all_under(str(tmp_path))


def _shifted(tree: dict, start: int) -> dict:
    return {path: dataclasses.replace(node, uid=node.uid + start, gid=node.gid + start) for path, node in tree.items()}


def test_layers_stay_untouched_and_their_copies_hold_shifted_ids_until_rm_and_rmi(tmp_path, remap_user) -> None:
    name, start = remap_user
    plain = _engine(str(tmp_path))
    try:
        _load(plain)
        before = _layer_fingerprints(plain)
    finally:
        plain.cleanup()
    engine = _engine(str(tmp_path), name)
    try:
        assert f"name=userns,user={name},group={name},idmap=copy" in engine.system.info()["SecurityOptions"]
        container_id = engine.create("sh", "-c", "echo changed >> /etc/passwd; rm /bin/true; stat -c '%u %g' /bin/sh")
        store = RemapCopies(os.path.join(engine.config.data_root, f"{start}.{start}", "overlay2"))
        assert store.ids() == []  # made by the first mount, not at create
        engine.containers.start(container_id)
        assert engine.wait(container_id) == 0 and engine.output(container_id) == "0 0\n"
        assert _layer_fingerprints(engine) == before  # same cache-ids, same content and owners
        layers = engine.images.layers
        image_layers = {layer.cache_id for layer in layers.layers()}
        rw = engine.mounts.get(container_id)
        assert set(store.ids()) == image_layers | {rw.init_id}
        for cache_id in image_layers | {rw.init_id}:
            assert_same_tree(_shifted(snapshot_tree(layers.driver.diff_path(cache_id)), start),
                             snapshot_tree(store.diff_path(cache_id)))
        # what the container wrote is in its own upper directory, with host ids
        passwd = os.lstat(os.path.join(layers.driver.diff_path(rw.mount_id), "etc", "passwd"))
        assert (passwd.st_uid, passwd.st_gid) == (start, start)
        usage = engine.system.disk_usage()
        copies = sum(int(open(os.path.join(store.home, id, "size")).read()) for id in store.ids())
        assert usage["LaminaRemapCopiesSize"] == copies > 0
        assert usage["LayersSize"] == sum(layer.size for layer in layers.layers()) + copies
        assert engine.system.check()["Problems"] == []
        engine.containers.remove(container_id)
        assert set(store.ids()) == image_layers  # the init layer's copy went with it
        engine.images.remove_image("busybox")
        assert store.ids() == [] and os.listdir(os.path.join(store.home, "l")) == []
        assert engine.system.disk_usage()["LaminaRemapCopiesSize"] == 0
    finally:
        engine.cleanup()
        lmount.unmount_all_under(str(tmp_path))


def test_vfs_makes_no_layer_copies_the_container_s_tree_is_copied_shifted(tmp_path, remap_user) -> None:
    engine = _engine(str(tmp_path), remap_user[0], layers="auto", driver="vfs")
    try:
        _load(engine)
        before = _layer_fingerprints(engine)
        code, out, container_id = _run(engine, "touch /made; chown 3:4 /made; stat -c '%u %g' /bin/busybox /made")
        assert (code, out) == (0, "0 0\n3 4\n")
        root = engine.mounts.driver.diff_path(engine.mounts.get(container_id).mount_id)
        start = remap_user[1]
        for path, owner in (("bin/busybox", (start, start)), ("made", (start + 3, start + 4))):
            info = os.lstat(os.path.join(root, path))
            assert (info.st_uid, info.st_gid) == owner
        assert _layer_fingerprints(engine) == before
        assert not [name for name in os.listdir(engine.config.data_root) if name[0].isdigit()]
        assert [(change["Path"], change["Kind"]) for change in engine.container_files.changes(container_id)] == [
            ("/made", 1)]
    finally:
        engine.cleanup()


def _write_probe_answer(config: EngineConfig, problem: str) -> None:
    """What the once-per-boot probe of idmapped mounts caches (:func:`lamina.idmap.idmapped_mounts_problem`),
    answered as on a kernel or filesystem without them: this machine has them."""
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
        boot_id = handle.read().strip()
    os.makedirs(config.exec_root, exist_ok=True)
    device = os.stat(os.path.dirname(config.data_root)).st_dev
    with open(os.path.join(config.exec_root, "idmapped-mounts"), "w", encoding="utf-8") as handle:
        handle.write(f"{boot_id} {device}\n{problem}")


def test_auto_uses_copies_where_idmapped_mounts_are_missing_and_idmap_is_then_refused(tmp_path, remap_user) -> None:
    name, start = remap_user
    problem = "the filesystem of this data root refuses idmapped mounts (MOUNT_ATTR_IDMAP: Invalid argument)"
    config = EngineConfig(data_root=str(tmp_path / "data"), exec_root=str(tmp_path / "run"), userns_remap=name,
                          userns_remap_layers="idmap")
    _write_probe_answer(config, problem)
    with pytest.raises(errdefs.FailedPrecondition) as caught:
        build_services(config)
    assert "--userns-remap-layers idmap" in str(caught.value) and problem in str(caught.value)
    engine = _engine(str(tmp_path), name, layers="auto")
    try:
        assert engine.services.remap.layers == "copy" and problem in engine.services.remap.copy_reason
        assert engine.system.info()["SecurityOptions"][-1].endswith(",idmap=copy")
        _load(engine)
        code, out, _ = _run(engine, "head -1 /proc/self/uid_map; stat -c '%u' /etc/passwd")
        assert code == 0 and out.split() == ["0", str(start), str(RANGE), "0"], out
        assert RemapCopies(os.path.join(engine.config.data_root, f"{start}.{start}", "overlay2")).ids()
    finally:
        engine.cleanup()
        lmount.unmount_all_under(str(tmp_path))


def test_a_bad_remap_layers_value_is_refused_and_the_environment_sets_it(tmp_path, monkeypatch, remap_user) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="--userns-remap-layers value 'copies'"):
        build_services(EngineConfig(data_root=str(tmp_path / "data"), exec_root=str(tmp_path / "run"),
                                    userns_remap=remap_user[0], userns_remap_layers="copies"))
    monkeypatch.setenv("LAMINA_USERNS_REMAP_LAYERS", "copy")
    assert EngineConfig.from_environment(data_root=str(tmp_path)).userns_remap_layers == "copy"
    assert EngineConfig.from_environment(data_root=str(tmp_path), userns_remap_layers="idmap").userns_remap_layers == \
        "idmap"
    monkeypatch.delenv("LAMINA_USERNS_REMAP_LAYERS")
    assert EngineConfig.from_environment(data_root=str(tmp_path)).userns_remap_layers == "auto"


def test_the_cli_option_reaches_info(tmp_path, remap_user) -> None:
    environment = {**os.environ, "LAMINA_EXEC_ROOT": str(tmp_path / "run"), "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", "import sys; from lamina.cli.main import run; sys.exit(run())",
                           "--data-root", str(tmp_path / "data"), "--userns-remap",
                           remap_user[0], "--userns-remap-layers", "copy", "info", "--format",
                           "{{json .SecurityOptions}}"], capture_output=True, text=True, env=environment, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[-1] == f"name=userns,user={remap_user[0]},group={remap_user[0]},idmap=copy"


def _many_files_image(engine: Engine) -> None:
    """``many:latest``: busybox and a layer of 40 copies of its /bin, committed from a
    remapped container (so with container ids)."""
    code, out, container_id = _run(engine, "for i in $(seq 1 40); do mkdir /d$i && cp -a /bin /d$i/ || exit 1; done")
    assert code == 0, out
    engine.container_files.commit(container_id, repository="many", tag="latest")
    engine.containers.remove(container_id)


def test_a_monitor_killed_mid_copy_leaves_what_repair_removes_and_the_next_start_works(tmp_path, remap_user) -> None:
    name, start = remap_user
    engine = _engine(str(tmp_path), name)
    try:
        _load(engine)
        _many_files_image(engine)
        container_id = engine.create("ls", "/d40/bin/busybox", Image="many:latest")
        store = RemapCopies(os.path.join(engine.config.data_root, f"{start}.{start}", "overlay2"))
        top = engine.images.layers.get(str(engine.images.images.get_config(engine.images.resolve("many:latest"))
                                           .chain_id()))
        incomplete = os.path.join(store.home, top.cache_id + "-incomplete", "diff")
        config = json.dumps(asdict(engine.config))
        # the mount a monitor makes at the start, in a process of its own, killed mid-copy
        script = textwrap.dedent(f"""
            import json
            from lamina.config import EngineConfig
            from lamina.services.compose import build_services
            config = EngineConfig(**{{key: tuple(value) if isinstance(value, list) else value
                                      for key, value in json.loads({config!r}).items()}})
            build_services(config).mounts.mount({container_id!r})
        """)
        for _attempt in range(5):
            child = subprocess.Popen([sys.executable, "-c", script])
            try:
                while child.poll() is None and not os.path.isdir(os.path.join(incomplete, "d1")):
                    pass
            finally:
                child.send_signal(signal.SIGKILL)
                child.wait()
            lmount.unmount_all_under(os.path.join(engine.config.data_root, "overlay2"))
            if os.path.isdir(incomplete):
                break
            store.remove(top.cache_id)  # it finished first: try again
        else:
            pytest.fail("the copy always finished before it could be killed")
        problems = engine.system.check()["Problems"]
        assert any("leftover work in progress" in item["Message"] and top.cache_id in item["Message"]
                   for item in problems), problems
        result = engine.system.check(repair=True)
        assert any(top.cache_id + "-incomplete" in line for line in result["Repaired"]), result
        assert result["Problems"] == []
        assert not os.path.exists(os.path.dirname(incomplete))
        engine.containers.start(container_id)
        assert engine.wait(container_id) == 0, engine.output(container_id)
        assert top.cache_id in store.ids()
        copied = os.lstat(os.path.join(store.diff_path(top.cache_id), "d1", "bin", "busybox"))
        assert (copied.st_uid, copied.st_gid) == (start, start)
    finally:
        engine.cleanup()
        lmount.unmount_all_under(str(tmp_path))
