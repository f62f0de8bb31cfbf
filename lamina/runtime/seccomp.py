"""Docker's seccomp profile format, compiled to a kernel filter with libseccomp (ctypes).

The profile (``seccomp-default.json``, Docker's default, shipped as package data) is JSON:
``defaultAction`` (+ ``defaultErrnoRet``), ``archMap`` (native architecture -> its
sub-architectures, all added to the filter) and ``syscalls``, a list of rules
``{names, action, errnoRet?, args?, includes?, excludes?}``.  A rule applies when its
``includes`` hold (every listed capability is in the container's bounding set, the machine's
architecture — Go names such as ``amd64`` — is listed, the kernel is at least ``minKernel``)
and its ``excludes`` do not (any listed capability present, architecture listed, kernel at
least ``minKernel``).  ``args`` compare syscall arguments: several conditions on distinct
argument indexes form one rule (AND); conditions sharing an index become one rule each (OR).
``SCMP_CMP_MASKED_EQ`` takes ``value`` as the mask and ``valueTwo`` as the expected result.

Names libseccomp does not know on this machine are skipped, as are rules whose action is the
default action (no-ops that libseccomp refuses).

Compiling the default profile with libseccomp costs ~25 ms (rule database, then BPF
generation), more than the rest of a container start.  So the runtime compiles once
(:func:`compile_program`: libseccomp's exported BPF, a :class:`SeccompProgram`), keeps the
result in a :class:`ProgramCache` — in memory, and on disk when given a directory, as
``<dir>/<key>.bpf`` where ``key`` is the sha256 of the profile bytes, the capabilities, the
architecture, the kernel release, the libseccomp version and the program's shape — and the
child only installs the ready program with ``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)``,
without libseccomp.  The program is libseccomp's binary tree of syscall numbers
(``SCMP_FLTATR_CTL_OPTIMIZE`` 2, libseccomp 2.5 and later): it loads in about half the time of
the plain list and a syscall is decided in a few comparisons.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
from typing import Any

from lamina import errdefs
from lamina.digest import small_sha256
from lamina.fsutil import atomic_write
from lamina.records import dataclass

__all__ = [
    "Rule",
    "SeccompFilter",
    "applicable_rules",
    "default_profile",
    "kernel_version",
    "load_profile",
    "native_go_arch",
]

_ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_OPERATORS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}
_SCMP_FLTATR_CTL_NNP = 3
_SCMP_FLTATR_CTL_OPTIMIZE = 8  # libseccomp 2.5: 2 = a binary tree of syscall numbers
_PROGRAM_SHAPE = b"optimize=2"  # in the cache key: a program cached before this shape is not reused
_NR_SCMP_ERROR = -1

# uname machine -> the Go architecture names Docker's profiles use in includes/excludes
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "i386": "386", "armv7l": "arm",
            "armv6l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
            "mips64": "mips64", "loongarch64": "loong64"}
# uname machine -> the profile's SCMP_ARCH_ name of the native architecture
_SCMP_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64", "i686": "SCMP_ARCH_X86",
              "i386": "SCMP_ARCH_X86", "armv7l": "SCMP_ARCH_ARM", "armv6l": "SCMP_ARCH_ARM",
              "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64"}


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


@dataclass(frozen=True)
class Rule:
    """One libseccomp rule: ``action`` (with errno folded in) for ``name`` when every one of
    ``conditions`` (index, operator, value, value_two) holds."""

    name: str
    action: int
    conditions: tuple[tuple[int, int, int, int], ...] = ()


def native_go_arch() -> str:
    machine = os.uname().machine
    return _GO_ARCH.get(machine, machine)


def kernel_version(release: str | None = None) -> tuple[int, int]:
    release = release or os.uname().release
    numbers = []
    for piece in release.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit()) if not piece.isdigit() else piece
        numbers.append(int(digits or 0))
    while len(numbers) < 2:
        numbers.append(0)
    return numbers[0], numbers[1]


def _parse_kernel(text: str) -> tuple[int, int]:
    return kernel_version(text)


def default_profile_bytes() -> bytes:
    """Docker's default profile as stored in the package data (next to this module)."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "seccomp-default.json"), "rb") as handle:
        return handle.read()


def default_profile() -> dict[str, Any]:
    """Docker's default profile, from the package data."""
    return json.loads(default_profile_bytes())


def load_profile(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            profile = json.load(handle)
    except OSError as exc:
        raise errdefs.NotFound(f"seccomp profile {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"seccomp profile {path} is not valid JSON: {exc}") from exc
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise errdefs.InvalidArgument(f"seccomp profile {path} has no defaultAction")
    return profile


def _action(name: str, errno_value: int | None) -> int:
    if name not in _ACTIONS:
        raise errdefs.InvalidArgument(f"unsupported seccomp action {name!r}")
    value = _ACTIONS[name]
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        value |= (errno.EPERM if errno_value is None else errno_value) & 0xFFFF
    return value


def _applies(rule: dict[str, Any], capabilities: frozenset[str], arch: str, kernel: tuple[int, int]) -> bool:
    excludes = rule.get("excludes") or {}
    includes = rule.get("includes") or {}
    if arch in (excludes.get("arches") or ()):
        return False
    if any(cap in capabilities for cap in excludes.get("caps") or ()):
        return False
    if excludes.get("minKernel") and kernel >= _parse_kernel(excludes["minKernel"]):
        return False
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    if any(cap not in capabilities for cap in includes.get("caps") or ()):
        return False
    return not (includes.get("minKernel") and kernel < _parse_kernel(includes["minKernel"]))


def applicable_rules(profile: dict[str, Any], capabilities: frozenset[str] | set[str] | tuple[str, ...],
                     arch: str | None = None, kernel: tuple[int, int] | None = None) -> list[Rule]:
    """The rules of ``profile`` for a container with ``capabilities`` (its bounding set) on
    ``arch`` (Go name) and ``kernel``, in profile order, before name resolution."""
    caps = frozenset(capabilities)
    arch = arch or native_go_arch()
    kernel = kernel or kernel_version()
    default = _action(profile["defaultAction"], profile.get("defaultErrnoRet"))
    rules: list[Rule] = []
    for entry in profile.get("syscalls") or ():
        if not _applies(entry, caps, arch, kernel):
            continue
        action = _action(entry["action"], entry.get("errnoRet"))
        if action == default:
            continue
        names = list(entry.get("names") or ())
        if entry.get("name"):
            names.append(entry["name"])
        conditions = []
        for argument in entry.get("args") or ():
            operator = argument.get("op")
            if operator not in _OPERATORS:
                raise errdefs.InvalidArgument(f"unsupported seccomp operator {operator!r}")
            conditions.append((int(argument["index"]), _OPERATORS[operator], int(argument.get("value", 0)),
                               int(argument.get("valueTwo", 0))))
        indexes = [condition[0] for condition in conditions]
        if len(set(indexes)) == len(indexes):
            groups = [tuple(conditions)]
        else:
            groups = [(condition,) for condition in conditions]
        for name in names:
            for group in groups:
                rules.append(Rule(name, action, group))
    return rules


def _library() -> ctypes.CDLL:
    try:
        library = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        # find_library runs ldconfig: only when the usual soname is not found
        from ctypes.util import find_library

        path = find_library("seccomp")
        try:
            library = ctypes.CDLL(path or "libseccomp.so", use_errno=True)
        except OSError as exc:
            raise errdefs.FailedPrecondition(
                f"libseccomp is not available ({exc}); install libseccomp2 or run with seccomp=unconfined") from exc
    library.seccomp_init.restype = ctypes.c_void_p
    library.seccomp_init.argtypes = [ctypes.c_uint32]
    library.seccomp_release.argtypes = [ctypes.c_void_p]
    library.seccomp_load.argtypes = [ctypes.c_void_p]
    library.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    library.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    library.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    library.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    library.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    library.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                               ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    library.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return library


class SeccompFilter:
    """A compiled filter for one process: build it before fork, :meth:`load` it in the child,
    :meth:`release` it in the parent."""

    def __init__(self, profile: dict[str, Any], capabilities: tuple[str, ...] | frozenset[str],
                 no_new_privileges: bool = True, *, tree: bool = True) -> None:
        """``tree=False``: libseccomp's plain list of rules (tests compare the two shapes)."""
        self._library = _library()
        default = _action(profile["defaultAction"], profile.get("defaultErrnoRet"))
        context = self._library.seccomp_init(default)
        if not context:
            raise errdefs.System("seccomp_init failed")
        self._context: int | None = context
        self.skipped: list[str] = []
        try:
            self._add_architectures(profile)
            # a binary search over the syscall numbers rather than a list of them: the kernel
            # loads the program in about half the time (~0.6 ms against ~1.2 for Docker's
            # profile, at every start and exec) and a syscall meets a few comparisons, not up
            # to ~300; a libseccomp before 2.5 refuses the attribute and makes the list
            if tree:
                self._library.seccomp_attr_set(context, _SCMP_FLTATR_CTL_OPTIMIZE, 2)
            if not no_new_privileges:
                self._check(self._library.seccomp_attr_set(context, _SCMP_FLTATR_CTL_NNP, 0), "seccomp_attr_set")
            for rule in applicable_rules(profile, frozenset(capabilities)):
                number = self._library.seccomp_syscall_resolve_name(rule.name.encode())
                if number == _NR_SCMP_ERROR:
                    self.skipped.append(rule.name)
                    continue
                array = (_ArgCmp * max(1, len(rule.conditions)))()
                for index, (argument, operator, value, value_two) in enumerate(rule.conditions):
                    array[index] = _ArgCmp(argument, operator, value, value_two)
                result = self._library.seccomp_rule_add_array(context, rule.action, number,
                                                              len(rule.conditions), array)
                self._check(result, f"seccomp rule for {rule.name}")
        except BaseException:
            self.release()
            raise

    @staticmethod
    def _check(result: int, what: str) -> None:
        if result < 0:
            raise errdefs.System(f"{what} failed: {os.strerror(-result)}")

    def _add_architectures(self, profile: dict[str, Any]) -> None:
        native = _SCMP_ARCH.get(os.uname().machine)
        for entry in profile.get("archMap") or ():
            if entry.get("architecture") != native:
                continue
            for name in entry.get("subArchitectures") or ():
                token = self._library.seccomp_arch_resolve_name(name.removeprefix("SCMP_ARCH_").lower().encode())
                if token == 0:
                    continue
                result = self._library.seccomp_arch_add(self._context, token)
                if result < 0 and -result != errno.EEXIST:
                    self._check(result, f"seccomp_arch_add {name}")

    def export(self) -> bytes:
        """The filter as a classic BPF program (``struct sock_filter`` array)."""
        if self._context is None:
            raise errdefs.FailedPrecondition("seccomp filter already released")
        fd = os.memfd_create("lamina-seccomp", os.MFD_CLOEXEC)
        try:
            self._check(self._library.seccomp_export_bpf(self._context, fd), "seccomp_export_bpf")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def load(self) -> None:
        """Install the filter in the calling process (irreversible)."""
        if self._context is None:
            raise errdefs.FailedPrecondition("seccomp filter already released")
        self._check(self._library.seccomp_load(self._context), "seccomp_load")

    def release(self) -> None:
        if self._context is not None:
            self._library.seccomp_release(self._context)
            self._context = None


_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_PR_SET_NO_NEW_PRIVS = 38


class _SockFilterProgram(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


@dataclass(frozen=True)
class SeccompProgram:
    """A compiled filter: a classic BPF program, ready for the kernel."""

    bpf: bytes

    def __post_init__(self) -> None:
        if not self.bpf or len(self.bpf) % 8 or len(self.bpf) // 8 > 4096:
            raise errdefs.DataLoss(f"a seccomp program of {len(self.bpf)} bytes is not a valid BPF program")

    def load(self, no_new_privileges: bool = True) -> None:
        """Install the program in the calling thread (irreversible).  Without no_new_privs the
        caller needs CAP_SYS_ADMIN."""
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
        if no_new_privileges and libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
            raise errdefs.System(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}")
        instructions = ctypes.create_string_buffer(self.bpf, len(self.bpf))
        program = _SockFilterProgram(len(self.bpf) // 8, ctypes.addressof(instructions))
        if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(program), 0, 0) != 0:
            raise errdefs.System(f"installing the seccomp filter failed: {os.strerror(ctypes.get_errno())}")


def compile_program(profile: dict[str, Any], capabilities: tuple[str, ...] | frozenset[str]) -> SeccompProgram:
    """Compile ``profile`` for a container with ``capabilities`` (libseccomp)."""
    compiled = SeccompFilter(profile, capabilities)
    try:
        return SeccompProgram(compiled.export())
    finally:
        compiled.release()


def _libseccomp_version() -> str:
    library = _library()
    try:
        library.seccomp_version.restype = ctypes.POINTER(ctypes.c_uint * 3)
        version = library.seccomp_version().contents
        return ".".join(str(part) for part in version)
    except AttributeError:  # pragma: no cover - libseccomp before 2.3
        return "unknown"


class ProgramCache:
    """Compiled programs by (profile, capabilities), in memory and optionally on disk."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory
        self._memory: dict[str, SeccompProgram] = {}
        self._version: str | None = None

    def prepare(self) -> None:
        """Load libseccomp (its version is part of a key) and the hash of a key, ahead of the
        first :meth:`get`."""
        self.key(b"", ())

    def key(self, profile_bytes: bytes, capabilities: tuple[str, ...] | frozenset[str]) -> str:
        if self._version is None:
            self._version = _libseccomp_version()
        digest = small_sha256()
        for part in (profile_bytes, ",".join(sorted(capabilities)).encode(), os.uname().machine.encode(),
                     os.uname().release.encode(), self._version.encode(), _PROGRAM_SHAPE):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return digest.hexdigest()

    def get(self, profile_bytes: bytes, capabilities: tuple[str, ...] | frozenset[str]) -> SeccompProgram:
        key = self.key(profile_bytes, capabilities)
        if key in self._memory:
            return self._memory[key]
        path = os.path.join(self.directory, f"{key}.bpf") if self.directory else None
        program = None
        if path is not None:
            try:
                with open(path, "rb") as handle:
                    program = SeccompProgram(handle.read())
            except (OSError, errdefs.DataLoss):
                program = None  # missing or damaged: compile again
        if program is None:
            try:
                profile = json.loads(profile_bytes)
            except ValueError as exc:
                raise errdefs.InvalidArgument(f"the seccomp profile is not valid JSON: {exc}") from exc
            program = compile_program(profile, capabilities)
            if path is not None:
                try:
                    os.makedirs(self.directory, 0o700, exist_ok=True)  # type: ignore[arg-type]
                    atomic_write(path, program.bpf, 0o600)
                except OSError:
                    pass  # a cache that cannot be written only costs time
        self._memory[key] = program
        return program
