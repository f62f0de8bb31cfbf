"""Pure parts of the runtime: seccomp rule selection, capability masks, command lookup,
the default mounts, the runtime registry and the init's signal list."""

from __future__ import annotations

import errno
import inspect
import shutil
import signal

import pytest

from lamina import errdefs
from lamina.runtime.api import DEFAULT_CAPABILITIES, ContainerSpec, ProcessSpec, Runtime, Stdio
from lamina.runtime.capabilities import capability_mask, capability_number
from lamina.runtime.init import FORWARDED_SIGNALS, exit_code_of
from lamina.runtime.child import ExecError, find_executable
from lamina.runtime.native import NativeRuntime
from lamina.runtime.oci import OCIRuntime
from lamina.runtime.rootfs import default_mounts
from lamina.runtime.registry import RUNTIMES, Runtimes, open_runtime
from lamina.runtime.seccomp import (
    ProgramCache,
    SeccompFilter,
    SeccompProgram,
    applicable_rules,
    default_profile,
    default_profile_bytes,
    kernel_version,
)

ALLOW = 0x7FFF0000
EPERM = 0x00050000 | errno.EPERM


def _names(rules) -> set[str]:
    return {rule.name for rule in rules}


def test_default_profile_rules_depend_on_capabilities() -> None:
    profile = default_profile()
    default = _names(applicable_rules(profile, DEFAULT_CAPABILITIES, arch="amd64", kernel=(6, 1)))
    assert {"read", "write", "execve", "chroot", "arch_prctl", "ptrace"} <= default
    assert not {"mount", "unshare", "setns", "reboot", "keyctl", "bpf", "open_by_handle_at"} & default
    with_admin = _names(applicable_rules(profile, (*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"), arch="amd64",
                                         kernel=(6, 1)))
    assert {"mount", "unshare", "setns"} <= with_admin
    without_chroot = _names(applicable_rules(profile, ("CAP_CHOWN",), arch="amd64", kernel=(6, 1)))
    assert "chroot" not in without_chroot


def test_default_profile_rules_depend_on_architecture_and_kernel() -> None:
    profile = default_profile()
    assert "arch_prctl" not in _names(applicable_rules(profile, DEFAULT_CAPABILITIES, arch="arm64", kernel=(6, 1)))
    assert "set_tls" in _names(applicable_rules(profile, DEFAULT_CAPABILITIES, arch="arm64", kernel=(6, 1)))
    # ptrace is allowed to everyone only from kernel 4.8 (seccomp bypass fixed there)
    assert "ptrace" not in _names(applicable_rules(profile, DEFAULT_CAPABILITIES, arch="amd64", kernel=(4, 4)))


def test_argument_conditions_and_errno_actions() -> None:
    profile = default_profile()
    rules = applicable_rules(profile, DEFAULT_CAPABILITIES, arch="amd64", kernel=(6, 1))
    clone = [rule for rule in rules if rule.name == "clone"]
    # clone is allowed only without namespace flags: (flags & CLONE_NEW*) == 0
    assert [(rule.action, rule.conditions) for rule in clone] == [(ALLOW, ((0, 7, 2114060288, 0),))]
    clone3 = [rule for rule in rules if rule.name == "clone3"]
    assert [rule.action for rule in clone3] == [0x00050000 | errno.ENOSYS]  # glibc falls back to clone
    socket_rules = [rule.conditions for rule in rules if rule.name == "socket"]
    assert ((0, 4, 39, 0),) in socket_rules and ((0, 2, 38, 0),) in socket_rules  # no AF_VSOCK (40)


def test_conditions_on_one_argument_become_separate_rules() -> None:
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["mmap"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 2, "value": 4, "op": "SCMP_CMP_MASKED_EQ",
                                                                   "valueTwo": 0}]},
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO"},  # the default action: nothing to add
    ]}
    rules = applicable_rules(profile, (), arch="amd64", kernel=(6, 1))
    assert [(rule.name, rule.conditions) for rule in rules] == [
        ("personality", ((0, 4, 0, 0),)), ("personality", ((0, 4, 8, 0),)),
        ("mmap", ((0, 4, 0, 0), (2, 7, 4, 0))),
    ]
    with pytest.raises(errdefs.InvalidArgument, match="operator"):
        applicable_rules({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "BOGUS"}]}]}, ())


def test_the_default_profile_compiles_with_libseccomp() -> None:
    compiled = SeccompFilter(default_profile(), DEFAULT_CAPABILITIES)
    try:
        # only names newer than this libseccomp may be skipped, never the common ones
        assert not {"read", "clone", "socket", "personality"} & set(compiled.skipped)
    finally:
        compiled.release()


def test_compiled_programs_are_cached_on_disk_and_a_damaged_entry_is_rebuilt(tmp_path) -> None:
    profile = default_profile_bytes()
    program = ProgramCache(str(tmp_path)).get(profile, DEFAULT_CAPABILITIES)
    [entry] = list(tmp_path.iterdir())
    assert entry.name.endswith(".bpf") and entry.read_bytes() == program.bpf
    assert ProgramCache(str(tmp_path)).get(profile, DEFAULT_CAPABILITIES) == program  # read back
    cache = ProgramCache()
    assert cache.key(profile, DEFAULT_CAPABILITIES) != cache.key(profile, (*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"))
    assert cache.key(profile, DEFAULT_CAPABILITIES) != cache.key(profile + b" ", DEFAULT_CAPABILITIES)
    entry.write_bytes(b"garbage")  # not a whole number of BPF instructions
    assert ProgramCache(str(tmp_path)).get(profile, DEFAULT_CAPABILITIES) == program
    assert entry.read_bytes() == program.bpf
    with pytest.raises(errdefs.DataLoss):
        SeccompProgram(b"")


def test_a_prepared_native_runtime_starts_without_loading_anything_again(tmp_path, monkeypatch) -> None:
    """What the monitor template loads once (``prepare``) is what each start's helper, a fork
    of it, would otherwise load: the cgroup layout, the default profile, libseccomp."""
    from lamina.runtime import native, seccomp

    runtime = NativeRuntime(seccomp_cache=str(tmp_path))
    runtime.prepare()
    expected = ProgramCache().get(default_profile_bytes(), DEFAULT_CAPABILITIES).bpf

    def loaded_again(*_args, **_kwargs):
        raise AssertionError("loaded again by a start")

    monkeypatch.setattr(native, "detect_layout", loaded_again)
    monkeypatch.setattr(native, "default_profile_bytes", loaded_again)
    monkeypatch.setattr(seccomp, "_libseccomp_version", loaded_again)
    assert runtime._cgroups("lamina/prepared").layout is not None
    assert runtime._seccomp(DEFAULT_CAPABILITIES).bpf == expected


def test_reset_signals_leaves_every_disposition_default_or_ignored_and_nothing_blocked() -> None:
    """Checked in a forked child: this process's own handlers (pytest's) stay."""
    import os

    from lamina.runtime.child import reset_signals

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.signal(signal.SIGUSR1, lambda *_: None)
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
            signal.signal(signal.SIGRTMIN + 3, lambda *_: None)
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGRTMIN + 1])
            reset_signals(ignore=(signal.SIGHUP,))
            dispositions = {number: signal.getsignal(number) for number in
                            (signal.SIGUSR1, signal.SIGPIPE, signal.SIGRTMIN + 3, signal.SIGINT, signal.SIGHUP)}
            expected = {signal.SIGUSR1: signal.SIG_DFL, signal.SIGPIPE: signal.SIG_DFL,
                        signal.SIGRTMIN + 3: signal.SIG_DFL, signal.SIGINT: signal.SIG_DFL,
                        signal.SIGHUP: signal.SIG_IGN}
            if dispositions == expected and not signal.pthread_sigmask(signal.SIG_BLOCK, []):
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_kernel_version_parsing() -> None:
    assert kernel_version("6.18.44-fc-v657") == (6, 18)
    assert kernel_version("5.10.0-28-amd64") == (5, 10)
    assert kernel_version("4.8") == (4, 8)


def test_capability_masks() -> None:
    assert capability_mask(DEFAULT_CAPABILITIES) == 0xA80425FB  # Docker's default CapEff
    assert capability_number("net_admin") == capability_number("CAP_NET_ADMIN") == 12
    with pytest.raises(errdefs.InvalidArgument, match="unknown capability"):
        capability_number("CAP_FLY")


def _tree(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    plain = bin_dir / "plain"
    plain.write_text("data")
    plain.chmod(0o644)
    return bin_dir


def test_find_executable_like_go_lookpath(tmp_path) -> None:
    bin_dir = _tree(tmp_path)
    env = (f"PATH=/nonexistent:{bin_dir}",)
    assert find_executable("tool", env) == f"{bin_dir}/tool"
    assert find_executable(f"{bin_dir}/tool", ()) == f"{bin_dir}/tool"
    cases = [
        ("plain", 127, 'exec: "plain": executable file not found in $PATH'),  # not executable: skipped
        ("nosuch", 127, 'exec: "nosuch": executable file not found in $PATH'),
        (f"{bin_dir}/plain", 126, f'exec: "{bin_dir}/plain": permission denied'),
        (str(bin_dir), 126, f'exec: "{bin_dir}": permission denied'),
        (f"{bin_dir}/nosuch", 127, f'exec: "{bin_dir}/nosuch": stat {bin_dir}/nosuch: no such file or directory'),
    ]
    for name, code, message in cases:
        with pytest.raises(ExecError) as caught:
            find_executable(name, env)
        assert (caught.value.exit_code, str(caught.value)) == (code, message)


def test_default_mounts_match_docker() -> None:
    spec = ContainerSpec(id="x" * 64, rootfs="/", process=ProcessSpec(args=("true",)))
    mounts = {item.destination: item for item in default_mounts(spec)}
    assert list(mounts) == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"]
    assert mounts["/dev/pts"].options == ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5")
    assert "ro" in mounts["/sys"].options
    assert mounts["/dev"].type == "tmpfs" and "mode=755" in mounts["/dev"].options


def test_bad_specs_are_refused_before_anything_runs(tmp_path) -> None:
    runtime = NativeRuntime()
    process = ProcessSpec(args=("true",))
    stdio = Stdio(0, 1, 2)
    with pytest.raises(errdefs.NotFound, match="root filesystem"):
        runtime.start(ContainerSpec(id="a" * 64, rootfs=str(tmp_path / "missing"), process=process), stdio)
    cases = [
        (ContainerSpec(id="a" * 64, rootfs=str(tmp_path), process=ProcessSpec(args=())), "no command specified"),
        (ContainerSpec(id="a" * 64, rootfs=str(tmp_path), process=ProcessSpec(args=("true",), cwd="relative")),
         "needs to be an absolute path"),
        (ContainerSpec(id="a" * 64, rootfs=str(tmp_path), process=process, network="bridge"), "network mode"),
        (ContainerSpec(id="a" * 64, rootfs=str(tmp_path), process=process, namespaces=frozenset({"pid"})),
         "mount namespace"),
        (ContainerSpec(id="a" * 64, rootfs=str(tmp_path), process=ProcessSpec(args=("true",),
                                                                              rlimits=(("RLIMIT_BOGUS", 1, 1),))),
         "unknown rlimit"),
    ]
    for spec, message in cases:
        with pytest.raises(errdefs.InvalidArgument, match=message):
            runtime.start(spec, stdio)


@pytest.mark.parametrize("implementation", [NativeRuntime, OCIRuntime], ids=["the native runtime", "the OCI runtime"])
def test_a_built_in_runtime_implements_the_whole_contract_with_its_signatures(implementation) -> None:
    contract = [name for name in dir(Runtime) if not name.startswith("_") and callable(getattr(Runtime, name))]
    assert {"cgroup_path", "oom_killed", "processes", "delete"} <= set(contract)
    for name in contract:
        assert hasattr(implementation, name), f"{implementation.__name__} has no {name}"
        expected = inspect.signature(getattr(Runtime, name))
        actual = inspect.signature(getattr(implementation, name))
        assert [(p.name, p.kind, p.default) for p in actual.parameters.values()] == \
            [(p.name, p.kind, p.default) for p in expected.parameters.values()], name


def test_the_registry_opens_each_runtime_once_and_names_the_known_ones(tmp_path) -> None:
    runtimes = Runtimes(str(tmp_path))
    native = runtimes.get("native")
    assert isinstance(native, NativeRuntime) and native.name == "native"
    assert runtimes.get("native") is native
    assert set(RUNTIMES) == {"native", "crun", "runc"}
    assert runtimes.names() == ("native", "crun", "runc")
    with pytest.raises(errdefs.InvalidArgument, match="unknown runtime 'kata' .known: native, crun, runc"):
        runtimes.get("kata")


def test_a_runtime_beyond_the_built_in_ones_is_given_to_the_registry(tmp_path) -> None:
    opened: list[tuple[str, str]] = []

    def factory(name: str, exec_root: str) -> NativeRuntime:
        opened.append((name, exec_root))
        return NativeRuntime()

    runtimes = Runtimes(str(tmp_path), extra={"kata": factory})
    assert runtimes.names() == ("native", "crun", "runc", "kata")
    assert isinstance(runtimes.get("kata"), NativeRuntime)
    runtimes.get("kata")
    assert opened == [("kata", str(tmp_path))]
    with pytest.raises(errdefs.AlreadyExists, match="built in"):
        Runtimes(str(tmp_path), extra={"native": factory})


def test_oci_runtimes_keep_their_bundles_under_the_exec_root(tmp_path) -> None:
    for name in ("crun", "runc"):
        if shutil.which(name) is None:
            with pytest.raises(errdefs.FailedPrecondition, match="not found"):
                open_runtime(name, str(tmp_path))
            continue
        runtime = open_runtime(name, str(tmp_path))
        assert runtime.name == name
        assert runtime.state_root == str(tmp_path / "oci")  # type: ignore[attr-defined]


def test_the_init_forwards_the_asynchronous_signals_only() -> None:
    assert {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT,
            signal.SIGWINCH} <= set(FORWARDED_SIGNALS)
    assert not {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGSEGV} & set(FORWARDED_SIGNALS)
    assert exit_code_of(15) == 143  # killed by SIGTERM
    assert exit_code_of(3 << 8) == 3


def _run_classic_bpf(program: bytes, data: bytes) -> int:
    """What the kernel's classic BPF interpreter returns for ``program`` on ``data`` (a
    ``struct seccomp_data``): the instructions libseccomp emits (loads, ALU, jumps, returns)."""
    import struct

    instructions = [struct.unpack_from("<HBBI", program, offset) for offset in range(0, len(program), 8)]
    a = x = 0
    memory = [0] * 16
    pc = 0
    while True:
        code, jt, jf, k = instructions[pc]
        pc += 1
        kind = code & 0x07
        if kind == 0x00:  # LD
            mode = code & 0xE0
            a = struct.unpack_from("<I", data, k)[0] if mode == 0x20 else memory[k] if mode == 0x60 else k
        elif kind == 0x01:  # LDX
            x = memory[k] if code & 0xE0 == 0x60 else k
        elif kind == 0x02:
            memory[k] = a
        elif kind == 0x03:
            memory[k] = x
        elif kind == 0x04:  # ALU
            operand = x if code & 0x08 else k
            operations = {0x00: a + operand, 0x10: a - operand, 0x40: a | operand, 0x50: a & operand,
                          0x60: a << operand, 0x70: a >> operand, 0xA0: a ^ operand}
            a = operations[code & 0xF0] & 0xFFFFFFFF
        elif kind == 0x05:  # JMP
            operand = x if code & 0x08 else k
            test = code & 0xF0
            if test == 0x00:
                pc += k
                continue
            taken = {0x10: a == operand, 0x20: a > operand, 0x30: a >= operand, 0x40: bool(a & operand)}[test]
            pc += jt if taken else jf
        elif kind == 0x06:  # RET
            return a if code & 0x18 == 0x10 else k
        else:  # MISC: TAX / TXA
            if code & 0xF8 == 0x00:
                x = a
            else:
                a = x


def test_the_binary_tree_program_decides_every_syscall_as_the_plain_list() -> None:
    """libseccomp's binary tree (the shape the runtime loads) gives every syscall number, with
    the arguments Docker's profile compares, the action of the plain list of rules."""
    import os
    import struct

    from lamina.runtime.seccomp import _SCMP_ARCH  # noqa: PLC2701 - the native architecture's token

    tree = SeccompFilter(default_profile(), DEFAULT_CAPABILITIES)
    plain = SeccompFilter(default_profile(), DEFAULT_CAPABILITIES, tree=False)
    try:
        tree_program, plain_program = tree.export(), plain.export()
    finally:
        tree.release()
        plain.release()
    assert tree_program != plain_program
    audit_arch = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}.get(os.uname().machine)
    if audit_arch is None or os.uname().machine not in _SCMP_ARCH:
        pytest.skip("the architecture's audit token is not listed here")
    if os.uname().machine == "x86_64":  # the interpreter reads the programs as the kernel does
        def decide(number: int, *values: int) -> int:
            return _run_classic_bpf(tree_program, struct.pack("<iIQ6Q", number, audit_arch, 0, *values,
                                                              *(0,) * (6 - len(values))))

        assert decide(0) == 0x7FFF0000                        # read: allowed
        assert decide(246) & 0xFFFF0000 == 0x00050000         # kexec_load: EPERM
        assert decide(56, 0) == 0x7FFF0000                    # clone
        assert decide(56, 0x10000000) & 0xFFFF0000 == 0x00050000  # clone(CLONE_NEWUSER): refused
    arguments = [(0,) * 6, (0x7E020000,) + (0,) * 5, (0xFFFFFFFF,) * 6, (8,) + (0,) * 5, (0x10000000,) + (0,) * 5]
    for number in [*range(0, 460), 0x40000000 | 1]:
        for values in arguments:
            data = struct.pack("<iIQ6Q", number, audit_arch, 0, *values)
            assert _run_classic_bpf(tree_program, data) == _run_classic_bpf(plain_program, data), (number, values)
