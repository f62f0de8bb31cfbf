"""Hostile archives must never touch anything outside the extraction root.

The case list is containerd's ``TestBreakouts`` (pkg/archive/tar_test.go), plus cases aimed at
a *victim* directory that sits beside the target.  Every case runs in both whiteout modes; after
applying, the victim and everything else outside the target is byte-for-byte and
metadata-for-metadata unchanged, no host path was created, and the case either failed with
InvalidArgument or produced exactly the contained result containerd expects.  Where lamina is
stricter than containerd (names or hardlinks that climb above the root are refused, a parent
that is a dangling symlink is refused), the expected outcome is that refusal.

Each extraction runs in a forked child chrooted into the test's temporary directory, so that
absolute symlinks such as ``/etc`` in the cases can never reach the real host even if the code
under test regressed: the damage would land beside the victim and be reported.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from lamina import errdefs, fsutil
from lamina import sys as lamina_sys
from lamina.archive import TarReader, WhiteoutMode, apply_tar

from .helpers import outside_snapshot

pytestmark = pytest.mark.privileged       # whiteout devices and ownership need root

REFUSED = "refused"
VICTIM = "/victim"        # the victim's path as seen from inside the chroot


# -- tar building, with containerd's tartest argument order (oldname, newname) --------------

def Dir(name: str, mode: int = 0o755) -> tuple[tarfile.TarInfo, bytes | None]:
    item = tarfile.TarInfo(name)
    item.type, item.mode = tarfile.DIRTYPE, mode
    return item, None


def File(name: str, content: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes | None]:
    item = tarfile.TarInfo(name)
    item.size, item.mode = len(content), mode
    return item, content


def Symlink(target: str, name: str) -> tuple[tarfile.TarInfo, bytes | None]:
    item = tarfile.TarInfo(name)
    item.type, item.linkname, item.mode = tarfile.SYMTYPE, target, 0o777
    return item, None


def Link(target: str, name: str) -> tuple[tarfile.TarInfo, bytes | None]:
    item = tarfile.TarInfo(name)
    item.type, item.linkname = tarfile.LNKTYPE, target
    return item, None


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for item, content in members:
            archive.addfile(item, io.BytesIO(content) if content is not None else None)
    return out.getvalue()


# -- pre-population of the target (containerd's fstest appliers) -----------------------------

def create_dir(path: str, mode: int = 0o755) -> Callable[[str], None]:
    return lambda root: os.makedirs(os.path.join(root, path.strip("/")), mode, exist_ok=True)


def create_file(path: str, content: bytes, mode: int = 0o644) -> Callable[[str], None]:
    def apply(root: str) -> None:
        full = os.path.join(root, path.strip("/"))
        with open(full, "wb") as handle:
            handle.write(content)
        os.chmod(full, mode)
    return apply


def create_symlink(target: str, path: str) -> Callable[[str], None]:
    return lambda root: os.symlink(target, os.path.join(root, path.strip("/")))


def create_link(target: str, path: str) -> Callable[[str], None]:
    return lambda root: os.link(os.path.join(root, target.strip("/")), os.path.join(root, path.strip("/")))


# -- validators: paths resolved inside the root, like containerd's fs.RootPath ---------------

def _stat_in_root(root: str, path: str, follow: bool = True) -> os.stat_result:
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = os.O_PATH | (0 if follow else os.O_NOFOLLOW)
        fd = fsutil.open_beneath(root_fd, path.strip("/") or ".", flags)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)


def _read_in_root(root: str, path: str) -> bytes:
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = fsutil.open_beneath(root_fd, path.strip("/"), os.O_RDONLY)
    finally:
        os.close(root_fd)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def unbroken(root: str) -> None:
    assert _read_in_root(root, "etc/unbroken") == b"unbroken"


def same_file(first: str, second: str) -> Callable[[str], None]:
    def check(root: str) -> None:
        a, b = _stat_in_root(root, first), _stat_in_root(root, second)
        assert (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino), f"{first} and {second} differ"
    return check


def not_same_file(first: str, second: str) -> Callable[[str], None]:
    def check(root: str) -> None:
        a, b = _stat_in_root(root, first), _stat_in_root(root, second)
        assert (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino), f"{first} and {second} are the same file"
    return check


def same_symlink(first: str, second: str) -> Callable[[str], None]:
    def check(root: str) -> None:
        for path in (first, second):
            assert stat.S_ISLNK(os.lstat(os.path.join(root, path.strip("/"))).st_mode), f"{path} is no symlink"
        assert (os.readlink(os.path.join(root, first.strip("/")))
                == os.readlink(os.path.join(root, second.strip("/"))))
    return check


def file_value(path: str, content: bytes) -> Callable[[str], None]:
    return lambda root: _assert_equal(_read_in_root(root, path), content)


def _assert_equal(actual: object, expected: object) -> None:
    assert actual == expected


def not_exists(path: str) -> Callable[[str], None]:
    def check(root: str) -> None:
        assert not os.path.lexists(os.path.join(root, path.strip("/"))), f"{path} exists"
    return check


def whiteout_device(path: str) -> Callable[[str], None]:
    def check(root: str) -> None:
        info = os.lstat(os.path.join(root, path.strip("/")))
        assert stat.S_ISCHR(info.st_mode) and info.st_rdev == 0, f"{path} is not a whiteout"
    return check


def all_of(*checks: Callable[[str], None]) -> Callable[[str], None]:
    def check(root: str) -> None:
        for one in checks:
            one(root)
    return check


Outcome = Callable[[str], None] | str


@dataclass
class Case:
    id: str
    members: Callable[[Context], list[tuple[tarfile.TarInfo, bytes | None]]]
    overlay: Outcome
    apply: Outcome | None = None          # None: same as overlay
    prepare: list[Callable[[str], None]] = field(default_factory=list)

    def outcome(self, mode: WhiteoutMode) -> Outcome:
        if mode is WhiteoutMode.APPLY and self.apply is not None:
            return self.apply
        return self.overlay


@dataclass
class Context:
    victim: str          # path of the victim inside the chroot
    tag: str


E = b"unbroken"

CASES = [
    # ---- containerd TestBreakouts ----
    Case("symlink with an absolute target resolves inside the root",
         lambda c: [Dir("etc"), Symlink("/etc", "localetc"), File("/localetc/unbroken", E)], unbroken),
    Case("symlink going up and out resolves inside the root",
         lambda c: [Dir("etc"), Dir("dummy"), Symlink("/dummy/../etc", "localetc"),
                    File("/localetc/unbroken", E)], unbroken),
    Case("chained absolute symlinks resolve inside the root",
         lambda c: [Dir("etc"), Dir("dummy"), Symlink("/etc", "/dummy/etc"), Symlink("/dummy/etc", "localetc"),
                    File("/dummy/etc/unbroken", E)], unbroken),
    Case("chained relative symlinks resolve inside the root",
         lambda c: [Dir("etc"), Dir("dummy"), Symlink("/etc", "/dummy/etc"), Symlink("./dummy/etc", "localetc"),
                    File("/dummy/etc/unbroken", E)], unbroken),
    Case("an empty file through a symlink empties the file inside the root",
         lambda c: [Dir("etc"), File("etc/emptied", b"notempty"), Symlink("/etc", "localetc"),
                    File("/localetc/emptied", b"")], file_value("etc/emptied", b"")),
    Case("hardlink through a relative symlink links inside the root",
         lambda c: [Dir("etc", 0o770), File("/etc/passwd", b"inside"), Dir("breakouts"),
                    Symlink("../../etc", "breakouts/d1"), Link("/breakouts/d1/passwd", "breakouts/mypasswd")],
         same_file("/breakouts/mypasswd", "/etc/passwd")),
    Case("hardlink through a down-and-out symlink links inside the root",
         lambda c: [Dir("etc", 0o770), File("/etc/passwd", b"inside"), Dir("breakouts"), Dir("downandout"),
                    Symlink("../downandout/../../etc", "breakouts/d1"),
                    Link("/breakouts/d1/passwd", "breakouts/mypasswd")],
         same_file("/breakouts/mypasswd", "/etc/passwd")),
    Case("hardlink through an absolute symlink links inside the root",
         lambda c: [Dir("etc", 0o770), File("/etc/passwd", b"inside"), Symlink("/etc", "localetc"),
                    Link("/localetc/passwd", "localpasswd")], same_file("localpasswd", "/etc/passwd")),
    Case("hardlink through a long relative symlink links inside the root",
         lambda c: [Dir("etc", 0o770), File("/etc/passwd", b"inside"), Symlink("../../../../../../../etc", "localetc"),
                    Link("/localetc/passwd", "localpasswd")], same_file("localpasswd", "/etc/passwd")),
    Case("hardlink through a symlink via a missing directory is refused",
         lambda c: [Dir("etc", 0o770), File("/etc/passwd", b"inside"), Symlink("upandout/../../../etc", "localetc"),
                    Link("/localetc/passwd", "localpasswd")], REFUSED),
    Case("hardlink to a relative target above the root is refused",
         lambda c: [Dir("etc", 0o770), File("/etc/passwd", b"inside"), Link("../../../../../etc/passwd", "localpasswd")],
         REFUSED),
    Case("hardlink to an absolute target links inside the root",
         lambda c: [Dir("etc", 0o770), File("/etc/passwd", b"inside"), Link("/etc/passwd", "localpasswd")],
         same_file("localpasswd", "/etc/passwd")),
    Case("symlink named dot-dot is refused",
         lambda c: [Dir("etc", 0o770), File("/etc/passwd", b"inside"), Symlink("/etc/", ".."),
                    Link("/etc/passwd", "localpasswd")], REFUSED),
    Case("symlink with an empty name is ignored",
         lambda c: [Dir("etc", 0o770), File("/etc/passwd", b"inside"), Symlink("/etc/", ""),
                    Link("/etc/passwd", "localpasswd")], same_file("/localpasswd", "/etc/passwd")),
    Case("symlink whose name ends in dot-dot names its parent",
         lambda c: [Dir("etc", 0o770), File("/etc/passwd", b"inside"), Symlink("/etc/", "localetc/sub/.."),
                    Link("/etc/passwd", "/localetc/localpasswd")], same_file("/localetc/localpasswd", "/etc/passwd")),
    Case("directory name ending in a slash",
         lambda c: [Dir("etc", 0o770), File("/etc/passwd", b"inside"), Dir("localetc/", 0o770),
                    Link("/etc/passwd", "/localetc/localpasswd")], same_file("/localetc/localpasswd", "/etc/passwd")),
    Case("symlink replacing an existing directory",
         lambda c: [Symlink("/etc", "localetc"), Link("/etc/passwd", "/localetc/localpasswd")],
         same_file("/localetc/localpasswd", "/etc/passwd"),
         prepare=[create_dir("/etc/"), create_file("/etc/passwd", b"inside"), create_dir("/localetc/")]),
    Case("relative symlink replacing an existing directory",
         lambda c: [Symlink("../../etc", "localetc"), Link("/etc/passwd", "/localetc/localpasswd")],
         same_file("/localetc/localpasswd", "/etc/passwd"),
         prepare=[create_dir("/etc/"), create_file("/etc/passwd", b"inside"), create_dir("/localetc/")]),
    Case("directory replacing an existing absolute symlink",
         lambda c: [Dir("/localetc/"), Link("/etc/passwd", "/localetc/localpasswd")],
         all_of(same_file("/localetc/localpasswd", "/etc/passwd"), not_exists("/etc/localpasswd")),
         prepare=[create_dir("/etc/"), create_file("/etc/passwd", b"inside"), create_symlink("/etc", "localetc")]),
    Case("directory replacing a symlink that carried a hardlink",
         lambda c: [Dir("/localetc/"), File("/localetc/localpasswd", b"different")],
         not_same_file("/localetc/localpasswd", "/etc/passwd"),
         prepare=[create_dir("/etc/"), create_file("/etc/passwd", b"inside"), create_symlink("etc", "localetc"),
                  create_link("/etc/passwd", "/localetc/localpasswd")]),
    Case("whiteout of the root's parent is refused",
         lambda c: [File(".wh...", b"")], REFUSED,
         prepare=[create_dir("/etc/"), create_file("/etc/passwd", b"inside")]),
    Case("whiteout of a directory's parent is refused",
         lambda c: [File("etc/.wh...", b"")], REFUSED,
         prepare=[create_dir("/etc/"), create_file("/etc/passwd", b"inside")]),
    Case("whiteout of the root is refused",
         lambda c: [File(".wh..", b"")], REFUSED,
         prepare=[create_dir("/etc/"), create_file("/etc/passwd", b"inside")]),
    Case("whiteout of the current directory is refused",
         lambda c: [File("etc/.wh..", b"")], REFUSED,
         prepare=[create_dir("/etc/"), create_file("/etc/passwd", b"inside")]),
    Case("whiteout of a symlink removes the link, not its target",
         lambda c: [File(".wh.localetc", b"")],
         all_of(file_value("etc/passwd", b"all users"), whiteout_device("localetc")),
         apply=all_of(file_value("etc/passwd", b"all users"), not_exists("localetc")),
         prepare=[create_dir("/etc/"), create_file("/etc/passwd", b"all users"), create_symlink("/etc", "localetc")]),
    Case("whiteout below a symlinked directory acts inside the root",
         lambda c: [File("localetc/.wh.whitedout", b"")],
         all_of(file_value("etc/passwd", b"all users"), whiteout_device("etc/whitedout")),
         apply=all_of(file_value("etc/passwd", b"all users"), not_exists("etc/whitedout")),
         prepare=[create_dir("/etc/"), create_file("/etc/passwd", b"all users"),
                  create_file("/etc/whitedout", b"ahhhh whiteout"), create_symlink("/etc", "localetc")]),
    Case("whiteout prefix on a directory name is just a name",
         lambda c: [File(".wh.etc/somefile", b"non-empty")],
         all_of(file_value("etc/passwd", b"all users"), file_value(".wh.etc/somefile", b"non-empty")),
         prepare=[create_dir("/etc/"), create_file("/etc/passwd", b"all users"),
                  create_file("/etc/whitedout", b"ahhhh whiteout"), create_symlink("/etc", "localetc")]),
    Case("whiteout below a dangling symlink",
         lambda c: [File("localetc/.wh.etc", b"")], REFUSED,
         apply=file_value("etc/passwd", b"all users"),
         prepare=[create_dir("/etc/"), create_file("/etc/passwd", b"all users"), create_symlink("/dne", "localetc")]),
    Case("whiteout with a relative path resolves lexically",
         lambda c: [File("dne/../.wh.etc", b"")], not_exists("etc/passwd"),
         prepare=[create_dir("/etc/"), create_file("/etc/passwd", b"all users"), create_symlink("/dne", "localetc")]),
    Case("symlink to the host root over a directory, then files through it",
         lambda c: [Dir("foo"), Dir("foo/tmp"), File(f"foo/tmp/breakout-{c.tag}", b"\0\1\2"), Symlink("/", "foo"),
                    File(f"foo/tmp/breakout-{c.tag}", b"\3\4\5"), Dir("foo"), Dir("foo/tmp"),
                    File(f"foo/tmp/breakout-{c.tag}", b"\6\7\x08")],
         lambda root: file_value(f"foo/tmp/breakout-{os.path.basename(os.path.dirname(root))}", b"\6\7\x08")(root)),
    Case("hardlink to a symlink created before its target",
         lambda c: [Dir("etc", 0o770), Symlink("/etc/passwd", "localpasswd"), Link("localpasswd", "localpasswd-dup"),
                    File("/etc/passwd", b"after")], same_file("localpasswd-dup", "/etc/passwd")),
    Case("hardlink to a relative symlink links the symlink",
         lambda c: [Dir("etc", 0o770), File("/etc/passwd", b"inside"), Symlink("../../../../../etc/passwd", "passwdlink"),
                    Link("/passwdlink", "localpasswd")],
         all_of(same_symlink("/localpasswd", "/passwdlink"), same_file("/localpasswd", "/etc/passwd"))),
    Case("hardlink to an absolute symlink links the symlink",
         lambda c: [Dir("etc", 0o770), File("/etc/passwd", b"inside"), Symlink("/etc/passwd", "passwdlink"),
                    Link("/passwdlink", "localpasswd")],
         all_of(same_symlink("/localpasswd", "/passwdlink"), same_file("/localpasswd", "/etc/passwd"))),
    Case("hardlink to a symlink pointing outside never changes the outside mode",
         lambda c: [Symlink(os.path.join(c.victim, "perm400"), os.path.join(c.victim, "also-exists-outside-root")),
                    Link(os.path.join(c.victim, "also-exists-outside-root"), "sketchylink")],
         lambda root: None),
    # ---- aimed at the victim directory beside the target ----
    Case("files through a relative symlink to the victim stay inside",
         lambda c: [Symlink("../victim", "v"), File("v/etc/passwd", b"pwned")], REFUSED),
    Case("files through an absolute symlink to the victim stay inside",
         lambda c: [Symlink(c.victim, "v"), File("v/etc/passwd", b"pwned"), File("v/new", b"pwned")], REFUSED),
    Case("hardlink to the victim by a relative name is refused",
         lambda c: [Link("../victim/etc/passwd", "stolen")], REFUSED),
    Case("hardlink to the victim by its absolute path is refused",
         lambda c: [Link(os.path.join(c.victim, "etc/passwd"), "stolen")], REFUSED),
    Case("hardlink through a symlink to the victim is refused",
         lambda c: [Symlink(c.victim, "v"), Link("v/etc/passwd", "stolen")], REFUSED),
    Case("file replacing a symlink to a victim file replaces the link",
         lambda c: [File("v", b"replaced", 0o777)],
         all_of(file_value("v", b"replaced")),
         prepare=[create_symlink(VICTIM + "/etc/passwd", "v")]),
    Case("directory metadata never follows a symlink to the victim",
         lambda c: [Dir("v", 0o777)], lambda root: None,
         prepare=[create_symlink(VICTIM + "/etc", "v")]),
    Case("symlink metadata is applied to the link, not to the victim",
         lambda c: [Symlink(os.path.join(c.victim, "etc/passwd"), "s")], lambda root: None),
    Case("whiteout through an absolute symlink to the victim does not delete it",
         lambda c: [File("v/.wh.etc", b""), File("v/etc/.wh.passwd", b"")], REFUSED,
         apply=lambda root: None,
         prepare=[create_symlink(VICTIM, "v")]),
    Case("opaque marker through a symlink to the victim does not empty it",
         lambda c: [File("v/etc/.wh..wh..opq", b"")], REFUSED,
         apply=lambda root: None,
         prepare=[create_symlink(VICTIM, "v")]),
    Case("opaque marker in the root never reaches the parent",
         lambda c: [File(".wh..wh..opq", b""), File("kept", b"k")],
         file_value("kept", b"k"), apply=all_of(file_value("kept", b"k"), not_exists("old")),
         prepare=[create_file("old", b"o")]),
    Case("directory replaced by a symlink to the victim, then written through",
         lambda c: [Dir("d"), File("d/first", b"1"), Symlink(c.victim, "d"), File("d/etc/passwd", b"pwned")], REFUSED),
]


def apply_in_chroot(base: str, data: bytes, mode: WhiteoutMode) -> tuple[str, str] | None:
    """Apply ``data`` to ``<base>/target`` from a child chrooted into ``base``.

    Returns None on success, or (error kind, message) for a LaminaError.
    """
    lamina_sys._libc()  # ctypes and libc are loaded on first use: load them before the chroot
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 0
        try:
            os.close(read_end)
            os.chroot(base)
            os.chdir("/")
            fd = os.open("/target", os.O_RDONLY | os.O_DIRECTORY)
            try:
                apply_tar(fd, TarReader(io.BytesIO(data)), mode)
                result: object = None
            except errdefs.LaminaError as exc:
                result = [type(exc).__name__, str(exc)]
            os.write(write_end, json.dumps(result).encode())
        except BaseException as exc:
            os.write(write_end, json.dumps(["crash", repr(exc)]).encode())
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read()
    os.waitpid(pid, 0)
    result = json.loads(output)
    if result is not None and result[0] == "crash":
        raise AssertionError(f"the extraction crashed: {result[1]}")
    return None if result is None else (result[0], result[1])


@pytest.mark.parametrize("mode", [WhiteoutMode.OVERLAY, WhiteoutMode.APPLY], ids=["overlay", "apply"])
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_breakout(tmp_path, case: Case, mode: WhiteoutMode) -> None:
    base = str(tmp_path)
    target = os.path.join(base, "target")
    victim = os.path.join(base, "victim")
    os.makedirs(os.path.join(victim, "etc"))
    with open(os.path.join(victim, "etc/passwd"), "wb") as handle:
        handle.write(b"victim: do not touch\n")
    os.setxattr(os.path.join(victim, "etc/passwd"), "user.victim", b"original")
    with open(os.path.join(victim, "perm400"), "wb") as handle:
        handle.write(b"...")
    os.chmod(os.path.join(victim, "perm400"), 0o400)
    with open(os.path.join(victim, "also-exists-outside-root"), "wb") as handle:
        handle.write(b"...")
    os.chmod(os.path.join(victim, "also-exists-outside-root"), 0o640)
    os.mkdir(target)
    for step in case.prepare:
        step(target)
    data = tar_of(*case.members(Context(victim=VICTIM, tag=os.path.basename(base))))
    outside_before = outside_snapshot(base, target)
    victim_xattr = os.getxattr(os.path.join(victim, "etc/passwd"), "user.victim")

    error = apply_in_chroot(base, data, mode)

    assert outside_snapshot(base, target) == outside_before, "something outside the target changed"
    assert os.getxattr(os.path.join(victim, "etc/passwd"), "user.victim") == victim_xattr
    outcome = case.outcome(mode)
    if outcome == REFUSED:
        assert error is not None and error[0] == "InvalidArgument", f"expected InvalidArgument, got {error!r}"
    else:
        assert error is None, f"unexpected error: {error!r}"
        outcome(target)  # type: ignore[operator]


def test_symlink_to_the_root_then_files_through_it_stay_inside(tmp_path) -> None:
    """containerd's SymlinkOverridePath, spelled out: "/" means the target, not the host."""
    tag = tmp_path.name
    target = tmp_path / "target"
    target.mkdir()
    data = tar_of(Dir("foo"), Dir("foo/tmp"), File(f"foo/tmp/breakout-{tag}", b"\0\1\2"), Symlink("/", "foo"),
                  File(f"foo/tmp/breakout-{tag}", b"\3\4\5"), Dir("foo"), Dir("foo/tmp"),
                  File(f"foo/tmp/breakout-{tag}", b"\6\7\x08"))
    assert apply_in_chroot(str(tmp_path), data, WhiteoutMode.APPLY) is None
    assert (target / "foo/tmp" / f"breakout-{tag}").read_bytes() == b"\6\7\x08"
    assert (target / "tmp" / f"breakout-{tag}").read_bytes() == b"\3\4\5"   # written via "/" = the root
    assert not (tmp_path / "tmp").exists()
