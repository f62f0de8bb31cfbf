"""Argument parsing, the command table, start-up imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lamina.cli import main as cli_main
from lamina.cli.main import COMMANDS, GROUPS, _boolean_overrides, _split_global, build_command_parser, find_command


def test_global_options_are_split_from_the_command() -> None:
    assert _split_global(["--data-root", "/x", "-H", "unix:///s", "images", "-a"]) == (
        ["--data-root", "/x", "-H", "unix:///s"], ["images", "-a"])
    assert _split_global(["--log-level=debug", "image", "ls"]) == (["--log-level=debug"], ["image", "ls"])
    assert _split_global(["images", "--data-root", "/x"]) == ([], ["images", "--data-root", "/x"])
    assert _split_global(["--version"]) == (["--version"], [])


def test_every_command_module_imports_and_configures() -> None:
    for command in COMMANDS:
        parser, module = build_command_parser(command)
        assert callable(module.run)
        assert parser.prog == "lamina " + " ".join(command.words)


def test_aliases_resolve_to_the_same_module() -> None:
    assert find_command(["images"]).module == find_command(["image", "ls"]).module == "images"
    assert find_command(["rmi", "x"]).module == find_command(["image", "rm", "x"]).module == "rmi"
    assert find_command(["system", "df"]).module == "system_df"
    assert find_command(["image"]) is None
    assert set(GROUPS) == {"container", "image", "system", "volume", "network", "manifest"}
    assert find_command(["pull", "x"]).module == find_command(["image", "pull", "x"]).module == "pull"
    assert find_command(["manifest", "inspect", "x"]).module == "manifest_inspect"


def test_boolean_flags_accept_equals_values() -> None:
    parser, _ = build_command_parser(find_command(["history"]))
    rest, overrides = _boolean_overrides(parser, ["-H=false", "--no-trunc=true", "busybox"])
    assert rest == ["busybox"]
    assert overrides == {"human": False, "no_trunc": True}
    from lamina.cli.errors import UsageError

    with pytest.raises(UsageError, match="invalid argument"):
        _boolean_overrides(parser, ["--no-trunc=perhaps"])


def test_options_with_values_are_not_rewritten() -> None:
    parser, _ = build_command_parser(find_command(["images"]))
    rest, overrides = _boolean_overrides(parser, ["--format={{.ID}}", "--filter=dangling=true"])
    assert rest == ["--format={{.ID}}", "--filter=dangling=true"] and overrides == {}


def test_help_lists_commands_and_exit_codes(capsys) -> None:
    assert cli_main.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "images" in out and "system" in out and "exit codes:" in out
    assert "cannot connect to the daemon" in out


def test_version_option(capsys) -> None:
    assert cli_main.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("lamina version ")


def test_unknown_command_is_a_usage_error(capsys) -> None:
    assert cli_main.main(["frobnicate"]) == 2
    assert "'frobnicate' is not a lamina command" in capsys.readouterr().err
    assert cli_main.main(["image", "frobnicate"]) == 2
    assert "'image frobnicate'" in capsys.readouterr().err


def test_unknown_option_is_a_usage_error(capsys) -> None:
    assert cli_main.main(["images", "--frobnicate"]) == 2
    assert cli_main.main(["--frobnicate", "images"]) == 2
    assert cli_main.main(["--log-level", "loud", "images"]) == 2


def test_group_without_subcommand_prints_its_help(capsys) -> None:
    assert cli_main.main(["system"]) == 0
    out = capsys.readouterr().out
    assert "df" in out and "check" in out


def test_command_help_exits_zero(capsys) -> None:
    assert cli_main.main(["image", "prune", "--help"]) == 0
    assert "--all" in capsys.readouterr().out


def _modules_after(code: str) -> set[str]:
    output = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                            check=True, capture_output=True, text=True).stdout
    return set(json.loads(output.splitlines()[-1]))


def test_importing_the_cli_loads_neither_services_api_client_nor_rich() -> None:
    modules = _modules_after("import lamina.cli.main")
    unwanted = {m for m in modules if m.startswith(("lamina.services", "lamina.api", "lamina.client", "rich"))}
    assert unwanted == set()
    assert "lamina.cli.commands" not in modules


def test_help_does_not_load_the_client_or_commands() -> None:
    modules = _modules_after(
        "import contextlib, io\nfrom lamina.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])")
    assert not {m for m in modules if m.startswith(("lamina.services", "lamina.api", "lamina.client", "rich",
                                                    "lamina.cli.commands."))}


def test_the_in_process_client_does_not_load_http_client() -> None:
    modules = _modules_after("import lamina.client.client, lamina.client.transport")
    assert "http.client" not in modules
    assert not {m for m in modules if m.startswith(("lamina.services", "rich"))}


def test_without_global_options_the_global_parser_is_not_built_and_its_defaults_hold(monkeypatch, capsys) -> None:
    from lamina.cli.context import GlobalOptions

    # what the parser gives for no global options is what a command runs with when none precede it
    assert GlobalOptions(**vars(cli_main._global_parser().parse_args([]))) == GlobalOptions()
    built = []
    real = cli_main._global_parser
    monkeypatch.setattr(cli_main, "_global_parser", lambda: built.append(1) or real())
    assert cli_main.main(["version", "--help"]) == 0
    assert built == []
    assert cli_main.main(["--log-level", "error", "version", "--help"]) == 0
    assert built == [1]
    assert cli_main.main([]) == 0  # the help text is the global parser's
    assert built == [1, 1] and "Run 'lamina COMMAND --help'" in capsys.readouterr().out
