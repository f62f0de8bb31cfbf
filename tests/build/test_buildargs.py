"""Build args: global ARGs in FROM, re-declaration per stage, ENV over ARG, --build-arg values,
the proxy args and the unused-arg warning (Docker's classic builder rules)."""

from __future__ import annotations

import pytest

from lamina.build.buildargs import PROXY_ARGS, BuildArgs
from lamina.dockerfile.instructions import ArgInstruction, EnvInstruction, FromInstruction
from lamina.dockerfile.parser import parse
from lamina.dockerfile.substitution import Substitution


def run_stage(text: str, options: dict[str, str | None] | None = None) -> tuple[BuildArgs, list[dict[str, str]]]:
    """Simulate the dispatch of every stage: the variables visible after each instruction."""
    dockerfile = parse(text)
    build = BuildArgs(options)
    for meta in dockerfile.meta_args:
        build.declare_global(meta)
    seen = []
    for stage in dockerfile.stages:
        build.expand_from(stage.from_instruction)
        scope = build.stage()
        env: list[str] = []
        for instruction in stage.instructions:
            if isinstance(instruction, ArgInstruction):
                scope.declare_instruction(instruction, env)
            elif isinstance(instruction, EnvInstruction):
                expanded = instruction.expand(Substitution(scope.environment(env)))
                for pair in expanded.pairs:
                    env = [entry for entry in env if entry.partition("=")[0] != pair.key] + [str(pair)]
            seen.append(scope.environment(env))
    return build, seen


def test_global_arg_is_usable_in_from_only() -> None:
    dockerfile = parse("ARG TAG=3.18\nFROM alpine:$TAG\nRUN x\n")
    build = BuildArgs()
    build.declare_global(dockerfile.meta_args[0])
    assert build.expand_from(dockerfile.stages[0].from_instruction).base_name == "alpine:3.18"
    assert build.stage().environment([]) == {}


def test_redeclared_global_arg_takes_the_global_value() -> None:
    _, seen = run_stage("ARG V=global\nFROM a\nARG V\nRUN x\n")
    assert seen[-1] == {"V": "global"}


def test_build_arg_overrides_defaults_everywhere() -> None:
    build, seen = run_stage("ARG V=global\nFROM a:$V\nARG V=local\nRUN x\n", {"V": "cli"})
    assert seen[-1] == {"V": "cli"}
    assert build.global_values()["V"] == "cli"


def test_stage_default_beats_global_default() -> None:
    _, seen = run_stage("ARG V=global\nFROM a\nARG V=local\nRUN x\n")
    assert seen[-1] == {"V": "local"}


def test_arg_is_scoped_to_its_stage() -> None:
    _, seen = run_stage("FROM a\nARG V=1\nRUN x\nFROM b\nRUN y\n")
    assert seen == [{"V": "1"}, {"V": "1"}, {}]


def test_arg_without_value_or_build_arg_is_unset() -> None:
    _, seen = run_stage("FROM a\nARG V\nRUN x\n")
    assert seen[-1] == {}


def test_build_arg_given_without_value_counts_as_not_given() -> None:
    _, seen = run_stage("FROM a\nARG V=default\nRUN x\n", {"V": None})
    assert seen[-1] == {"V": "default"}


def test_env_wins_over_arg() -> None:
    build = BuildArgs({"V": "cli"})
    scope = build.stage()
    scope.declare("V", "arg")
    assert scope.environment(["V=env"]) == {"V": "env"}
    assert scope.run_args(["V=env"]) == []
    assert scope.environment([]) == {"V": "cli"}


def test_arg_default_can_use_earlier_variables() -> None:
    _, seen = run_stage("FROM a\nENV E=e\nARG A=1\nARG B=${A}-$E\nRUN x\n")
    assert seen[-1] == {"E": "e", "A": "1", "B": "1-e"}


def test_one_arg_instruction_is_expanded_before_declaring() -> None:
    # Docker expands the whole instruction first: B does not see A from the same line.
    _, seen = run_stage("FROM a\nARG A=1 B=x$A\nRUN x\n")
    assert seen[-1] == {"A": "1", "B": "x"}


def test_global_args_see_earlier_global_args() -> None:
    dockerfile = parse("ARG A=1\nARG B=$A.2\nFROM img:$B\n")
    build = BuildArgs()
    for meta in dockerfile.meta_args:
        build.declare_global(meta)
    assert build.expand_from(dockerfile.stages[0].from_instruction).base_name == "img:1.2"


def test_proxy_args_need_no_declaration_and_stay_out_of_history() -> None:
    build = BuildArgs({"HTTP_PROXY": "http://proxy:3128", "V": "1"})
    scope = build.stage()
    scope.declare("V", None)
    assert scope.environment([]) == {"HTTP_PROXY": "http://proxy:3128", "V": "1"}
    assert scope.run_args([]) == ["HTTP_PROXY=http://proxy:3128", "V=1"]
    assert scope.history_args([]) == ["V=1"]
    assert scope.history_command([], ["/bin/sh", "-c", "make"]) == ["|1", "V=1", "/bin/sh", "-c", "make"]


def test_declared_proxy_arg_is_recorded() -> None:
    build = BuildArgs({"https_proxy": "p"})
    scope = build.stage()
    scope.declare("https_proxy", None)
    assert scope.history_args([]) == ["https_proxy=p"]


def test_history_command_without_build_args_is_unchanged() -> None:
    assert BuildArgs().stage().history_command([], ["a"]) == ["a"]


def test_undeclared_proxy_only_gives_an_empty_prefix() -> None:
    scope = BuildArgs({"no_proxy": "x"}).stage()
    assert scope.history_command([], ["a"]) == ["|0", "a"]


def test_unused_build_args_warning() -> None:
    build, _ = run_stage("ARG G\nFROM a\nARG USED\nRUN x\n",
                         {"USED": "1", "G": "2", "zeta": "3", "alpha": "4", "HTTP_PROXY": "p"})
    assert build.unused() == ["alpha", "zeta"]
    assert build.unused_warning() == "[Warning] One or more build-args [alpha zeta] were not consumed"
    assert BuildArgs({"A": "1"}).unused_warning() == "[Warning] One or more build-args [A] were not consumed"
    assert BuildArgs().unused_warning() is None


def test_from_platform_is_expanded_with_global_args_only() -> None:
    dockerfile = parse("ARG PLATFORM\nFROM --platform=$PLATFORM a\n")
    instruction = dockerfile.stages[0].from_instruction
    undeclared = BuildArgs({"PLATFORM": "linux/arm64"})
    assert undeclared.expand_from(instruction).platform == ""
    declared = BuildArgs({"PLATFORM": "linux/arm64"})
    declared.declare_global(dockerfile.meta_args[0])
    assert isinstance(instruction, FromInstruction)
    assert declared.expand_from(instruction).platform == "linux/arm64"


@pytest.mark.parametrize("name", sorted(PROXY_ARGS))
def test_every_proxy_arg_is_usable_without_arg(name: str) -> None:
    assert BuildArgs({name: "v"}).stage().environment([]) == {name: "v"}
