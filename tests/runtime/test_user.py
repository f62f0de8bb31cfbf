"""``-u user[:group]`` resolution (Docker's rules) and reading the image's files safely."""

from __future__ import annotations

import os

import pytest

from lamina import errdefs
from lamina.runtime.user import (
    ExecUser,
    home_for_uid,
    parse_group,
    parse_passwd,
    resolve_user,
    resolve_user_in_root,
    with_home,
)

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:2:2:daemon:/sbin:/sbin/nologin
# a comment
broken line
web:x:33:33:www:/var/www:/bin/sh
first:x:500:500::/home/first:/bin/sh
first:x:501:501::/home/second:/bin/sh
nohome:x:600:600:::/bin/sh
"""
GROUP = """root:x:0:root
bin:x:1:root,bin,daemon
daemon:x:2:root,bin,daemon
adm:x:4:root,adm,daemon
www-data:x:33:
staff:x:50:web,first
bad:x:notanumber:web
"""


def _resolve(spec: str) -> ExecUser:
    return resolve_user(spec, parse_passwd(PASSWD), parse_group(GROUP))


@pytest.mark.parametrize(("spec", "expected"), [
    ("", ExecUser(0, 0, (0, 1, 2, 4), "/root")),
    ("root", ExecUser(0, 0, (0, 1, 2, 4), "/root")),
    ("daemon", ExecUser(2, 2, (2, 1, 4), "/sbin")),
    ("2", ExecUser(2, 2, (2, 1, 4), "/sbin")),
    ("web", ExecUser(33, 33, (33, 50), "/var/www")),
    ("web:staff", ExecUser(33, 50, (50,), "/var/www")),
    ("web:7", ExecUser(33, 7, (7,), "/var/www")),
    ("4242", ExecUser(4242, 0, (0,), "/")),
    ("4242:4343", ExecUser(4242, 4343, (4343,), "/")),
    ("first", ExecUser(500, 500, (500, 50), "/home/first")),
    ("nohome", ExecUser(600, 600, (600,), "/")),
], ids=["empty means root, with root's groups", "root by name", "a name with supplementary groups", "a uid that has an entry",
        "a name in one extra group", "an explicit group name: no supplementary groups", "an explicit numeric group",
        "a uid without an entry", "numeric user and group without entries", "the first of duplicate entries wins",
        "an empty home becomes /"])
def test_resolution_follows_docker_rules(spec: str, expected: ExecUser) -> None:
    assert _resolve(spec) == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("nosuch", "unable to find user nosuch: no matching entries in passwd file"),
    ("web:nosuch", "unable to find group nosuch: no matching entries in group file"),
    ("2147483648", "uids and gids must be in range 0-2147483647"),
    ("web:2147483648", "uids and gids must be in range 0-2147483647"),
], ids=["unknown user", "unknown group", "uid out of range", "gid out of range"])
def test_resolution_errors_use_docker_s_messages(spec: str, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument) as caught:
        _resolve(spec)
    assert str(caught.value) == message


def test_an_image_without_passwd_accepts_numbers_only() -> None:
    assert resolve_user("1000:1000", None, None) == ExecUser(1000, 1000, (1000,), "/")
    assert resolve_user("", None, None) == ExecUser(0, 0, (0,), "/")
    with pytest.raises(errdefs.InvalidArgument, match="unable to find user app"):
        resolve_user("app", None, None)


def _rootfs(tmp_path) -> str:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return str(root)


def test_the_files_are_read_inside_the_rootfs(tmp_path) -> None:
    root = _rootfs(tmp_path)
    assert resolve_user_in_root(root, "web") == ExecUser(33, 33, (33, 50), "/var/www")
    assert home_for_uid(root, 2) == "/sbin"
    assert home_for_uid(root, 9999) == "/"


def test_a_symlinked_passwd_resolves_inside_the_rootfs_not_on_the_host(tmp_path) -> None:
    root = _rootfs(tmp_path)
    # the image's /etc/passwd points at an absolute path that exists on the host only
    host_file = tmp_path / "host-passwd"
    host_file.write_text("hostonly:x:777:777::/host:/bin/sh\n")
    os.rename(os.path.join(root, "etc", "passwd"), os.path.join(root, "etc", "passwd.real"))
    os.symlink(str(host_file), os.path.join(root, "etc", "passwd"))
    with pytest.raises(errdefs.InvalidArgument, match="unable to find user hostonly"):
        resolve_user_in_root(root, "hostonly")
    # and a link inside the image works
    os.unlink(os.path.join(root, "etc", "passwd"))
    os.symlink("../../../../etc/passwd.real", os.path.join(root, "etc", "passwd"))
    assert resolve_user_in_root(root, "daemon").uid == 2


def test_a_passwd_that_is_not_a_regular_file_is_refused(tmp_path) -> None:
    root = _rootfs(tmp_path)
    os.unlink(os.path.join(root, "etc", "passwd"))
    os.mkfifo(os.path.join(root, "etc", "passwd"))  # reading it would block forever
    with pytest.raises(errdefs.InvalidArgument, match="not a regular file"):
        resolve_user_in_root(root, "daemon")


def test_home_is_added_only_when_missing() -> None:
    assert with_home(("PATH=/bin",), "/root") == ("PATH=/bin", "HOME=/root")
    assert with_home(("HOME=/custom",), "/root") == ("HOME=/custom",)
