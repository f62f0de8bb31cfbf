"""ctypes wrappers for the Linux system calls Python 3.11 lacks.

Only thin wrappers live here: each raises ``OSError`` with errno on failure, like the ``os``
module does.  Callers above translate to :mod:`lamina.errdefs`.  ``mount``/``umount2`` are
meant to be called only from :mod:`lamina.mount`.
"""

from __future__ import annotations

import errno
import functools
import os
import struct

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "mount", "umount2", "unshare", "set_process_name", "is_mount_root", "madvise", "setns", "pivot_root", "syncfs", "openat2", "mount_setattr", "open_tree",
    "move_mount", "MOVE_MOUNT_F_EMPTY_PATH", "MOVE_MOUNT_T_EMPTY_PATH", "MOUNT_ATTR_IDMAP", "OPEN_TREE_CLONE", "OPEN_TREE_CLOEXEC",
    "AT_EMPTY_PATH", "AT_RECURSIVE", "MOUNT_ATTR_RDONLY", "MOUNT_ATTR_NOSUID", "MOUNT_ATTR_NODEV",
    "MOUNT_ATTR_NOEXEC",
    "MS_RDONLY", "MS_NOSUID", "MS_NODEV", "MS_NOEXEC", "MS_REMOUNT", "MS_BIND", "MS_MOVE",
    "MS_REC", "MS_PRIVATE", "MS_SLAVE", "MS_SHARED", "MS_STRICTATIME", "MS_RELATIME",
    "MNT_DETACH", "MNT_FORCE", "UMOUNT_NOFOLLOW",
    "CLONE_NEWNS", "CLONE_NEWUTS", "CLONE_NEWIPC", "CLONE_NEWUSER", "CLONE_NEWPID",
    "CLONE_NEWNET", "CLONE_NEWCGROUP",
    "RESOLVE_NO_XDEV", "RESOLVE_NO_MAGICLINKS", "RESOLVE_NO_SYMLINKS", "RESOLVE_BENEATH",
    "RESOLVE_IN_ROOT",
    "statfs_type", "getdents64",
    "bpf_prog_load", "bpf_prog_attach", "bpf_prog_detach", "bpf_prog_query", "bpf_prog_get_fd_by_id",
    "DT_UNKNOWN", "DT_FIFO", "DT_CHR", "DT_DIR", "DT_BLK", "DT_REG", "DT_LNK", "DT_SOCK",
]

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

MNT_FORCE = 1
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# pivot_root has no libc wrapper; its number differs by architecture (openat2 is 437 everywhere)
_SYS_pivot_root = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217, "riscv64": 41}.get(
    os.uname().machine, 155)
_SYS_openat2 = 437
_SYS_mount_setattr = 442
_SYS_open_tree = 428  # the new mount API has the same numbers on every architecture (asm-generic)
_SYS_move_mount = 429
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40

AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x00000001
MOUNT_ATTR_NOSUID = 0x00000002
MOUNT_ATTR_NODEV = 0x00000004
MOUNT_ATTR_NOEXEC = 0x00000008
MOUNT_ATTR_IDMAP = 0x00100000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
# getdents64 is not in the generic table on every architecture
_SYS_getdents64 = {"x86_64": 217, "aarch64": 61, "riscv64": 61, "armv7l": 217, "i686": 220,
                   "ppc64le": 202, "s390x": 220}.get(os.uname().machine, 61)

# bpf(2): its own number on each architecture; commands and attr layouts from linux/bpf.h
_SYS_bpf = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351, "armv7l": 386,
            "i686": 357}.get(os.uname().machine, 280)
_BPF_PROG_LOAD = 5
_BPF_PROG_ATTACH = 8
_BPF_PROG_DETACH = 9
_BPF_PROG_GET_FD_BY_ID = 13
_BPF_PROG_QUERY = 16
_BPF_LOG_SIZE = 1 << 16

# d_type values of struct linux_dirent64
DT_UNKNOWN = 0
DT_FIFO = 1
DT_CHR = 2
DT_DIR = 4
DT_BLK = 6
DT_REG = 8
DT_LNK = 10
DT_SOCK = 12

@functools.cache
def _libc() -> Any:
    """The C library the interpreter already links (``find_library`` would run ldconfig),
    through ctypes, loaded on first use: importing ctypes costs ~3 ms, which commands that
    mount nothing (``lamina images``) need not pay."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.unshare.argtypes = [ctypes.c_int]
    libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.syncfs.argtypes = [ctypes.c_int]
    libc.syscall.restype = ctypes.c_long
    libc.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    libc.statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def _check(result: int, what: str, path: str | None = None) -> int:
    if result < 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


def _b(value: str | bytes | None) -> bytes | None:
    if value is None:
        return None
    return os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(_libc().mount(_b(source), _b(target), _b(fstype), flags, _b(data)), "mount", target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc().umount2(_b(target), flags), "umount2", target)


def unshare(flags: int) -> None:
    _check(_libc().unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc().setns(fd, nstype), "setns")


def pivot_root(new_root: str, put_old: str) -> None:
    import ctypes

    _check(_libc().syscall(ctypes.c_long(_SYS_pivot_root), _b(new_root), _b(put_old)), "pivot_root", new_root)


def syncfs(fd: int) -> None:
    _check(_libc().syncfs(fd), "syncfs")


def mount_setattr(dir_fd: int, path: str, flags: int, attr_set: int, attr_clr: int = 0,
                  userns_fd: int = 0) -> None:
    """mount_setattr(2) (Linux 5.12+); with AT_RECURSIVE it changes a whole mount tree at once.
    ``userns_fd`` goes with MOUNT_ATTR_IDMAP: the user namespace whose mapping the mount gets."""
    import ctypes

    attr = ctypes.create_string_buffer(struct.pack("=QQQQ", attr_set, attr_clr, 0, userns_fd), 32)
    result = _libc().syscall(ctypes.c_long(_SYS_mount_setattr), ctypes.c_int(dir_fd), _b(path),
                           ctypes.c_uint(flags), attr, ctypes.c_size_t(32))
    _check(result, "mount_setattr", path or None)


def open_tree(dir_fd: int, path: str, flags: int) -> int:
    """open_tree(2) (Linux 5.2+): with OPEN_TREE_CLONE a detached copy of the mount at ``path``,
    as a descriptor (usable as a path through ``/proc/self/fd/N``)."""
    import ctypes

    fd = _libc().syscall(ctypes.c_long(_SYS_open_tree), ctypes.c_int(dir_fd), _b(path), ctypes.c_uint(flags))
    return _check(fd, "open_tree", path or None)


def move_mount(from_fd: int, from_path: str, to_fd: int, to_path: str, flags: int) -> None:
    """move_mount(2) (Linux 5.2+): attach a detached mount (an ``open_tree`` descriptor)."""
    import ctypes

    _check(_libc().syscall(ctypes.c_long(_SYS_move_mount), ctypes.c_int(from_fd), _b(from_path), ctypes.c_int(to_fd),
                           _b(to_path), ctypes.c_uint(flags)), "move_mount", to_path or None)


def openat2(dir_fd: int, path: str | bytes, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2); raises OSError (ENOSYS on kernels before 5.6).

    With RESOLVE_IN_ROOT or RESOLVE_BENEATH the kernel answers EAGAIN when a rename or a
    mount anywhere on the system raced with the resolution of a ``..``: the call is retried
    (a busy host makes that common), up to a bound."""
    tmpfile = getattr(os, "O_TMPFILE", 0)
    if not (flags & os.O_CREAT or (tmpfile and flags & tmpfile == tmpfile)):
        mode = 0  # the kernel rejects a mode without O_CREAT/O_TMPFILE (O_TMPFILE includes O_DIRECTORY)
    import ctypes

    how = ctypes.create_string_buffer(struct.pack("=QQQ", flags, mode, resolve), 24)
    libc = _libc()
    for _attempt in range(_OPENAT2_RETRIES):
        fd = libc.syscall(ctypes.c_long(_SYS_openat2), ctypes.c_int(dir_fd), _b(path), how, ctypes.c_size_t(24))
        if fd >= 0 or ctypes.get_errno() != errno.EAGAIN:
            break
    return _check(fd, "openat2", os.fsdecode(path))


_OPENAT2_RETRIES = 64


def set_process_name(name: str) -> str:
    """Name the calling process (its ``/proc/self/comm``, what ``ps`` and ``top`` show; the
    kernel keeps 15 bytes); the name it had.  Nothing changes when ``/proc`` cannot be written."""
    try:
        with open("/proc/self/comm", "r+", encoding="utf-8") as comm:
            had = comm.read().rstrip("\n")
            comm.seek(0)
            comm.write(name)
    except OSError:
        return name
    return had


STATX_ATTR_MOUNT_ROOT = 0x2000  # stx_attributes: the path is the root of a mount (Linux 5.8)
_AT_FDCWD = -100
_AT_NO_AUTOMOUNT = 0x800


def is_mount_root(path: str) -> bool | None:
    """Whether ``path`` (symbolic links followed) is the root of a mount in this mount
    namespace, from statx(2)'s ``STATX_ATTR_MOUNT_ROOT``; None when the kernel does not report
    that attribute (before Linux 5.8).  FileNotFoundError and the like as ``os.stat``."""
    import ctypes

    buffer = ctypes.create_string_buffer(256)  # struct statx
    _check(_libc().statx(_AT_FDCWD, _b(path), _AT_NO_AUTOMOUNT, 0, buffer), "statx", path)
    # __u64 stx_attributes at offset 8, __u64 stx_attributes_mask at offset 56
    attributes, = struct.unpack_from("=Q", buffer, 8)
    supported, = struct.unpack_from("=Q", buffer, 56)
    if not supported & STATX_ATTR_MOUNT_ROOT:
        return None
    return bool(attributes & STATX_ATTR_MOUNT_ROOT)


def madvise(address: int, length: int, advice: int) -> None:
    """madvise(2) on this process's memory at ``address`` (page-aligned) for ``length`` bytes."""
    _check(_libc().madvise(address, length, advice), "madvise")


def statfs_type(path: str) -> int:
    """``f_type`` of statfs(2) for ``path``: the magic number of its filesystem."""
    import ctypes

    buffer = ctypes.create_string_buffer(256)  # larger than struct statfs on every architecture
    _check(_libc().statfs(_b(path), buffer), "statfs", path)
    # f_type is the first field, a C long (__fsword_t)
    return struct.unpack_from("@l", buffer, 0)[0] & 0xFFFFFFFF


def getdents64(fd: int, buffer_size: int = 32768) -> list[tuple[int, int, bytes]]:
    """Every entry of the open directory ``fd`` as (inode, d_type, name), via getdents64(2).

    Python's ``os.scandir`` hides ``d_type``; this shows what the filesystem really reports
    (``DT_UNKNOWN`` on filesystems without d_type support).  Reads from the fd's current offset.
    """
    import ctypes

    entries: list[tuple[int, int, bytes]] = []
    buffer = ctypes.create_string_buffer(buffer_size)
    while True:
        count = _check(_libc().syscall(ctypes.c_long(_SYS_getdents64), ctypes.c_int(fd), buffer,
                                     ctypes.c_size_t(buffer_size)), "getdents64")
        if count == 0:
            return entries
        raw = buffer.raw[:count]
        offset = 0
        while offset < count:
            # struct linux_dirent64: u64 d_ino, s64 d_off, u16 d_reclen, u8 d_type, char d_name[]
            inode, _next, record_length, d_type = struct.unpack_from("=QqHB", raw, offset)
            name = raw[offset + 19:offset + record_length].split(b"\0", 1)[0]
            entries.append((inode, d_type, name))
            offset += record_length


def _bpf(command: int, attr: Any, what: str) -> int:
    import ctypes

    return _check(_libc().syscall(ctypes.c_long(_SYS_bpf), ctypes.c_int(command), attr,
                                  ctypes.c_uint(ctypes.sizeof(attr))), what)


def bpf_prog_load(program_type: int, instructions: bytes, license: str) -> int:
    """Load an eBPF program (``instructions``: packed ``struct bpf_insn``); its fd, close-on-exec.
    When the verifier refuses it, the load is retried with its log, which ends the OSError's
    message."""
    import ctypes

    code = ctypes.create_string_buffer(instructions, len(instructions))
    license_buffer = ctypes.create_string_buffer(license.encode())

    def attr(log_level: int, log: Any) -> Any:
        # u32 prog_type, insn_cnt; u64 insns, license; u32 log_level, log_size; u64 log_buf
        return ctypes.create_string_buffer(struct.pack(
            "=IIQQIIQ", program_type, len(instructions) // 8, ctypes.addressof(code),
            ctypes.addressof(license_buffer), log_level, 0 if log is None else len(log),
            0 if log is None else ctypes.addressof(log)), 72)  # the rest (up to prog_name and past) is zero

    try:
        return _bpf(_BPF_PROG_LOAD, attr(0, None), "bpf(BPF_PROG_LOAD)")
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EACCES):
            raise
        log = ctypes.create_string_buffer(_BPF_LOG_SIZE)
        try:
            return _bpf(_BPF_PROG_LOAD, attr(1, log), "bpf(BPF_PROG_LOAD)")
        except OSError as retried:
            text = log.value.decode(errors="replace").strip()
            raise OSError(retried.errno, f"{retried.strerror}; verifier log: {text}") from exc


def bpf_prog_attach(target_fd: int, program_fd: int, attach_type: int, flags: int) -> None:
    """Attach the loaded program ``program_fd`` to ``target_fd`` (a cgroup directory)."""
    import ctypes

    # u32 target_fd, attach_bpf_fd, attach_type, attach_flags, replace_bpf_fd
    _bpf(_BPF_PROG_ATTACH, ctypes.create_string_buffer(
        struct.pack("=IIIII", target_fd, program_fd, attach_type, flags, 0), 24), "bpf(BPF_PROG_ATTACH)")


def bpf_prog_detach(target_fd: int, program_fd: int, attach_type: int) -> None:
    import ctypes

    _bpf(_BPF_PROG_DETACH, ctypes.create_string_buffer(
        struct.pack("=IIIII", target_fd, program_fd, attach_type, 0, 0), 24), "bpf(BPF_PROG_DETACH)")


def bpf_prog_query(target_fd: int, attach_type: int, capacity: int = 64) -> list[int]:
    """The ids of the programs attached to ``target_fd`` itself (not its ancestors') for
    ``attach_type``."""
    import ctypes

    ids = (ctypes.c_uint32 * capacity)()
    # u32 target_fd, attach_type, query_flags, attach_flags; u64 prog_ids; u32 prog_cnt
    attr = ctypes.create_string_buffer(
        struct.pack("=IIIIQI", target_fd, attach_type, 0, 0, ctypes.addressof(ids), capacity), 40)
    _bpf(_BPF_PROG_QUERY, attr, "bpf(BPF_PROG_QUERY)")
    count = struct.unpack_from("=I", attr.raw, 24)[0]
    return list(ids[:min(count, capacity)])


def bpf_prog_get_fd_by_id(program_id: int) -> int:
    import ctypes

    return _bpf(_BPF_PROG_GET_FD_BY_ID, ctypes.create_string_buffer(struct.pack("=III", program_id, 0, 0), 16),
                "bpf(BPF_PROG_GET_FD_BY_ID)")
