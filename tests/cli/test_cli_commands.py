"""Every command end to end: main() -> APIClient -> in-process transport -> router -> the
services test double; output compared with docker's layout, exit codes with the table."""

from __future__ import annotations

import json

import pytest

from api.api_service_double import BUSYBOX_ID, UNTAGGED_ID


def test_images_table(lamina) -> None:
    result = lamina("images")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert lines[0].startswith("REPOSITORY           TAG       IMAGE ID       CREATED")
    assert lines[1].split()[:3] == ["<none>", "<none>", "000000000000"]
    assert lines[2].startswith("busybox              latest    bbbbbbbbbbbb   ")
    assert lines[2].endswith("4.26MB")
    assert lines[3].split()[:2] == ["localhost:5000/a/b", "tag"]


def test_images_quiet_and_no_trunc(lamina) -> None:
    assert lamina("images", "-q").out.splitlines() == ["000000000000", "bbbbbbbbbbbb", "bbbbbbbbbbbb"]
    assert lamina("image", "ls", "-q", "--no-trunc").out.splitlines()[0] == UNTAGGED_ID


def test_images_filters_and_reference_go_to_the_api(lamina, services) -> None:
    result = lamina("images", "-f", "dangling=true", "--filter", "label=a=b", "busy*")
    assert result.code == 0
    assert services.images.calls[-1][1]["filters"] == {
        "dangling": ["true"], "label": ["a=b"], "reference": ["busy*"]}


def test_images_bad_filter_is_a_usage_error(lamina) -> None:
    result = lamina("images", "-f", "dangling")
    assert result.code == 2
    assert result.err.startswith("Error: bad format of filter")


def test_images_unknown_filter_is_a_bad_request_from_the_daemon(lamina) -> None:
    result = lamina("images", "-f", "colour=red")
    assert result.code == 3
    assert result.err == "Error response from daemon: invalid filter 'colour'\n"


def test_images_formats(lamina) -> None:
    assert lamina("images", "--format", "{{.Repository}}:{{.Tag}}").out.splitlines() == [
        "<none>:<none>", "busybox:latest", "localhost:5000/a/b:tag"]
    rows = [json.loads(line) for line in lamina("images", "--format", "json").out.splitlines()]
    assert rows[1]["Repository"] == "busybox" and rows[1]["Size"] == "4.26MB"
    bad = lamina("images", "--format", "{{.Nope}}")
    assert bad.code == 2 and "can't evaluate field Nope" in bad.err


def test_images_digests_column(lamina) -> None:
    lines = lamina("images", "--digests").out.splitlines()
    assert lines[0].split()[:3] == ["REPOSITORY", "TAG", "DIGEST"]
    assert "sha256:" + "d" * 64 in lines[2]


def test_rmi_prints_untagged_and_deleted(lamina, services) -> None:
    services.images.tags.pop("localhost:5000/a/b:tag")
    result = lamina("rmi", "busybox")
    assert result.code == 0
    assert result.out == f"Untagged: busybox:latest\nDeleted: {BUSYBOX_ID}\n"


def test_rmi_continues_after_a_failure_and_exits_with_its_code(lamina, services) -> None:
    result = lamina("image", "rm", "nosuch", "busybox")
    assert result.code == 4
    assert result.err == "Error response from daemon: No such image: nosuch\n"
    assert result.out == "Untagged: busybox:latest\n"


def test_rmi_conflict_exit_code(lamina) -> None:
    result = lamina("rmi", BUSYBOX_ID)
    assert result.code == 5
    assert "must be forced" in result.err
    assert lamina("rmi", "-f", BUSYBOX_ID).code == 0


def test_tag(lamina, services) -> None:
    assert lamina("tag", "busybox", "example.com/team/app").code == 0
    assert services.images.calls[-1] == ("tag", ("busybox", "example.com/team/app", "latest"))
    assert lamina("image", "tag", "busybox", "localhost:5000/x:v2").code == 0
    assert services.images.calls[-1] == ("tag", ("busybox", "localhost:5000/x", "v2"))


def test_tag_refuses_digests_and_reports_daemon_errors(lamina) -> None:
    result = lamina("tag", "busybox", "x@sha256:" + "a" * 64)
    assert result.code == 3 and "digest" in result.err
    result = lamina("tag", "nosuch", "x")
    assert result.code == 4


def test_history_table(lamina) -> None:
    result = lamina("history", "busybox")
    lines = result.out.splitlines()
    assert lines[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert lines[1].startswith("bbbbbbbbbbbb   ")
    assert lines[2].startswith("<missing>      ")
    assert "/bin/sh -c #(nop) ADD file:7e1e5b5d1a2c3b4a5…" in lines[2]
    assert "4.26MB" in lines[2]


def test_history_raw_values_and_quiet(lamina) -> None:
    raw = lamina("history", "-H=false", "--no-trunc", "busybox").out
    assert "4261550" in raw and BUSYBOX_ID in raw and "T" in raw.splitlines()[1].split()[1]
    assert lamina("image", "history", "-q", "busybox").out.splitlines() == ["bbbbbbbbbbbb", "<missing>"]


def test_inspect_prints_an_indented_json_array(lamina) -> None:
    result = lamina("image", "inspect", "busybox")
    assert result.code == 0
    assert result.out.startswith('[\n    {\n        "Id": ')
    assert json.loads(result.out)[0]["Id"] == BUSYBOX_ID


def test_inspect_format_and_missing_names(lamina) -> None:
    result = lamina("inspect", "-f", "{{.Id}} {{json .Config.Cmd}}", "busybox", "nosuch")
    assert result.code == 4
    assert result.out == f'{BUSYBOX_ID} ["sh"]\n'
    # Docker's wording when neither a container nor an image has the name.
    assert result.err == "Error: No such object: nosuch\n"
    assert lamina("image", "inspect", "nosuch").err == "Error: No such image: nosuch\n"
    assert lamina("inspect", "--type", "volume", "busybox").code == 2


def test_inspect_of_nothing_found_prints_an_empty_array(lamina) -> None:
    result = lamina("inspect", "nosuch")
    assert result.out == "[]\n" and result.code == 4


def test_prune_asks_first(lamina, services) -> None:
    result = lamina("image", "prune", stdin=b"n\n")
    assert result.code == 1
    assert "WARNING! This will remove all dangling images." in result.out
    assert "cancelled" in result.err
    assert not [call for call in services.images.calls if call[0] == "prune"]
    result = lamina("image", "prune", stdin=b"y\n")
    assert result.code == 0
    assert services.images.calls[-1] == ("prune", {"dangling": ["true"]})
    assert result.out.endswith(f"Deleted Images:\ndeleted: {UNTAGGED_ID}\n\nTotal reclaimed space: 1kB\n")


def test_prune_all_forced(lamina, services) -> None:
    result = lamina("image", "prune", "-a", "-f", "--filter", "until=24h")
    assert services.images.calls[-1] == ("prune", {"until": ["24h"], "dangling": ["false"]})
    assert "untagged: busybox:latest" in result.out
    assert result.out.endswith("Total reclaimed space: 4.263MB\n")


def test_prune_with_nothing_to_delete(lamina, services) -> None:
    services.images.images.pop(UNTAGGED_ID)
    assert lamina("image", "prune", "-f").out == "Total reclaimed space: 0B\n"


def test_load_from_a_file(lamina, services, tmp_path) -> None:
    archive = tmp_path / "busybox.tar"
    archive.write_bytes(b"x" * 100_000)
    result = lamina("load", "-i", str(archive))
    assert result.code == 0
    assert result.out == "Loaded image: busybox:latest\n"
    assert services.images.calls[-1] == ("load", {"size": 100_000, "quiet": True})


def test_load_from_stdin_and_refusing_a_terminal(lamina, services) -> None:
    assert lamina("image", "load", stdin=b"archive").out == "Loaded image: busybox:latest\n"
    result = lamina("load", stdin_terminal=True)
    assert result.code == 2 and "stdin" in result.err


def test_load_errors(lamina, tmp_path) -> None:
    missing = lamina("load", "-i", str(tmp_path / "nope.tar"))
    assert missing.code == 4 and "no such file" in missing.err
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"bad")
    result = lamina("load", "-i", str(bad))
    assert result.code == 3
    assert result.err == "Error response from daemon: invalid archive: no manifest.json\n"
    late = tmp_path / "late.tar"
    late.write_bytes(b"fail-late")
    result = lamina("load", "-i", str(late))
    assert result.code == 1
    assert result.err == "Error response from daemon: layer abcd1234: digest mismatch\n"


def test_load_on_a_terminal_shows_progress(lamina, tmp_path) -> None:
    archive = tmp_path / "busybox.tar"
    archive.write_bytes(b"x")
    result = lamina("load", "-i", str(archive), stdout_terminal=True)
    assert result.code == 0
    assert "abcd1234: Loading layer" in result.out
    assert "Loaded image: busybox:latest" in result.out


def test_save_to_a_file(lamina, services, tmp_path) -> None:
    target = tmp_path / "out.tar"
    result = lamina("save", "-o", str(target), "busybox", "localhost:5000/a/b:tag")
    assert result.code == 0, result.err
    assert target.read_bytes() == b"docker-archive:busybox;localhost:5000/a/b:tag;"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "data") == ["out.tar"]  # no temp left
    assert lamina("image", "save", "--format", "oci", "-o", str(target), "busybox").code == 0
    assert target.read_bytes() == b"oci-archive:busybox;"


def test_save_to_stdout_and_refusing_a_terminal(lamina) -> None:
    result = lamina("save", "busybox")
    assert result.out_bytes == b"docker-archive:busybox;"
    refused = lamina("save", "busybox", stdout_terminal=True)
    assert refused.code == 2 and "Cowardly refusing to save to a terminal" in refused.err


def test_save_failures_leave_no_partial_file(lamina, tmp_path) -> None:
    target = tmp_path / "out.tar"
    target.write_bytes(b"previous")
    missing = lamina("save", "-o", str(target), "nosuch")
    assert missing.code == 4
    broken = lamina("save", "-o", str(target), "busybox", "fail-mid")
    assert broken.code == 1 and "no space left" in broken.err
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "data") == ["out.tar"]


def test_import_prints_the_image_id(lamina, services, tmp_path) -> None:
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(b"r" * 1000)
    result = lamina("import", "-c", "ENV A=1", "--change", "CMD [\"sh\"]", "-m", "hi", str(rootfs), "example/app:v1")
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1] == "sha256:" + "1" * 64
    assert services.images.calls[-1] == ("import", {"size": 1000, "repository": "example/app:v1", "tag": "",
                                                     "changes": ["ENV A=1", 'CMD ["sh"]'], "message": "hi"})


def test_import_from_stdin_and_from_a_url(lamina) -> None:
    assert lamina("image", "import", "-", stdin=b"rootfs").out.splitlines()[-1] == "sha256:" + "1" * 64
    result = lamina("import", "https://example.com/rootfs.tar")
    assert result.code == 7 and "URL is not supported" in result.err


def test_info_layout(lamina) -> None:
    result = lamina("info")
    assert result.code == 0
    out = result.out
    assert out.startswith("Client:\n Version:    ")
    assert "\nServer:\n Containers: 0\n  Running: 0\n" in out
    assert " Storage Driver: overlay2\n  Backing Filesystem: extfs\n  Supports d_type: true\n" in out
    assert " Total Memory: 3.824GiB\n" in out
    assert " Docker Root Dir: /var/lib/lamina\n" in out
    assert " Skipped Storage Drivers:\n  fuse-overlayfs: fuse-overlayfs binary not found\n" in out
    assert result.err == "WARNING: no swap limit support\n"


def test_info_format(lamina) -> None:
    assert lamina("info", "-f", "{{.Driver}}").out == "overlay2\n"
    assert json.loads(lamina("system", "info", "--format", "json").out)["NCPU"] == 2


def test_system_df(lamina) -> None:
    lines = lamina("system", "df").out.splitlines()
    assert lines[0] == "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE"
    assert lines[1] == "Images          2         0         4.263MB   4.263MB (100%)"
    assert lines[4].startswith("Build Cache ")
    verbose = lamina("system", "df", "-v").out
    assert "Images space usage:" in verbose and "Build cache usage: 0B" in verbose
    assert lamina("system", "df", "--format", "{{.Type}}={{.Size}}").out.splitlines()[0] == "Images=4.263MB"


def test_system_check_exit_codes(lamina, services) -> None:
    assert lamina("system", "check").out == "no problems found\n"
    services.system.check_problems = [{"Kind": "layer", "Object": "sha256:abc", "Message": "diff directory missing"}]
    result = lamina("system", "check")
    assert result.code == 1
    assert result.out == "layer sha256:abc: diff directory missing\n1 problem found\n"
    services.system.repairable = False
    assert lamina("system", "check", "--repair").code == 1
    services.system.repairable = True
    result = lamina("system", "check", "--repair")
    assert result.code == 0
    assert "repaired: layer sha256:abc" in result.out and "1 repaired" in result.out


def test_version(lamina) -> None:
    result = lamina("version")
    assert result.code == 0
    assert result.out.startswith("Client:\n Version:          0.1.0\n API version:      1.45\n")
    assert "\nServer: lamina\n Engine:\n  Version:         0.1.0\n" in result.out
    assert "API version:     1.45 (minimum version 1.24)" in result.out
    assert lamina("version", "-f", "{{.Server.Version}} {{.Client.ApiVersion}}").out == "0.1.0 1.45\n"


def test_tcp_hosts_are_refused(lamina) -> None:
    result = lamina("-H", "tcp://127.0.0.1:2375", "images")
    assert result.code == 3
    assert "tcp:// is not supported" in result.err


@pytest.mark.parametrize("variable", ["LAMINA_HOST", "DOCKER_HOST"])
def test_a_missing_socket_is_a_connection_failure(lamina, monkeypatch, tmp_path, variable) -> None:
    monkeypatch.setenv(variable, f"unix://{tmp_path}/nothing.sock")
    result = lamina("images")
    assert result.code == 9
    assert result.err.startswith("Error: Cannot connect to the daemon at unix://")


def test_internal_errors_are_one_line_and_exit_1(lamina, services, monkeypatch) -> None:
    def broken(**kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(services.images, "list_images", broken)
    result = lamina("images")
    assert result.code == 1
    assert "Error response from daemon: internal error: RuntimeError: kaboom" in result.err
    assert "Traceback" not in result.err
