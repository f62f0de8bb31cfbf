"""Linux capabilities and prctl for the container process (ctypes: capset, prctl).

Sets applied to a container process (Docker's choices): the bounding set is cut down to the
container's capabilities; effective and permitted are those capabilities; inheritable is empty
(moby's fix for CVE-2022-24769) and so is ambient.  After ``execve`` the kernel gives a root
process the bounding set and a non-root process nothing (no file capabilities, no ambient).
"""

from __future__ import annotations

import ctypes
import os

from lamina import errdefs

__all__ = [
    "CAPABILITIES",
    "PR_GET_DUMPABLE",
    "PR_SET_CHILD_SUBREAPER",
    "PR_SET_DUMPABLE",
    "PR_SET_PDEATHSIG",
    "capability_mask",
    "capability_number",
    "drop_bounding_set",
    "last_capability",
    "prctl",
    "set_capabilities",
    "set_keep_capabilities",
    "set_no_new_privileges",
]

CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)  # the C library the interpreter links
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    result = _libc.prctl(option, arg2, arg3, arg4, arg5)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")
    return result


def capability_number(name: str) -> int:
    """``CAP_NET_ADMIN`` (or ``NET_ADMIN``, any case) -> 12."""
    canonical = name.upper()
    if not canonical.startswith("CAP_"):
        canonical = "CAP_" + canonical
    try:
        return CAPABILITIES.index(canonical)
    except ValueError:
        raise errdefs.InvalidArgument(f"unknown capability {name!r}") from None


def capability_mask(names: tuple[str, ...] | list[str] | frozenset[str]) -> int:
    mask = 0
    for name in names:
        mask |= 1 << capability_number(name)
    return mask


def last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return len(CAPABILITIES) - 1


def drop_bounding_set(keep: int, last: int) -> None:
    """Drop every capability not in the mask ``keep`` from the bounding set (needs
    CAP_SETPCAP); capabilities the host has dropped already are fine."""
    for number in range(last + 1):
        if keep & (1 << number):
            continue
        try:
            prctl(PR_CAPBSET_DROP, number)
        except OSError as exc:
            raise errdefs.System(f"cannot drop capability {number} from the bounding set: {exc.strerror}") from exc


def set_capabilities(effective: int, permitted: int, inheritable: int = 0) -> None:
    """capset(2) for the calling thread, then clear the ambient set."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for index in range(2):
        shift = 32 * index
        data[index].effective = (effective >> shift) & 0xFFFFFFFF
        data[index].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[index].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    if _libc.capset(ctypes.byref(header), data) < 0:
        err = ctypes.get_errno()
        raise errdefs.System(f"capset failed: {os.strerror(err)} (a requested capability is not in the "
                             "runtime's own permitted set?)")
    try:
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass  # kernels before 4.3 have no ambient set


def set_keep_capabilities(keep: bool) -> None:
    prctl(PR_SET_KEEPCAPS, 1 if keep else 0)


def set_no_new_privileges() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)
