"""The builder without an engine: Go's formatting of history strings, the cache key and index,
and the dispatch loop against doubles of the build protocols (no root needed)."""

from __future__ import annotations

import os
import pathlib
import time

import pytest

from lamina import errdefs
from lamina.build import metadata
from lamina.build.api import BuildOptions
from lamina.build.builder import Builder
from lamina.build.buildargs import BuildArgs
from lamina.build.cache import CacheIndex, cache_key
from lamina.build.context import open_directory_context
from lamina.build.copy import parse_chmod
from lamina.build.history import go_duration, go_quote, healthcheck_text, short_id
from lamina.build.metadata import parse_port_spec
from lamina.build.state import BuiltStages, StageState
from lamina.dockerfile.parser import parse
from lamina.image.config import ContainerConfig, HealthConfig, ImageConfig

# -- Go's formatting ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "quoted"), [
    ("sh", '"sh"'), ('say "hi"', '"say \\"hi\\""'), ("a\\b", '"a\\\\b"'), ("tab\there", '"tab\\there"'),
    ("\x01", '"\\x01"'), ("\x7f", '"\\x7f"'), ("héllo ✓", '"héllo ✓"'), ("\u00a0", '"\\u00a0"'),
    ("\U0001f600", '"\U0001f600"'), ("\u2028", '"\\u2028"'),
], ids=["plain", "quotes", "backslash", "tab", "a control character", "DEL", "printable unicode",
        "a non-breaking space", "an emoji", "a line separator"])
def test_go_quote_matches_strconv_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


@pytest.mark.parametrize(("nanoseconds", "text"), [
    (0, "0s"), (1, "1ns"), (1500, "1.5µs"), (2_000_000, "2ms"), (3_000_000_000, "3s"), (1_500_000_000, "1.5s"),
    (90_000_000_000, "1m30s"), (300_000_000_000, "5m0s"), (3_600_000_000_000, "1h0m0s"),
    (3_723_500_000_000, "1h2m3.5s"), (-3_000_000_000, "-3s"),
])
def test_go_duration_matches_time_duration_string(nanoseconds: int, text: str) -> None:
    assert go_duration(nanoseconds) == text


def test_healthcheck_history_text_is_docker_2010s() -> None:
    health = HealthConfig(test=("CMD-SHELL", "curl -f http://localhost/ || exit 1"), interval=300_000_000_000,
                          timeout=3_000_000_000, retries=3)
    assert healthcheck_text(health) == ('&{["CMD-SHELL" "curl -f http://localhost/ || exit 1"] "5m0s" "3s" "0s" '
                                         "'\\x03'}")
    assert healthcheck_text(HealthConfig(test=("NONE",))) == "&{[\"NONE\"] \"0s\" \"0s\" \"0s\" '\\x00'}"


def test_port_specs_and_chmod_values() -> None:
    assert parse_port_spec("80") == ["80/tcp"]
    assert parse_port_spec("53/UDP") == ["53/udp"]
    assert parse_port_spec("8000-8002/tcp") == ["8000/tcp", "8001/tcp", "8002/tcp"]
    assert parse_port_spec("127.0.0.1:8080:80") == ["80/tcp"]
    for bad in ("80/icmp", "eighty", "9-3", "70000"):
        with pytest.raises(errdefs.InvalidArgument):
            parse_port_spec(bad)
    assert parse_chmod("") is None and parse_chmod("755") == 0o755 and parse_chmod("04755") == 0o4755
    for bad in ("u+x", "8", "17777"):
        with pytest.raises(errdefs.InvalidArgument, match="it should be octal string and between 0 and 07777"):
            parse_chmod(bad)
    assert short_id("sha256:0123456789abcdef") == "0123456789ab"


# -- stage state and configuration-only steps ------------------------------------------------------


def test_finished_stages_are_found_by_name_or_index() -> None:
    stages = BuiltStages()
    stages.add("builder", "sha256:a")
    stages.add("", "sha256:b")
    assert stages.base("Builder") == "sha256:a" and stages.base("1") == "sha256:b"
    assert stages.base("2") is None and stages.base("busybox") is None  # FROM then looks for an image
    assert stages.copy_source("0") == "sha256:a" and stages.copy_source("busybox") is None
    with pytest.raises(errdefs.InvalidArgument, match="^refers to current build stage$"):
        stages.copy_source("2")
    with pytest.raises(errdefs.InvalidArgument, match="^index out of bounds$"):
        stages.copy_source("3")


def test_configuration_steps_change_the_run_config_and_return_dockers_comment() -> None:
    dockerfile = parse('FROM scratch\nCMD ["a"]\nENTRYPOINT ["e"]\nHEALTHCHECK CMD true\nHEALTHCHECK NONE\n'
                       'EXPOSE 80 53/udp\nVOLUME /v\nSHELL ["/bin/bash", "-c"]\nCMD b\nENTRYPOINT e\n')
    state = StageState(run_config=ContainerConfig(cmd=("sh",)), image_id="", args=BuildArgs().stage())
    notes: list[str] = []
    comments = [metadata.STEPS[type(instruction)](state, instruction, notes.append)
                for instruction in dockerfile.stages[0].instructions]
    assert comments == [
        'CMD ["a"]', 'ENTRYPOINT ["e"]',
        'HEALTHCHECK &{["CMD-SHELL" "true"] "0s" "0s" "0s" \'\\x00\'}',
        'HEALTHCHECK &{["NONE"] "0s" "0s" "0s" \'\\x00\'}',
        "EXPOSE 53/udp 80", "VOLUME [/v]", "SHELL [/bin/bash -c]", 'CMD ["/bin/bash" "-c" "b"]',
        'ENTRYPOINT ["/bin/bash" "-c" "e"]',
    ]
    assert notes == ["Note: overriding previous HEALTHCHECK: [CMD-SHELL true]\n"]
    config = state.run_config
    assert config.cmd == ("/bin/bash", "-c", "b")  # a CMD of this stage survives its ENTRYPOINT
    assert config.entrypoint == ("/bin/bash", "-c", "e") and config.healthcheck.test == ("NONE",)
    assert config.exposed_ports == ("53/udp", "80/tcp") and config.volumes == ("/v",)
    fresh = StageState(run_config=ContainerConfig(cmd=("sh",)), image_id="", args=BuildArgs().stage())
    entrypoint = dockerfile.stages[0].instructions[1]
    metadata.STEPS[type(entrypoint)](fresh, entrypoint, notes.append)
    assert fresh.run_config.cmd is None  # ENTRYPOINT clears an inherited CMD


# -- the cache key and index ----------------------------------------------------------------------


def test_the_cache_key_follows_dockers_comparison() -> None:
    base = ContainerConfig(cmd=("/bin/sh", "-c", "make"), env=("A=1",), labels={"a": "1", "b": "2"},
                           exposed_ports=("80/tcp", "443/tcp"), volumes=("/data",))
    same = ContainerConfig(cmd=("/bin/sh", "-c", "make"), env=("A=1",), labels={"b": "2", "a": "1"},
                           exposed_ports=("443/tcp", "80/tcp"), volumes=("/data",),
                           working_dir="/elsewhere", image="sha256:" + "1" * 64, hostname="x")
    assert cache_key(base) == cache_key(same)  # maps and sets compare unordered; Image etc. are not compared
    assert cache_key(ContainerConfig(cmd=None)) == cache_key(ContainerConfig(cmd=()))  # Go compares lengths
    for different in (ContainerConfig(cmd=("/bin/sh", "-c", "make all")), ContainerConfig(env=("A=2",)),
                      ContainerConfig(user="nobody"), ContainerConfig(entrypoint=("x",)), ContainerConfig(tty=True)):
        assert cache_key(different) != cache_key(ContainerConfig())
    assert cache_key(ContainerConfig(open_stdin=True)) is None


def test_the_cache_index_records_looks_up_and_sweeps(tmp_path: pathlib.Path) -> None:
    index = CacheIndex(str(tmp_path / "buildcache"))
    image_a, image_b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert index.lookup("", "k") is None
    index.record("", "k", image_a)
    index.record("sha256:" + "c" * 64, "k", image_b)
    assert index.lookup("", "k") == image_a
    index.record("", "k", image_b)  # the newest wins
    assert index.lookup("", "k") == image_b
    stale = tmp_path / "buildcache" / ".tmp-old"
    stale.write_text("x")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    fresh = tmp_path / "buildcache" / ".tmp-new"
    fresh.write_text("x")
    assert index.sweep(lambda image_id: image_id == image_b) == 0
    assert index.sweep(lambda image_id: False) == 2
    assert index.lookup("", "k") is None
    assert not stale.exists() and fresh.exists()  # a young temporary file may be a write in progress
    (tmp_path / "buildcache" / ("d" * 64)).write_text("garbage")
    assert [name for name, _ in index.entries()] == ["d" * 64] and index.lookup("x", "y") is None


# -- dispatch against doubles ---------------------------------------------------------------------


class Images:
    def __init__(self) -> None:
        self.configs: dict[str, ImageConfig] = {
            "sha256:" + "0" * 64: ImageConfig(os="linux", config=ContainerConfig(cmd=("sh",),
                                                                                 env=("PATH=/bin",))),
        }
        self.children: dict[tuple[str, str | None], str] = {}
        self.commits: list[dict] = []

    def resolve(self, name: str) -> str:
        if name == "base":
            return "sha256:" + "0" * 64
        raise errdefs.NotFound(f"No such image: {name}")

    def config(self, image_id: str) -> ImageConfig:
        return self.configs[image_id]

    def probe_cache(self, parent: str, container_config: ContainerConfig) -> str | None:
        return self.children.get((parent, cache_key(container_config)))

    def commit(self, parent: str, *, layer: str | None, config: ContainerConfig,
               container_config: ContainerConfig, author: str = "", container: str = "") -> str:
        image_id = "sha256:" + f"{len(self.configs):064x}"
        self.configs[image_id] = ImageConfig(os="linux", config=config, container_config=container_config)
        self.children[(parent, cache_key(container_config))] = image_id
        self.commits.append({"parent": parent, "layer": layer, "cmd": container_config.cmd, "author": author})
        return image_id


class NoLayers:
    def create(self, image_id: str) -> str:
        raise AssertionError("no filesystem step expected")

    mount = unmount = remove = create


class NoContainers:
    def create(self, body: dict) -> str:
        raise AssertionError("no RUN expected")

    run = remove = create


def build(tmp_path: pathlib.Path, dockerfile: str, images: Images, **options) -> tuple[str, str]:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    messages: list[dict] = []
    with open_directory_context(tmp_path) as context:
        image_id = Builder(images=images, layers=NoLayers(), containers=NoContainers(), context=context,
                           options=BuildOptions(**options), output=messages.append).build()
    return image_id, "".join(message.get("stream", "") for message in messages)


def test_metadata_steps_commit_with_docker_comments_and_hit_the_cache(tmp_path: pathlib.Path) -> None:
    images = Images()
    dockerfile = "FROM base\nMAINTAINER me\nENV A=1 B=two\nCMD [\"run\"]\nENTRYPOINT /bin/x\n"
    first, output = build(tmp_path, dockerfile, images)
    assert output.startswith("Step 1/5 : FROM base\n ---> 000000000000\nStep 2/5 : MAINTAINER me\n")
    assert [commit["cmd"] for commit in images.commits] == [
        ("/bin/sh", "-c", "#(nop) ", "MAINTAINER me"),
        ("/bin/sh", "-c", "#(nop) ", "ENV A=1 B=two"),
        ("/bin/sh", "-c", "#(nop) ", 'CMD ["run"]'),
        ("/bin/sh", "-c", "#(nop) ", 'ENTRYPOINT ["/bin/sh" "-c" "/bin/x"]'),
    ]
    assert [commit["author"] for commit in images.commits] == ["me"] * 4
    final = images.configs[first].config
    assert final.env == ("PATH=/bin", "A=1", "B=two") and final.cmd == ("run",)  # CMD set before ENTRYPOINT stays
    assert final.entrypoint == ("/bin/sh", "-c", "/bin/x")
    again, output = build(tmp_path, dockerfile, images)
    assert again == first and output.count(" ---> Using cache") == 4 and len(images.commits) == 4
    # a miss turns the rest of the stage into misses, as in Docker
    third, output = build(tmp_path, dockerfile.replace("B=two", "B=three"), images)
    assert third != first and output.count(" ---> Using cache") == 1
    _, output = build(tmp_path, dockerfile, images, no_cache=True)
    assert "Using cache" not in output


def test_from_scratch_and_errors_name_their_line(tmp_path: pathlib.Path) -> None:
    images = Images()
    image_id, output = build(tmp_path, "FROM scratch\nLABEL a=b\n", images)
    assert "Step 1/2 : FROM scratch\n ---> \n" in output
    assert images.commits[0]["parent"] == "" and images.configs[image_id].config.labels == {"a": "b"}
    with pytest.raises(errdefs.InvalidArgument, match="No image was generated"):
        build(tmp_path, "FROM scratch\n", images)
    with pytest.raises(errdefs.InvalidArgument, match="^Dockerfile:2: cannot RUN in a stage that has no image"):
        build(tmp_path, "FROM scratch\nRUN true\n", images)
    with pytest.raises(errdefs.NotImplemented, match="^Dockerfile:1: platform linux/s390x is not supported"):
        build(tmp_path, "FROM --platform=linux/s390x base\n", images)
    with pytest.raises(errdefs.InvalidArgument, match="failed to reach build target nope in Dockerfile"):
        build(tmp_path, "FROM base\n", images, target="nope")
    with pytest.raises(errdefs.InvalidArgument, match="^Dockerfile:2: invalid proto: icmp"):
        build(tmp_path, "FROM base\nEXPOSE 1/icmp\n", images)
