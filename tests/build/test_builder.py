"""End-to-end tests of the classic builder on real overlay mounts and containers: every
instruction's effect on files, owners, modes, config and history; the cache; multi-stage
builds; ONBUILD; whiteouts; failures and what they leave behind."""

from __future__ import annotations

import gzip
import io
import os
import re
import stat
import tarfile

import pytest

from lamina import errdefs
from lamina.build.api import RunFailed

pytestmark = pytest.mark.privileged


def steps(output: str) -> list[str]:
    return re.findall(r"^Step \d+/\d+ : (.*)$", output, re.MULTILINE)


def created_by(config: dict) -> list[tuple[str, bool]]:
    return [(entry.get("created_by", ""), bool(entry.get("empty_layer"))) for entry in config["history"]]


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640
            info.uid = 7
            info.gid = 8
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue())


# -- every instruction --------------------------------------------------------------------------

EVERY_INSTRUCTION = """\
ARG BASE=busybox
FROM $BASE AS base
MAINTAINER someone <someone@example.com>
LABEL org.example.name="demo app" version=1
ENV APP_HOME=/srv/app LANG=C.UTF-8
ARG VERSION=1.2
WORKDIR $APP_HOME
RUN echo "$VERSION" > version.txt && id -u > /uid.txt
COPY --chown=nobody:nogroup --chmod=0750 script.sh bin/
ADD archive.tar.gz /unpacked/
COPY dir/ /copied/
EXPOSE 80 443/udp
VOLUME ["/data"]
USER nobody
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5m --timeout=3s --retries=3 CMD wget -q -O- http://localhost/ || exit 1
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo triggered > /triggered
ENTRYPOINT ["/bin/sh"]
CMD echo $APP_HOME
"""


def test_every_instruction_gives_docker_config_history_and_files(engine) -> None:
    context = engine.context({
        "Dockerfile": EVERY_INSTRUCTION,
        "script.sh": "#!/bin/sh\necho hi\n",
        "archive.tar.gz": tar_gz({"a/inside.txt": b"from the archive\n"}),
        "dir/one.txt": "1\n",
        "dir/sub/two.txt": "2\n",
    })
    os.chmod(context / "dir" / "one.txt", 0o604)
    image_id = engine.build(context, tags=("demo:1",))
    assert steps(engine.output)[:3] == ["ARG BASE=busybox", "FROM $BASE AS base",
                                        "MAINTAINER someone <someone@example.com>"]
    assert f"Successfully built {image_id.split(':')[1][:12]}" in engine.output
    assert "Successfully tagged demo:1" in engine.output
    config = engine.config_of("demo:1")
    image = config["config"]
    assert image["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                            "APP_HOME=/srv/app", "LANG=C.UTF-8"]
    assert image["Labels"] == {"org.example.name": "demo app", "version": "1"}
    assert image["WorkingDir"] == "/srv/app"
    assert image["ExposedPorts"] == {"443/udp": {}, "80/tcp": {}}
    assert image["Volumes"] == {"/data": {}}
    assert image["User"] == "nobody"
    assert image["StopSignal"] == "SIGTERM"
    assert image["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"],
                                    "Interval": 300_000_000_000, "Timeout": 3_000_000_000, "Retries": 3}
    assert image["Shell"] == ["/bin/sh", "-ec"]
    assert image["OnBuild"] == ["RUN echo triggered > /triggered"]
    assert image["Entrypoint"] == ["/bin/sh"]
    assert image["Cmd"] == ["/bin/sh", "-ec", "echo $APP_HOME"]
    assert config["author"] == "someone <someone@example.com>"
    assert config["container_config"]["Cmd"] == ["/bin/sh", "-ec", "#(nop) ", 'CMD ["/bin/sh" "-ec" "echo $APP_HOME"]']
    history = created_by(config)[1:]  # the first entry is busybox's own
    copy_hash = re.search(r"COPY --chown=nobody:nogroup --chmod=0750 (file:[0-9a-f]{64}) in bin/ ", history[6][0])
    add_hash = re.search(r"ADD (file:[0-9a-f]{64}) in /unpacked/ ", history[7][0])
    dir_hash = re.search(r"COPY (dir:[0-9a-f]{64}) in /copied/ ", history[8][0])
    assert copy_hash and add_hash and dir_hash, history
    assert history == [
        ("/bin/sh -c #(nop)  MAINTAINER someone <someone@example.com>", True),
        ('/bin/sh -c #(nop)  LABEL org.example.name=demo app version=1', True),
        ("/bin/sh -c #(nop)  ENV APP_HOME=/srv/app LANG=C.UTF-8", True),
        ("/bin/sh -c #(nop)  ARG VERSION=1.2", True),
        ("/bin/sh -c #(nop) WORKDIR /srv/app", False),
        ('|1 VERSION=1.2 /bin/sh -c echo "$VERSION" > version.txt && id -u > /uid.txt', False),
        (f"/bin/sh -c #(nop) COPY --chown=nobody:nogroup --chmod=0750 {copy_hash.group(1)} in bin/ ", False),
        (f"/bin/sh -c #(nop) ADD {add_hash.group(1)} in /unpacked/ ", False),
        (f"/bin/sh -c #(nop) COPY {dir_hash.group(1)} in /copied/ ", False),
        ("/bin/sh -c #(nop)  EXPOSE 443/udp 80", True),
        ("/bin/sh -c #(nop)  VOLUME [/data]", True),
        ("/bin/sh -c #(nop)  USER nobody", True),
        ("/bin/sh -c #(nop)  STOPSIGNAL SIGTERM", True),
        (('/bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "wget -q -O- http://localhost/ || exit 1"] "5m0s" '
          "\"3s\" \"0s\" '\\x03'}"), True),
        ("/bin/sh -ec #(nop)  SHELL [/bin/sh -ec]", True),  # the new shell already
        ("/bin/sh -ec #(nop)  ONBUILD RUN echo triggered > /triggered", True),
        ('/bin/sh -ec #(nop)  ENTRYPOINT ["/bin/sh"]', True),
        ('/bin/sh -ec #(nop)  CMD ["/bin/sh" "-ec" "echo $APP_HOME"]', True),
    ]
    assert len(config["rootfs"]["diff_ids"]) == 1 + 5  # busybox + WORKDIR, RUN, COPY, ADD, COPY
    parent = engine.services.images.images.get_parent(image_id)
    assert parent is not None and engine.services.images.images.is_built_locally(image_id)
    assert config["config"]["Image"] == str(parent)
    with engine.files("demo:1") as root:
        assert (root / "srv/app/version.txt").read_text() == "1.2\n"
        assert (root / "uid.txt").read_text() == "0\n"
        script = (root / "srv/app/bin/script.sh").stat()
        assert (script.st_uid, script.st_gid, stat.S_IMODE(script.st_mode)) == (65534, 65533, 0o750)
        bin_dir = (root / "srv/app/bin").stat()  # made for the copy: owned like the copy
        assert (bin_dir.st_uid, bin_dir.st_gid, stat.S_IMODE(bin_dir.st_mode)) == (65534, 65533, 0o755)
        inside = (root / "unpacked/a/inside.txt").stat()
        assert (root / "unpacked/a/inside.txt").read_text() == "from the archive\n"
        assert (inside.st_uid, inside.st_gid, stat.S_IMODE(inside.st_mode)) == (7, 8, 0o640)
        assert not (root / "unpacked/archive.tar.gz").exists()
        one = (root / "copied/one.txt").stat()
        assert (one.st_uid, one.st_gid, stat.S_IMODE(one.st_mode)) == (0, 0, 0o604)
        assert (root / "copied/sub/two.txt").read_text() == "2\n"
        assert not (root / "copied/dir").exists()


def test_onbuild_triggers_run_in_the_child_build(engine) -> None:
    parent = engine.context({"Dockerfile": "FROM busybox\nONBUILD COPY marker.txt /from-trigger.txt\n"
                                           "ONBUILD RUN echo ran > /ran.txt\n"}, name="parent")
    engine.build(parent, tags=("parent:latest",))
    child = engine.context({"Dockerfile": "FROM parent\nRUN cat /ran.txt\n", "marker.txt": "marker\n"}, name="child")
    engine.build(child, tags=("child:latest",))
    assert "# Executing 2 build triggers" in engine.output
    with engine.files("child") as root:
        assert (root / "from-trigger.txt").read_text() == "marker\n"
        assert (root / "ran.txt").read_text() == "ran\n"
    config = engine.config_of("child")
    assert config["config"]["OnBuild"] is None  # triggers run once, in the direct child
    assert [by for by, _ in created_by(config)][-3:-1] == [
        "/bin/sh -c #(nop) COPY file:" + created_by(config)[-3][0].split("file:")[1].split()[0] + " in /from-trigger.txt ",
        "/bin/sh -c echo ran > /ran.txt"]


# -- multi-stage ----------------------------------------------------------------------------------

def test_multistage_copies_from_stages_by_name_and_index_and_stops_at_target(engine) -> None:
    context = engine.context({"Dockerfile": """\
FROM busybox AS builder
RUN mkdir /out && echo built > /out/artifact && chown 5:6 /out/artifact
FROM busybox AS second
COPY --from=builder /out/artifact /artifact
COPY --from=0 /out /out-by-index
FROM second AS third
RUN echo never
"""})
    image_id = engine.build(context, target="second", tags=("multi:latest",))
    assert "RUN echo never" not in engine.output
    aux = [message["aux"]["ID"] for message in engine.messages if "aux" in message]
    assert len(aux) == 2 and aux[-1] == image_id
    with engine.files(image_id) as root:
        assert (root / "artifact").read_text() == "built\n"
        owner = (root / "artifact").stat()
        assert (owner.st_uid, owner.st_gid) == (5, 6)  # --from keeps owners
        assert (root / "out-by-index/artifact").read_text() == "built\n"
    assert engine.build_layers() == []


def test_copy_from_an_image_and_from_a_stage_used_as_base(engine) -> None:
    context = engine.context({"Dockerfile": """\
FROM busybox AS base
ENV STAGE=base
FROM base
COPY --from=busybox /bin/busybox /copied-busybox
RUN test "$STAGE" = base
FROM 1
RUN test -f /copied-busybox
"""})
    image_id = engine.build(context)
    with engine.files(image_id) as root:
        assert (root / "copied-busybox").stat().st_size > 100_000


# -- the cache ------------------------------------------------------------------------------------

CACHED = """\
FROM busybox
ARG GREETING=hello
RUN echo "$GREETING" > /greeting
COPY one.txt /one.txt
COPY two.txt /two.txt
CMD ["cat", "/greeting"]
"""


def test_an_unchanged_rebuild_is_all_cache_hits(engine) -> None:
    context = engine.context({"Dockerfile": CACHED, "one.txt": "1", "two.txt": "2"})
    first = engine.build(context)
    assert "Using cache" not in engine.output
    containers = engine.container_ids()
    second = engine.build(context, tags=("again:latest",))
    assert second == first
    assert engine.output.count(" ---> Using cache") == 5
    assert "Running in" not in engine.output
    assert engine.container_ids() == containers == []
    third = engine.build(context, no_cache=True)
    assert third != first and "Using cache" not in engine.output


def test_changing_one_source_invalidates_from_its_step_on(engine) -> None:
    context = engine.context({"Dockerfile": CACHED, "one.txt": "1", "two.txt": "2"})
    first = engine.build(context)
    (context / "two.txt").write_text("changed")
    second = engine.build(context)
    assert second != first
    blocks = engine.output.split("Step ")[1:]
    assert [" ---> Using cache" in block for block in blocks] == [False, True, True, True, False, False]
    (context / "two.txt").write_text("2")
    assert engine.build(context) == first  # the old chain is still the cache


def test_build_args_are_part_of_the_run_cache_key_and_history(engine) -> None:
    context = engine.context({"Dockerfile": CACHED, "one.txt": "1", "two.txt": "2"})
    first = engine.build(context)
    second = engine.build(context, build_args={"GREETING": "bonjour"})
    assert second != first
    blocks = engine.output.split("Step ")[1:]
    assert [" ---> Using cache" in block for block in blocks][:3] == [False, True, False]
    history = [by for by, _ in created_by(engine.config_of(second))]
    assert '|1 GREETING=bonjour /bin/sh -c echo "$GREETING" > /greeting' in history
    with engine.files(second) as root:
        assert (root / "greeting").read_text() == "bonjour\n"
    engine.build(context, build_args={"UNUSED": "x"})
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in engine.output


def test_the_cache_survives_a_new_engine_on_the_same_data_root(engine) -> None:
    from lamina.services.compose import build_services

    context = engine.context({"Dockerfile": CACHED, "one.txt": "1", "two.txt": "2"})
    first = engine.build(context)
    engine.services = build_services(engine.config)
    assert engine.build(context) == first
    assert engine.output.count("Using cache") == 5


# -- layers and whiteouts -------------------------------------------------------------------------

def test_rm_rf_and_mkdir_in_one_run_leaves_an_opaque_directory(engine) -> None:
    context = engine.context({"Dockerfile": """\
FROM busybox
RUN mkdir -p /dir/sub && echo old > /dir/old && echo old > /dir/sub/deep
RUN rm -rf /dir && mkdir /dir && echo new > /dir/new
"""})
    image_id = engine.build(context)
    with engine.files(image_id) as root:
        assert sorted(os.listdir(root / "dir")) == ["new"]
    config = engine.services.images.images.get_config(image_id)
    top = config.chain_id()
    names = []
    data = b"".join(engine.services.images.layers.tar_stream(str(top)))
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        names = archive.getnames()
    assert "dir/.wh..wh..opq" in names and "dir/new" in names
    assert not any(name.startswith(("dir/old", "dir/sub")) for name in names)


def test_metadata_steps_add_no_layer_and_a_run_without_changes_adds_none(engine) -> None:
    context = engine.context({"Dockerfile": "FROM busybox\nENV A=1\nRUN true\nLABEL b=2\n"})
    image_id = engine.build(context)
    config = engine.config_of(image_id)
    assert len(config["rootfs"]["diff_ids"]) == 1
    assert [empty for _, empty in created_by(config)[1:]] == [True, True, True]


def test_workdir_creates_a_missing_directory_like_docker(engine) -> None:
    context = engine.context({"Dockerfile": "FROM busybox\nWORKDIR /a/b\nWORKDIR c\nWORKDIR /etc\nRUN pwd > /pwd\n"})
    image_id = engine.build(context)
    config = engine.config_of(image_id)
    assert [empty for _, empty in created_by(config)[1:]] == [False, False, True, False]
    with engine.files(image_id) as root:
        assert (root / "a/b/c").is_dir() and (root / "pwd").read_text() == "/etc\n"
        assert stat.S_IMODE((root / "a/b/c").stat().st_mode) == 0o755


# -- sources: heredocs, .dockerignore, -f, wildcards, symlinks ------------------------------------

def test_heredocs_in_run_and_copy(engine) -> None:
    context = engine.context({"Dockerfile": """\
FROM busybox
ARG NAME=world
COPY <<EOF /greeting.txt
hello ${NAME}
EOF
RUN <<EOF
echo first > /first
echo second > /second
EOF
RUN <<EOF
#!/bin/sh
echo script > /script-ran
EOF
"""})
    image_id = engine.build(context)
    with engine.files(image_id) as root:
        assert (root / "greeting.txt").read_text() == "hello world\n"
        assert (root / "first").read_text() == "first\n" and (root / "second").read_text() == "second\n"
        assert (root / "script-ran").read_text() == "script\n"
        assert not [name for name in os.listdir(root) if name.startswith(".lamina-heredoc")]


def test_dockerignore_excludes_sources_and_the_dockerfile_outside_the_context(engine) -> None:
    context = engine.context({"app/main.txt": "main", "app/secret.key": "k", "notes.md": "n",
                              ".dockerignore": "**/*.key\n*.md\n"})
    outside = engine.root / "elsewhere.Dockerfile"
    outside.write_text("FROM busybox\nCOPY . /ctx/\n")
    image_id = engine.build(context, dockerfile=str(outside))
    with engine.files(image_id) as root:
        assert sorted(os.listdir(root / "ctx")) == [".dockerignore", "app"]
        assert sorted(os.listdir(root / "ctx/app")) == ["main.txt"]
    (outside).write_text("FROM busybox\nCOPY app/secret.key /\n")
    with pytest.raises(errdefs.NotFound, match="COPY failed: file not found in build context or excluded by "
                                               r".dockerignore: stat app/secret.key: file does not exist"):
        engine.build(context, dockerfile=str(outside))


def test_wildcards_and_trailing_slash_rules(engine) -> None:
    context = engine.context({"Dockerfile": "FROM busybox\nCOPY *.txt /many/\nCOPY a.txt /renamed\n"
                                            "COPY d /into-dir\n", "a.txt": "a", "b.txt": "b", "d/x": "x"})
    image_id = engine.build(context)
    with engine.files(image_id) as root:
        assert sorted(os.listdir(root / "many")) == ["a.txt", "b.txt"]
        assert (root / "renamed").read_text() == "a"
        assert (root / "into-dir/x").read_text() == "x"


def test_a_symlink_in_the_image_cannot_redirect_a_copy_outside_the_root(engine, tmp_path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    context = engine.context({"Dockerfile": f"FROM busybox\nRUN ln -s {victim} /escape\n"
                                            "COPY payload.txt /escape/\n", "payload.txt": "p"})
    image_id = engine.build(context)
    assert os.listdir(victim) == []
    with engine.files(image_id) as root:
        assert (root / str(victim).lstrip("/") / "payload.txt").read_text() == "p"


# -- failures -------------------------------------------------------------------------------------

def test_a_failing_run_reports_its_exit_code_and_leaves_nothing_behind(engine) -> None:
    context = engine.context({"Dockerfile": "FROM busybox\nCOPY a.txt /\nRUN echo partial && exit 3\n",
                              "a.txt": "a"})
    with pytest.raises(RunFailed) as raised:
        engine.build(context, tags=("broken:latest",))
    assert str(raised.value) == "Dockerfile:3: The command '/bin/sh -c echo partial && exit 3' returned a non-zero code: 3"
    assert raised.value.exit_code == 3
    assert "partial" in engine.output and "Removing intermediate container" in engine.output
    assert engine.container_ids() == []
    assert engine.build_layers() == []
    assert engine.mounts_under_root() == []
    with pytest.raises(errdefs.NotFound):
        engine.services.images.resolve("broken:latest")


@pytest.mark.parametrize(("dockerfile", "kind", "message"), [
    ("FROM busybox\nFROBNICATE x\n", errdefs.InvalidArgument, "Dockerfile:2: unknown instruction: FROBNICATE"),
    ("FROM busybox\nCOPY --frob=1 a /\n", errdefs.InvalidArgument, "Dockerfile:2: unknown flag: --frob"),
    ("FROM busybox\nCOPY missing.txt /\n", errdefs.NotFound,
     ("Dockerfile:2: COPY failed: file not found in build context or excluded by .dockerignore: "
      "stat missing.txt: file does not exist")),
    ("FROM busybox\nCOPY --from=nowhere /x /\n", errdefs.NotFound,
     "Dockerfile:2: invalid from flag value nowhere: no build stage named 'nowhere' and no such image"),
    ("FROM busybox\nCOPY ../outside /\n", errdefs.InvalidArgument,
     "Dockerfile:2: COPY failed: forbidden path outside the build context: ../outside"),
    ("FROM busybox\nADD http://example.com/x /\n", errdefs.NotImplemented,
     "Dockerfile:2: ADD failed: cannot download http://example.com/x: lamina's builder has no network"),
    ("FROM 127.0.0.1:9/nosuchimage\n", errdefs.Unavailable,
     "Dockerfile:1: pulling 127.0.0.1:9/nosuchimage:latest: registry 127.0.0.1:9"),
    ("FROM sha256:" + "0" * 64 + "\n", errdefs.NotFound, "Dockerfile:1: No such image: sha256:" + "0" * 64),
    ("FROM busybox\nCOPY --chown=nosuchuser a.txt /\n", errdefs.InvalidArgument,
     "can't find uid for user nosuchuser"),
    ("FROM busybox\nSTOPSIGNAL SIGNOPE\n", errdefs.InvalidArgument, "Dockerfile:2: "),
], ids=["an unknown instruction", "a bad flag", "a missing COPY source", "--from naming an unknown stage",
        "a path escaping the context", "a remote ADD source", "a base image on a refused registry",
        "a missing base image id", "an unknown --chown user",
        "a bad stop signal"])
def test_bad_input_gets_a_clear_error_with_the_line_and_nothing_is_tagged(engine, dockerfile, kind, message) -> None:
    context = engine.context({"Dockerfile": dockerfile, "a.txt": "a"})
    with pytest.raises(kind) as raised:
        engine.build(context, tags=("bad:latest",))
    assert message in str(raised.value)
    with pytest.raises(errdefs.NotFound):
        engine.services.images.resolve("bad:latest")
    assert engine.container_ids() == [] and engine.build_layers() == [] and engine.mounts_under_root() == []


def test_an_unreadable_source_is_a_clear_error(engine) -> None:
    context = engine.context({"Dockerfile": "FROM busybox\nCOPY fifo /\n"})
    os.mkfifo(context / "fifo")
    (context / "Dockerfile").write_text("FROM busybox\nCOPY dir/ /x/\n")
    (context / "dir").mkdir()
    os.symlink("/etc/shadow", context / "dir" / "link")
    image_id = engine.build(context)  # a symlink is copied as a symlink, never followed out
    with engine.files(image_id) as root:
        assert os.readlink(root / "x/link") == "/etc/shadow"
    (context / "Dockerfile").write_text("FROM busybox\nCOPY dir/link /followed\n")
    with pytest.raises(errdefs.InvalidArgument, match="Dockerfile:2: COPY failed: forbidden path outside the build context"):
        engine.build(context)


def test_rm_false_keeps_the_intermediate_containers(engine) -> None:
    context = engine.context({"Dockerfile": "FROM busybox\nRUN echo kept\n"})
    engine.build(context, remove=False)
    assert len(engine.container_ids()) == 1
    assert "Removing intermediate container" not in engine.output
    engine.services.containers.remove(engine.container_ids()[0], force=True)


def test_run_network_none_has_only_loopback(engine) -> None:
    context = engine.context({"Dockerfile": "FROM busybox\nRUN --network=none ls /sys/class/net > /ifaces\n"})
    image_id = engine.build(context)
    with engine.files(image_id) as root:
        assert (root / "ifaces").read_text().split() == ["lo"]


def test_run_sees_user_env_args_and_workdir_and_add_unpacks_every_compression(engine) -> None:
    import bz2
    import lzma

    import zstandard

    plain = tar_gz({"payload.txt": b"payload\n"})
    raw = gzip.decompress(plain)
    context = engine.context({
        "Dockerfile": """\
FROM busybox
ENV PORTS="8080 9090/udp" HOME_DIR=/tmp
EXPOSE $PORTS
ARG TOKEN=secret
WORKDIR /tmp/work
USER nobody
RUN id -u > $HOME_DIR/uid && echo "$TOKEN" > ../token && pwd > ../where && ! touch here
USER root
ADD a.tar.bz2 /bz2/
ADD a.tar.xz /xz/
ADD a.tar.zst /zst/
ADD a.tar /plain/
ADD notatar.gz /gz/
COPY --chown=10 a.tar /numeric
""",
        "a.tar.bz2": bz2.compress(raw), "a.tar.xz": lzma.compress(raw),
        "a.tar.zst": zstandard.ZstdCompressor().compress(raw), "a.tar": raw,
        "notatar.gz": gzip.compress(b"just text\n"),
    })
    image_id = engine.build(context)
    config = engine.config_of(image_id)["config"]
    assert config["ExposedPorts"] == {"8080/tcp": {}, "9090/udp": {}}
    with engine.files(image_id) as root:
        assert (root / "tmp/uid").read_text() == "65534\n"
        assert (root / "tmp/token").read_text() == "secret\n"
        assert (root / "tmp/where").read_text() == "/tmp/work\n"  # WORKDIR made it, owned by root
        for directory in ("bz2", "xz", "zst", "plain"):
            assert (root / directory / "payload.txt").read_text() == "payload\n"
        assert gzip.decompress((root / "gz/notatar.gz").read_bytes()) == b"just text\n"
        numeric = (root / "numeric").stat()
        assert (numeric.st_uid, numeric.st_gid) == (10, 10)
