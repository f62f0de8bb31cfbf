"""The cgroup v2 device filter: an eBPF program generated from device rules, attached to a
container's cgroup.

cgroup v2 has no ``devices.allow``: the kernel runs every ``BPF_PROG_TYPE_CGROUP_DEVICE``
program attached to a cgroup (and to its ancestors) on each open and mknod of a device node
by a process in it, and refuses the access (EPERM) when one returns 0.  runc does the same
(libcontainer/cgroups/devices: the v1 rules turned into such a program).

Rules use the v1 ``devices.allow`` syntax, ``<type> <major>:<minor> <access>``: type ``c``
(char), ``b`` (block) or ``a`` (all), major and minor a number or ``*``, access a non-empty
subset of ``rwm`` (read, write, mknod).  As in v1, an ``a`` rule allows everything, whatever
follows it.  A request matches a rule when its type, major and minor match and every access
it asks for is in the rule's access (an ``O_RDWR`` open asks for ``rw``).  The rules are
checked in order and the first match decides; a request no rule matches is denied.

The program reads ``struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }``
(``access_type``: the device type in the low 16 bits, ``BPF_DEVCG_DEV_BLOCK`` 1 /
``BPF_DEVCG_DEV_CHAR`` 2; the access in the high 16 bits, ``BPF_DEVCG_ACC_MKNOD`` 1 /
``READ`` 2 / ``WRITE`` 4) and returns 1 to allow, 0 to deny::

    r2 = ctx->access_type & 0xffff; r3 = ctx->access_type >> 16; r4 = ctx->major; r5 = ctx->minor
    for each rule:  if r2 != type goto next;  r1 = r3 & access; if r1 != r3 goto next;
                    if r4 != major goto next;  if r5 != minor goto next;  r0 = allow; exit
    r0 = 0; exit

(a wildcard leaves its test out; a rule that matches everything ends the program).  :func:`attach` loads it and attaches it to a cgroup
directory with ``BPF_F_ALLOW_MULTI``, then detaches the programs that were attached there
before, as runc does: the cgroup is never without a filter while it is replaced.  Nothing is
written to disk; the program lives as long as the cgroup.
"""

from __future__ import annotations

import os
import struct
import sys

from lamina import errdefs
from lamina.records import dataclass

__all__ = ["DeviceRule", "attach", "attached_programs", "evaluate", "parse_rule", "program"]

BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

DEVICE_TYPES = {"b": 1, "c": 2}
ACCESS_BITS = {"m": 1, "r": 2, "w": 4}

# opcodes (linux/bpf_common.h, linux/bpf.h)
_LDX_MEM_W = 0x61    # BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
_ALU_AND_K = 0x54    # BPF_ALU | BPF_AND | BPF_K: w(dst) &= imm
_ALU_RSH_K = 0x74    # BPF_ALU | BPF_RSH | BPF_K: w(dst) >>= imm
_ALU_MOV_K = 0xB4    # BPF_ALU | BPF_MOV | BPF_K: w(dst) = imm
_ALU_MOV_X = 0xBC    # BPF_ALU | BPF_MOV | BPF_X: w(dst) = w(src)
_JMP_JNE_K = 0x55    # BPF_JMP | BPF_JNE | BPF_K: if dst != imm: pc += off
_JMP_JNE_X = 0x5D    # BPF_JMP | BPF_JNE | BPF_X: if dst != src: pc += off
_JMP_EXIT = 0x95     # BPF_JMP | BPF_EXIT: return r0

_MAX_NUMBER = (1 << 31) - 1  # a JNE immediate is a signed 32-bit number


@dataclass(frozen=True)
class DeviceRule:
    """One rule: ``type`` "a", "b" or "c"; ``major``/``minor`` ``None`` for ``*``; ``access``
    a subset of "rwm"; ``allow`` False for a deny rule."""

    type: str
    major: int | None
    minor: int | None
    access: str
    allow: bool = True

    def __str__(self) -> str:
        return f"{self.type} {_number_text(self.major)}:{_number_text(self.minor)} {self.access}"


def _number_text(value: int | None) -> str:
    return "*" if value is None else str(value)


def parse_rule(text: str, allow: bool = True) -> DeviceRule:
    """A rule in the v1 ``devices.allow`` syntax (``c 1:3 rwm``, ``b *:* m``, ``a``)."""
    fields = text.split()
    if fields and fields[0] == "a":
        return DeviceRule("a", None, None, "rwm", allow)
    if len(fields) != 3 or fields[0] not in DEVICE_TYPES:
        raise errdefs.InvalidArgument(f"invalid device cgroup rule {text!r}: want '<a|b|c> <major>:<minor> <rwm>'")
    major_text, colon, minor_text = fields[1].partition(":")
    access = fields[2]
    if not colon or not access or any(letter not in ACCESS_BITS for letter in access) \
            or len(set(access)) != len(access):
        raise errdefs.InvalidArgument(f"invalid device cgroup rule {text!r}: want '<a|b|c> <major>:<minor> <rwm>'")

    def number(value: str) -> int | None:
        if value == "*":
            return None
        if not value.isdigit() or int(value) > _MAX_NUMBER:
            raise errdefs.InvalidArgument(f"invalid device number {value!r} in device cgroup rule {text!r}")
        return int(value)

    return DeviceRule(fields[0], number(major_text), number(minor_text), "".join(sorted(access)), allow)


def _access_mask(access: str) -> int:
    return sum(ACCESS_BITS[letter] for letter in set(access))


def evaluate(rules: tuple[DeviceRule, ...] | list[DeviceRule], device_type: int, major: int, minor: int,
             access: int) -> bool:
    """Whether ``rules`` allow a request (``device_type`` 1 block / 2 char, ``access`` the
    mask of ``BPF_DEVCG_ACC_*`` bits): the reference the generated program must agree with."""
    for rule in rules:
        if rule.type != "a":
            if DEVICE_TYPES[rule.type] != device_type:
                continue
            if access & ~_access_mask(rule.access):
                continue
            if rule.major is not None and rule.major != major:
                continue
            if rule.minor is not None and rule.minor != minor:
                continue
        return rule.allow
    return False


def _instruction(code: int, destination: int = 0, source: int = 0, offset: int = 0, immediate: int = 0) -> bytes:
    # struct bpf_insn { u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm; }: the bitfields
    # are allocated from the low bits on little-endian machines, from the high bits otherwise
    registers = destination | source << 4 if sys.byteorder == "little" else destination << 4 | source
    return struct.pack("=BBhi", code, registers, offset, immediate)


def program(rules: tuple[DeviceRule, ...] | list[DeviceRule]) -> bytes:
    """The packed ``struct bpf_insn`` array of the filter for ``rules`` (8 bytes each)."""
    code = [
        _instruction(_LDX_MEM_W, 2, 1, 0), _instruction(_ALU_AND_K, 2, immediate=0xFFFF),
        _instruction(_LDX_MEM_W, 3, 1, 0), _instruction(_ALU_RSH_K, 3, immediate=16),
        _instruction(_LDX_MEM_W, 4, 1, 4),
        _instruction(_LDX_MEM_W, 5, 1, 8),
    ]
    for rule in rules:
        # each test is (code, dst, src, immediate) of a jump past the rule when it fails
        tests: list[tuple[list[bytes], int, int, int, int]] = []
        if rule.type != "a":
            tests.append(([], _JMP_JNE_K, 2, 0, DEVICE_TYPES[rule.type]))
            mask = _access_mask(rule.access)
            if mask != 0b111:
                tests.append(([_instruction(_ALU_MOV_X, 1, 3), _instruction(_ALU_AND_K, 1, immediate=mask)],
                              _JMP_JNE_X, 1, 3, 0))
            if rule.major is not None:
                tests.append(([], _JMP_JNE_K, 4, 0, rule.major))
            if rule.minor is not None:
                tests.append(([], _JMP_JNE_K, 5, 0, rule.minor))
        block_length = sum(len(prefix) + 1 for prefix, *_ in tests) + 2
        emitted = 0
        for prefix, jump, destination, source, immediate in tests:
            code.extend(prefix)
            emitted += len(prefix) + 1
            code.append(_instruction(jump, destination, source, block_length - emitted, immediate))
        code.append(_instruction(_ALU_MOV_K, 0, immediate=1 if rule.allow else 0))
        code.append(_instruction(_JMP_EXIT))
        if not tests:
            # the rule matches every request: the verifier refuses the unreachable rest
            return b"".join(code)
    code.append(_instruction(_ALU_MOV_K, 0, immediate=0))
    code.append(_instruction(_JMP_EXIT))
    return b"".join(code)


def attach(directory: str, rules: tuple[DeviceRule, ...] | list[DeviceRule]) -> None:
    """Load the filter for ``rules`` and make it the only one attached to the cgroup2
    ``directory`` (the ancestors' programs still apply: every one must allow)."""
    from lamina import sys as lsys

    try:
        program_fd = lsys.bpf_prog_load(BPF_PROG_TYPE_CGROUP_DEVICE, program(rules), "GPL")
    except OSError as exc:
        raise errdefs.System(f"cannot load the device filter of cgroup {directory}: {exc.strerror}") from exc
    try:
        try:
            directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise errdefs.System(f"cannot open cgroup {directory}: {exc.strerror}") from exc
        try:
            try:
                old = lsys.bpf_prog_query(directory_fd, BPF_CGROUP_DEVICE)
                lsys.bpf_prog_attach(directory_fd, program_fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
            except OSError as exc:
                raise errdefs.System(f"cannot attach the device filter to cgroup {directory}: "
                                     f"{exc.strerror}") from exc
            for program_id in old:
                try:
                    old_fd = lsys.bpf_prog_get_fd_by_id(program_id)
                except FileNotFoundError:
                    continue  # detached meanwhile
                except OSError as exc:
                    raise errdefs.System(f"cannot open device filter {program_id} of cgroup {directory}: "
                                         f"{exc.strerror}") from exc
                try:
                    lsys.bpf_prog_detach(directory_fd, old_fd, BPF_CGROUP_DEVICE)
                except OSError as exc:
                    raise errdefs.System(f"cannot detach device filter {program_id} from cgroup {directory}: "
                                         f"{exc.strerror}") from exc
                finally:
                    os.close(old_fd)
        finally:
            os.close(directory_fd)
    finally:
        os.close(program_fd)


def attached_programs(directory: str) -> list[int]:
    """The ids of the device filters attached to the cgroup2 ``directory`` itself."""
    from lamina import sys as lsys

    try:
        directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise errdefs.System(f"cannot open cgroup {directory}: {exc.strerror}") from exc
    try:
        return lsys.bpf_prog_query(directory_fd, BPF_CGROUP_DEVICE)
    except OSError as exc:
        raise errdefs.System(f"cannot list the device filters of cgroup {directory}: {exc.strerror}") from exc
    finally:
        os.close(directory_fd)
