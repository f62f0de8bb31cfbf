"""The cgroup v2 device filter: rule parsing, the generated eBPF program run by an interpreter
of its instructions against the reference evaluation of the rules, and, on this host's cgroup2
mount, the kernel enforcing it on a forked child (open and mknod of device nodes)."""

from __future__ import annotations

import errno
import os
import secrets
import struct
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina import errdefs
from lamina.runtime import devicefilter
from lamina.runtime.cgroups import DEFAULT_DEVICE_RULES, CgroupLayout, CgroupManager
from lamina.runtime.devicefilter import DeviceRule, evaluate, parse_rule, program
from lamina.runtime.native import NativeRuntime

from .conftest import Harness

BLOCK, CHAR = 1, 2
MKNOD, READ, WRITE = 1, 2, 4


# -- an interpreter of the instructions the generator emits ------------------------------------

def run(code: bytes, access_type: int, major: int, minor: int) -> int:
    """Run the program on ``struct bpf_cgroup_dev_ctx``; refuses any instruction the filter
    should not contain, a backward or out-of-range jump, and a missing exit."""
    context = struct.pack("=III", access_type, major, minor)
    registers = [0] * 11
    registers[1] = -1  # the context pointer: only loads from it are allowed
    count = len(code) // 8
    pc = 0
    while True:
        assert 0 <= pc < count, f"pc {pc} left the program"
        operation, packed, offset, immediate = struct.unpack_from("=BBhi", code, pc * 8)
        destination, source = (packed & 0xF, packed >> 4) if sys.byteorder == "little" else (packed >> 4, packed & 0xF)
        pc += 1
        if operation == 0x61:
            assert registers[source] == -1 and offset in (0, 4, 8), "a load not from the context"
            registers[destination] = struct.unpack_from("=I", context, offset)[0]
        elif operation == 0x54:
            registers[destination] = (registers[destination] & immediate) & 0xFFFFFFFF
        elif operation == 0x74:
            registers[destination] = (registers[destination] & 0xFFFFFFFF) >> immediate
        elif operation == 0xB4:
            registers[destination] = immediate & 0xFFFFFFFF
        elif operation == 0xBC:
            registers[destination] = registers[source] & 0xFFFFFFFF
        elif operation in (0x55, 0x5D):
            other = immediate if operation == 0x55 else registers[source]
            assert offset >= 0, "a backward jump"
            if registers[destination] != other:
                pc += offset
        elif operation == 0x95:
            return registers[0]
        else:
            raise AssertionError(f"unexpected opcode {operation:#x}")


numbers = st.one_of(st.none(), st.integers(0, 4))
rules = st.builds(DeviceRule, type=st.sampled_from("abc"), major=numbers, minor=numbers,
                  access=st.sets(st.sampled_from("rwm"), min_size=1).map(lambda letters: "".join(sorted(letters))),
                  allow=st.booleans())
queries = st.tuples(st.sampled_from((BLOCK, CHAR)), st.integers(0, 5), st.integers(0, 5), st.integers(1, 7))


@settings(max_examples=300, deadline=None)
@given(st.lists(rules, max_size=8), st.lists(queries, min_size=1, max_size=20))
def test_the_program_agrees_with_the_reference_evaluation(rule_list: list[DeviceRule],
                                                          requests: list[tuple[int, int, int, int]]) -> None:
    code = program(rule_list)
    for device_type, major, minor, access in requests:
        expected = evaluate(rule_list, device_type, major, minor, access)
        assert run(code, access << 16 | device_type, major, minor) == int(expected), \
            ([str(rule) for rule in rule_list], device_type, major, minor, access)


def test_dockers_defaults_allow_the_standard_nodes_and_mknod_only() -> None:
    defaults = [parse_rule(rule) for rule in DEFAULT_DEVICE_RULES]
    code = program(defaults)

    def allowed(device_type: int, major: int, minor: int, access: int) -> bool:
        verdict = evaluate(defaults, device_type, major, minor, access)
        assert run(code, access << 16 | device_type, major, minor) == int(verdict)
        return verdict

    assert allowed(CHAR, 1, 3, READ | WRITE)          # null
    assert allowed(CHAR, 1, 9, READ)                  # urandom
    assert allowed(CHAR, 136, 4, READ | WRITE)        # a pts
    assert allowed(CHAR, 10, 200, READ | WRITE)       # tun
    assert allowed(BLOCK, 8, 0, MKNOD)                # mknod of any node
    assert not allowed(BLOCK, 8, 0, READ)             # but not opening the host's disk
    assert not allowed(BLOCK, 8, 0, MKNOD | READ)
    assert not allowed(CHAR, 10, 229, READ)           # fuse
    assert not allowed(CHAR, 1, 11, READ)             # kmsg


def test_rules_parse_the_v1_syntax() -> None:
    assert parse_rule("c 1:3 rwm") == DeviceRule("c", 1, 3, "mrw")
    assert parse_rule("b *:* m") == DeviceRule("b", None, None, "m")
    assert parse_rule("c 136:* wr") == DeviceRule("c", 136, None, "rw")
    assert str(parse_rule("c 136:* rw")) == "c 136:* rw"
    # as in v1, "a" allows everything whatever follows it
    assert parse_rule("a") == parse_rule("a 1:3 r") == DeviceRule("a", None, None, "rwm")


@pytest.mark.parametrize("text", ["", "c", "c 1:3", "x 1:3 rwm", "c 1-3 rwm", "c 1:3 rwx", "c 1:3 rr",
                                  "c -1:3 r", "c 1:99999999999 r", "c 1:3 rwm extra"])
def test_invalid_rules_are_refused(text: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        parse_rule(text)


# -- the kernel ---------------------------------------------------------------------------

def _unified() -> str:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            if right.split()[:1] == ["cgroup2"]:
                return left.split()[4]
    pytest.skip("no cgroup2 filesystem is mounted")


def _rmdir(path: str) -> None:
    deadline = time.monotonic() + 2
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@pytest.fixture
def cgroup2_directory() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    directory = os.path.join(_unified(), f"lamina-test-devices-{secrets.token_hex(4)}")
    os.mkdir(directory)
    try:
        yield directory
    finally:
        _rmdir(directory)


def _in_cgroup(procs_file: str, probe: Callable[[], int]) -> int:
    """Fork a child that joins the cgroup through ``procs_file`` and runs ``probe``; its exit
    status (the probe's result, 100 + errno of an unexpected error)."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            with open(procs_file, "w") as handle:
                handle.write("0")
            code = probe()
        except OSError as exc:
            code = 100 + (exc.errno or 0)
        finally:
            os._exit(code)
    try:
        _, status = os.waitpid(pid, 0)
    except BaseException:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise
    return os.waitstatus_to_exitcode(status)


def _open_errno(path: str, flags: int = os.O_RDONLY) -> int:
    """0 when ``path`` opens, else its errno."""
    try:
        os.close(os.open(path, flags | os.O_CLOEXEC))
    except OSError as exc:
        return exc.errno or -1
    return 0


@pytest.mark.privileged
def test_the_kernel_enforces_the_filter_on_open_and_mknod(cgroup2_directory: str, tmp_path) -> None:
    devicefilter.attach(cgroup2_directory, [parse_rule("c 1:3 rwm"), parse_rule("c *:* m"), parse_rule("b *:* m")])
    zero, block = str(tmp_path / "zero"), str(tmp_path / "block")

    def probe() -> int:
        if _open_errno("/dev/null", os.O_RDWR) != 0:
            return 1
        if _open_errno("/dev/zero") != errno.EPERM:
            return 2
        os.mknod(zero, 0o600 | 0o020000, os.makedev(1, 5))   # S_IFCHR: mknod is allowed
        os.mknod(block, 0o600 | 0o060000, os.makedev(7, 0))  # S_IFBLK
        if _open_errno(zero) != errno.EPERM:
            return 3
        if _open_errno(block) != errno.EPERM:
            return 4
        return 0

    assert _in_cgroup(os.path.join(cgroup2_directory, "cgroup.procs"), probe) == 0
    # outside the cgroup the same node opens: the filter refused it, not the filesystem
    assert _open_errno(zero) == 0


@pytest.mark.privileged
def test_attaching_again_replaces_the_filter(cgroup2_directory: str) -> None:
    devicefilter.attach(cgroup2_directory, [parse_rule("c 1:3 rwm")])
    first = devicefilter.attached_programs(cgroup2_directory)
    devicefilter.attach(cgroup2_directory, [parse_rule("c 1:5 rwm")])
    second = devicefilter.attached_programs(cgroup2_directory)
    assert len(first) == len(second) == 1 and first != second
    procs = os.path.join(cgroup2_directory, "cgroup.procs")
    # the second filter alone decides: zero opens, null no longer does
    assert _in_cgroup(procs, lambda: _open_errno("/dev/zero")) == 0
    assert _in_cgroup(procs, lambda: _open_errno("/dev/null")) == errno.EPERM


@pytest.mark.privileged
def test_the_kernel_verifier_accepts_long_and_empty_programs() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from lamina import sys as lsys

    many = [DeviceRule("c" if index % 2 else "b", index, None if index % 3 else index, "rw"[: 1 + index % 2])
            for index in range(300)]
    for rule_list in ([], many, [DeviceRule("a", None, None, "rwm")]):
        fd = lsys.bpf_prog_load(devicefilter.BPF_PROG_TYPE_CGROUP_DEVICE, program(rule_list), "GPL")
        os.close(fd)


@pytest.mark.privileged
@settings(max_examples=60, deadline=None)
@given(st.lists(rules, max_size=12))
def test_the_kernel_verifier_accepts_every_generated_program(rule_list: list[DeviceRule]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from lamina import sys as lsys

    os.close(lsys.bpf_prog_load(devicefilter.BPF_PROG_TYPE_CGROUP_DEVICE, program(rule_list), "GPL"))


@pytest.mark.privileged
def test_a_v2_cgroup_manager_attaches_the_defaults_at_creation_and_the_containers_rules() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if _open_errno("/dev/kmsg") != 0:
        pytest.skip("/dev/kmsg cannot be opened on this host")
    parent = f"lamina-test-{secrets.token_hex(4)}"
    manager = CgroupManager(f"{parent}/container", CgroupLayout(2, (("", _unified()),)))
    try:
        manager.create()
        directory = manager.directory("")
        assert directory is not None
        assert len(devicefilter.attached_programs(directory)) == 1
        procs = os.path.join(directory, "cgroup.procs")
        # the defaults: null and zero open, kmsg (c 1:11) does not
        assert _in_cgroup(procs, lambda: _open_errno("/dev/null") + _open_errno("/dev/zero")) == 0
        assert _in_cgroup(procs, lambda: _open_errno("/dev/kmsg")) == errno.EPERM
        manager.allow_devices(("c 1:11 r",))
        assert len(devicefilter.attached_programs(directory)) == 1
        assert _in_cgroup(procs, lambda: _open_errno("/dev/kmsg") + _open_errno("/dev/null")) == 0
        assert _in_cgroup(procs, lambda: _open_errno("/dev/kmsg", os.O_WRONLY)) == errno.EPERM
        manager.allow_devices(("a *:* rwm",))  # --privileged
        assert _in_cgroup(procs, lambda: _open_errno("/dev/kmsg", os.O_WRONLY)) == 0
        with pytest.raises(errdefs.InvalidArgument):
            manager.allow_devices(("c 1:11 x",))
    finally:
        manager.remove()
        _rmdir(os.path.join(_unified(), parent))


@pytest.mark.privileged
def test_a_container_on_a_v2_layout_gets_the_defaults_and_its_own_rules(rootfs: str) -> None:
    if _open_errno("/dev/fuse") != 0:
        pytest.skip("/dev/fuse cannot be opened on this host")
    unified = _unified()
    layout = CgroupLayout(2, (("", unified),))
    parent = f"lamina-test-{secrets.token_hex(4)}"
    harness = Harness(rootfs, runtime=NativeRuntime(cgroup_layout=layout))
    script = ("mknod /tmp/block b 7 0 && mknod /tmp/fuse c 10 229 && head -c 1 /dev/zero | wc -c; "
              "head -c 1 /tmp/block; echo block=$?; head -c 0 /tmp/fuse; echo fuse-read=$?; "
              "true 3<>/tmp/fuse; echo fuse-write=$?")
    spec = harness.spec("sh", "-c", script, cgroup_parent=parent, device_rules=("c 10:229 r",))
    try:
        state, out_read, err_read = harness.start(spec)
        stdout, stderr = harness.collect(out_read, err_read)
        assert harness.wait(state.pid) == 0, (stdout, stderr)
        assert len(devicefilter.attached_programs(os.path.join(unified, parent, spec.id))) == 1
    finally:
        harness.cleanup()  # kills the processes (the v1 cgroups it removes do not exist here)
        CgroupManager(f"{parent}/{spec.id}", layout).remove(timeout=5)
        _rmdir(os.path.join(unified, parent))
    # zero is in Docker's defaults, the block node and writing fuse are not, reading it is the container's rule
    assert stdout.split() == ["1", "block=1", "fuse-read=0", "fuse-write=1"], (stdout, stderr)
    assert stderr.count("Operation not permitted") == 2, stderr
