"""``-u user[:group]`` resolution against the image's own ``/etc/passwd`` and ``/etc/group``.

The files are read inside the container's root filesystem by file descriptor
(:func:`lamina.runtime.paths.open_in_root`), so a symlinked ``/etc/passwd`` resolves inside
the root, never on the host; a file that is not a regular file (a FIFO, a device) or is
unreasonably large is refused.

Rules (Docker's, as runc's ``GetExecUser`` applies them):

- ``""``: uid 0, gid 0 (and HOME from root's passwd entry, else ``/``);
- a user that is a number is always taken as a uid; if passwd has an entry for it, that
  entry's gid and home apply, else gid 0 and home ``/``;
- a user name must have a passwd entry ("unable to find user NAME: no matching entries in
  passwd file");
- ``user:group``: the group by name (it must exist: "unable to find group NAME: no matching
  entries in group file") or by number (which need not exist); no supplementary groups;
- ``user`` alone, matched by name in passwd: supplementary groups are the groups of
  ``/etc/group`` that list that name as a member;
- the primary gid always comes first among the supplementary groups (as containerd and
  moby do since GHSA-hmfx-3pcx-653p);
- ids are in 0..2147483647.
"""

from __future__ import annotations

import errno
import os
import stat

from lamina import errdefs
from lamina.records import dataclass
from lamina.runtime.paths import open_in_root

__all__ = [
    "MAX_ID",
    "ExecUser",
    "GroupEntry",
    "PasswdEntry",
    "group_ids_in_root",
    "home_for_uid",
    "parse_group",
    "parse_passwd",
    "resolve_user",
    "resolve_user_in_root",
    "with_home",
]

MAX_ID = 2**31 - 1
_MAX_FILE_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class PasswdEntry:
    """One line of the container's /etc/passwd."""

    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class GroupEntry:
    """One line of the container's /etc/group."""

    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class ExecUser:
    """The identity a container process runs as."""

    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


def _int_or_none(text: str) -> int | None:
    if not text or not text.isdigit() or not text.isascii():
        return None
    return int(text)


def _records(text: str, minimum_fields: int) -> list[list[str]]:
    """The ``:``-separated fields of each line of a passwd or group file with at least
    ``minimum_fields`` fields; blank lines and comments are skipped."""
    records = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            fields = line.split(":")
            if len(fields) >= minimum_fields:
                records.append(fields)
    return records


def parse_passwd(text: str) -> list[PasswdEntry]:
    """Entries of a passwd file; malformed lines (too few fields, non-numeric ids) are skipped
    as libc does."""
    entries = []
    for fields in _records(text, 4):
        uid, gid = _int_or_none(fields[2]), _int_or_none(fields[3])
        if uid is not None and gid is not None:
            entries.append(PasswdEntry(fields[0], uid, gid, fields[5] if len(fields) > 5 else ""))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    entries = []
    for fields in _records(text, 3):
        gid = _int_or_none(fields[2])
        if gid is not None:
            members = tuple(m for m in fields[3].split(",") if m) if len(fields) > 3 else ()
            entries.append(GroupEntry(fields[0], gid, members))
    return entries


def _check_range(value: int) -> int:
    if value > MAX_ID:
        raise errdefs.InvalidArgument(f"uids and gids must be in range 0-{MAX_ID}")
    return value


def resolve_user(spec: str, passwd: list[PasswdEntry] | None, group: list[GroupEntry] | None) -> ExecUser:
    """Resolve ``spec`` (``user``, ``user:group``, numbers or names) against parsed files;
    ``None`` stands for a file the image does not have."""
    user_part, _, group_part = spec.partition(":")
    uid_number = _int_or_none(user_part)
    gid_number = _int_or_none(group_part)

    uid, gid, home = 0, 0, "/"
    matched_name = ""
    if user_part == "":
        match = [entry for entry in passwd or () if entry.uid == 0]
    elif uid_number is not None:
        match = [entry for entry in passwd or () if entry.uid == uid_number]
    else:
        match = [entry for entry in passwd or () if entry.name == user_part]
    if match:
        # first match wins, even when several entries match
        matched_name = match[0].name
        uid, gid, home = match[0].uid, match[0].gid, match[0].home or "/"
    elif user_part:
        if uid_number is None:
            raise errdefs.InvalidArgument(f"unable to find user {user_part}: no matching entries in passwd file")
        uid = _check_range(uid_number)

    additional: tuple[int, ...] = ()
    if group_part:
        found = [entry for entry in group or ()
                 if (entry.gid == gid_number if gid_number is not None else entry.name == group_part)]
        if found:
            gid = found[0].gid
        elif gid_number is None:
            raise errdefs.InvalidArgument(f"unable to find group {group_part}: no matching entries in group file")
        else:
            gid = _check_range(gid_number)
    elif matched_name:
        additional = tuple(entry.gid for entry in group or () if matched_name in entry.members)
    # the primary group is always a supplementary group too (containerd/moby's fix for
    # GHSA-hmfx-3pcx-653p: otherwise a group-denied file is readable through a dropped group)
    additional = tuple(dict.fromkeys((gid, *additional)))
    return ExecUser(uid=uid, gid=gid, additional_gids=additional, home=home)


def _read_in_root(root_fd: int, path: str) -> str | None:
    try:
        fd = open_in_root(root_fd, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise errdefs.System(f"cannot open {path} in the container: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise errdefs.InvalidArgument(f"{path} in the container is not a regular file")
        if info.st_size > _MAX_FILE_SIZE:
            raise errdefs.InvalidArgument(f"{path} in the container is larger than {_MAX_FILE_SIZE} bytes")
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            total += len(chunk)
            if total > _MAX_FILE_SIZE:
                raise errdefs.InvalidArgument(f"{path} in the container is larger than {_MAX_FILE_SIZE} bytes")
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")
    finally:
        os.close(fd)


def resolve_user_in_root(root: str | int, spec: str) -> ExecUser:
    """Resolve ``spec`` against ``/etc/passwd`` and ``/etc/group`` of the root filesystem
    ``root`` (a path, or an open directory descriptor of it)."""
    own_fd = isinstance(root, str)
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if isinstance(root, str) else root
    except OSError as exc:
        raise errdefs.NotFound(f"container root filesystem {root}: {exc.strerror}") from exc
    try:
        passwd_text = _read_in_root(root_fd, "/etc/passwd")
        group_text = _read_in_root(root_fd, "/etc/group")
    finally:
        if own_fd:
            os.close(root_fd)
    return resolve_user(spec,
                        parse_passwd(passwd_text) if passwd_text is not None else None,
                        parse_group(group_text) if group_text is not None else None)


def group_ids_in_root(root: str, groups: list[str]) -> tuple[int, ...]:
    """The gids of ``--group-add`` values: numbers as they are, names from the root
    filesystem's ``/etc/group`` (Docker: ``Unable to find group NAME``)."""
    if all(group.isdigit() for group in groups):
        return tuple(_check_range(int(group)) for group in groups)
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        entries = parse_group(_read_in_root(root_fd, "/etc/group") or "")
    finally:
        os.close(root_fd)
    result = []
    for group in groups:
        if group.isdigit():
            result.append(_check_range(int(group)))
            continue
        match = next((entry.gid for entry in entries if entry.name == group), None)
        if match is None:
            raise errdefs.NotFound(f"Unable to find group {group}: no matching entries in group file")
        result.append(match)
    return tuple(result)


def with_home(env: tuple[str, ...] | list[str], home: str) -> tuple[str, ...]:
    """``env`` with ``HOME=home`` appended when it has no HOME (as runc does)."""
    if any(item.startswith("HOME=") for item in env):
        return tuple(env)
    return (*env, f"HOME={home}")


def home_for_uid(root: str | int, uid: int) -> str:
    """HOME of ``uid`` from the root filesystem's passwd (first entry), ``/`` without one."""
    own_fd = isinstance(root, str)
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if isinstance(root, str) else root
    try:
        text = _read_in_root(root_fd, "/etc/passwd")
    except errdefs.LaminaError:
        return "/"
    finally:
        if own_fd:
            os.close(root_fd)
    for entry in parse_passwd(text or ""):
        if entry.uid == uid:
            return entry.home or "/"
    return "/"
