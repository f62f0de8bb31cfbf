"""The exec trampoline: the last program a lamina runtime process runs before the container's
command, so that no host binary is ever the executable of a process inside a container.

Why (the runc CVE-2019-5736 class).  The native runtime's child is a fork of the host's Python
interpreter.  Until its ``execve`` it is a process inside the container whose
``/proc/<pid>/exe`` is the host's ``python3``; and a command whose script starts with
``#!/proc/self/exe`` makes the kernel resolve ``/proc/self/exe`` *in the exec'ing process*,
i.e. run the host interpreter as the container's process, from where container root can open
the host binary for writing.  runc answers with a sealed memfd copy of itself (``runc-dmz``,
``cloned_binary.c``); copying a whole Python interpreter and its shared libraries is not an
option, so lamina's runtime ends with a jump through a tiny static program instead:

* the child finishes every step in Python (non-dumpable since before it entered the
  container's namespaces, see :mod:`lamina.runtime.native`), then ``fexecve``\\ s this program
  from a sealed memfd (:func:`open_trampoline`): from that moment the process's executable and
  its only mapping are an anonymous, write-sealed 200-byte file that exists nowhere on the host;
* the program marks the status pipe (always descriptor 3) close-on-exec and ``execve``\\ s
  ``argv[1]`` with the arguments ``argv[2:]`` and its own environment;
* if that ``execve`` fails it writes ``e<errno + 0x30>\\n`` to the status pipe (read by
  :func:`lamina.runtime.child.read_status`) and exits 127 (ENOENT) or 126.

A ``#!/proc/self/exe`` script thus runs the trampoline again, which can only ``execve`` the
container's own files (each round drops one argument, so it ends).  The program is assembled
here as bytes, with its assembly beside it (x86-64 only; on another architecture
:func:`open_trampoline` returns ``None`` and the runtime execs directly, as before).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

__all__ = ["STATUS_FD", "decode_failure", "open_trampoline"]

STATUS_FD = 3

# GNU as, intel syntax; entry with rsp -> argc, argv[0..argc-1], NULL, envp...
#   mov edi, 3 ; mov esi, 2 (F_SETFD) ; mov edx, 1 (FD_CLOEXEC) ; mov eax, 72 (fcntl) ; syscall
#   mov rcx, [rsp] ; cmp rcx, 3 ; jl usage
#   mov rdi, [rsp+16]              (argv[1], the path)
#   lea rsi, [rsp+24]              (&argv[2], the command's argv)
#   lea rdx, [rsp+rcx*8+16]        (envp)
#   mov eax, 59 (execve) ; syscall ; neg eax ; jmp report
# usage: mov eax, 22 (EINVAL)
# report: add al, 0x30 ; store "e", al, "\n" at [rsp-3] ; mov ebx, eax
#   mov edi, 3 ; lea rsi, [rsp-3] ; mov edx, 3 ; mov eax, 1 (write) ; syscall
#   mov edi, 126 ; cmp bl, 0x32 (ENOENT) ; jne finish ; mov edi, 127
# finish: mov eax, 231 (exit_group) ; syscall
_X86_64_CODE = bytes.fromhex(
    "bf03000000be02000000ba01000000b8480000000f05488b0c244883f9037c1a488b7c2410488d742418"
    "488d54cc10b83b0000000f05f7d8eb05b8160000000430c64424fd65884424fec64424ff0a89c3bf0300"
    "0000488d7424fdba03000000b8010000000f05bf7e00000080fb327505bf7f000000b8e70000000f05")

_BASE = 0x400000
_PT_LOAD, _PT_GNU_STACK = 1, 0x6474E551
_PF_X, _PF_W, _PF_R = 1, 2, 4
_MFD_EXEC = 0x0010


def _elf(code: bytes, machine: int) -> bytes:
    """A static ELF64 executable: one read+execute segment holding headers and ``code``."""
    header_size, program_header_size, program_headers = 64, 56, 2
    entry_offset = header_size + program_header_size * program_headers
    size = entry_offset + len(code)
    header = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 2, machine, 1,
                         _BASE + entry_offset, header_size, 0, 0, header_size, program_header_size,
                         program_headers, 64, 0, 0)
    load = struct.pack("<IIQQQQQQ", _PT_LOAD, _PF_R | _PF_X, 0, _BASE, _BASE, size, size, 0x1000)
    stack = struct.pack("<IIQQQQQQ", _PT_GNU_STACK, _PF_R | _PF_W, 0, 0, 0, 0, 0, 16)
    return header + load + stack + code


def _program() -> bytes | None:
    if os.uname().machine == "x86_64":
        return _elf(_X86_64_CODE, 62)
    return None


def open_trampoline() -> int | None:
    """A close-on-exec, read-only descriptor of a sealed memfd holding the trampoline, for
    ``os.execve(fd, ...)``; ``None`` when lamina has no trampoline for this architecture."""
    program = _program()
    if program is None:
        return None
    try:
        # MFD_EXEC: executable even where the vm.memfd_noexec sysctl makes memfds noexec
        memfd = os.memfd_create("lamina-exec", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING | _MFD_EXEC)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # kernels before 6.3 know no MFD_EXEC
            raise
        memfd = os.memfd_create("lamina-exec", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(program)
        while view:
            view = view[os.write(memfd, view):]
        os.fchmod(memfd, 0o555)
        fcntl.fcntl(memfd, fcntl.F_ADD_SEALS,
                     fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
        # execve refuses a file open for writing (ETXTBSY): keep only a read-only descriptor
        read_only = os.open(f"/proc/self/fd/{memfd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(memfd)
    return read_only


def decode_failure(line: bytes) -> int | None:
    """The errno of a status line the trampoline wrote (``e<errno + 0x30>``), else ``None``."""
    if len(line) == 2 and line[:1] == b"e":
        return line[1] - 0x30
    return None
