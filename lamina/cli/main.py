"""``lamina``: a Docker-compatible command line; every command is an Engine API request.

The command table (:data:`COMMANDS`) is data: the words that name a command (``images``,
``image ls``), the module under :mod:`lamina.cli.commands` that implements it, and a one-line
summary.  A command module provides ``configure(parser)`` and ``run(args, context) -> int``
and is imported only when its command runs: ``lamina --help`` loads neither the client,
the API router, the engine nor rich.  Optional module attributes: ``ADD_HELP = False`` (the
command uses ``-h`` for something else, like ``run -h HOSTNAME``), ``OPTIONS_END_AT_POSITIONAL``
(``run IMAGE ls -l``: what follows IMAGE is the container's command), ``USAGE_EXIT_CODE``
(docker's ``run`` exits 125 on a bad command line, not 2).

Global options come before the command (``lamina --data-root /tmp/x images``).  Boolean flags
also accept docker's ``--flag=false`` form.  Exit codes: :mod:`lamina.cli.errors`.

The ``lamina`` program's entry point is :func:`run`: :func:`main`, then an exit that skips the
interpreter's teardown (freeing every module and object costs 15-40 ms, a fifth of ``lamina run
--rm IMAGE true``); it still joins threads, runs the ``atexit`` handlers and flushes stdio.
:func:`main` returns the exit code instead, for callers in the same process (tests).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Sequence

from lamina import __version__, errdefs
from lamina.cli.context import Context, GlobalOptions
from lamina.cli.errors import (
    EXIT_CODES_HELP, EXIT_CONNECTION, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_ROOTLESS, EXIT_USAGE,
    CommandError, UsageError, exit_code_for_status,
)
from lamina.cli.front import terminal_columns
from lamina.records import dataclass

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

#: the cyclic collector's first threshold while a ``lamina`` program runs (see :func:`run`)
COLLECTOR_THRESHOLD = 10_000

__all__ = ["main", "run", "run_command", "Command", "COMMANDS", "GROUPS", "CommandParser", "HelpFormatter",
           "build_command_parser", "find_command"]


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    module: str
    summary: str


def _commands(module: str, summary: str, *names: str) -> list[Command]:
    return [Command(tuple(name.split()), module, summary) for name in names]


COMMANDS: tuple[Command, ...] = tuple(
    _commands("images", "List images", "images", "image ls", "image list")
    + _commands("rmi", "Remove one or more images", "rmi", "image rm", "image remove")
    + _commands("tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", "tag", "image tag")
    + _commands("history", "Show the history of an image", "history", "image history")
    + _commands("inspect", "Return low-level information on containers and images", "inspect")
    + _commands("inspect", "Display detailed information on one or more images", "image inspect")
    + _commands("prune", "Remove unused images", "image prune")
    + _commands("load", "Load images from a tar archive or STDIN", "load", "image load")
    + _commands("save", "Save one or more images to a tar archive (streamed to STDOUT by default)",
                "save", "image save")
    + _commands("import_image", "Import the contents from a tarball to create a filesystem image",
                "import", "image import")
    + _commands("info", "Display system-wide information", "info", "system info")
    + _commands("system_df", "Show lamina disk usage", "system df")
    + _commands("system_check", "Check the data root for damage (and repair it with --repair)",
                "system check")
    + _commands("version", "Show the lamina version information", "version")
    + _commands("serve", "Serve the Docker Engine API on unix sockets (for docker, docker-py, lamina -H)",
                "serve")
    + _commands("create", "Create a new container", "create", "container create")
    + _commands("run", "Create and run a new container from an image", "run", "container run")
    + _commands("start", "Start one or more stopped containers", "start", "container start")
    + _commands("stop", "Stop one or more running containers", "stop", "container stop")
    + _commands("kill", "Kill one or more running containers", "kill", "container kill")
    + _commands("restart", "Restart one or more containers", "restart", "container restart")
    + _commands("rm", "Remove one or more containers", "rm", "container rm", "container remove")
    + _commands("ps", "List containers", "ps", "container ls", "container list", "container ps")
    + _commands("logs", "Fetch the logs of a container", "logs", "container logs")
    + _commands("wait", "Block until one or more containers stop, then print their exit codes",
                "wait", "container wait")
    + _commands("inspect", "Display detailed information on one or more containers", "container inspect")
    + _commands("top", "Display the running processes of a container", "top", "container top")
    + _commands("port", "List port mappings or a specific mapping for the container", "port", "container port")
    + _commands("stats", "Display a live stream of container(s) resource usage statistics",
                "stats", "container stats")
    + _commands("rename", "Rename a container", "rename", "container rename")
    + _commands("update", "Update configuration of one or more containers", "update", "container update")
    + _commands("pause", "Pause all processes within one or more containers", "pause", "container pause")
    + _commands("unpause", "Unpause all processes within one or more containers",
                "unpause", "container unpause")
    + _commands("exec", "Execute a command in a running container", "exec", "container exec")
    + _commands("diff", "Inspect changes to files or directories on a container's filesystem",
                "diff", "container diff")
    + _commands("commit", "Create a new image from a container's changes", "commit", "container commit")
    + _commands("export", "Export a container's filesystem as a tar archive", "export", "container export")
    + _commands("cp", "Copy files/folders between a container and the local filesystem",
                "cp", "container cp")
    + _commands("attach", "Attach local standard input, output, and error streams to a running container",
                "attach", "container attach")
    + _commands("container_prune", "Remove all stopped containers", "container prune")
    + _commands("system_boot", "Restart the containers whose restart policy asks for it "
                "(after a host reboot or an engine crash)", "system boot")
    + _commands("volume_create", "Create a volume", "volume create")
    + _commands("volume_ls", "List volumes", "volume ls", "volume list")
    + _commands("volume_inspect", "Display detailed information on one or more volumes", "volume inspect")
    + _commands("volume_rm", "Remove one or more volumes", "volume rm", "volume remove")
    + _commands("volume_prune", "Remove unused local volumes", "volume prune")
    + _commands("build", "Build an image from a Dockerfile", "build", "image build", "builder build")
    + _commands("builder_prune", "Remove build cache", "builder prune")
    + _commands("events", "Get real time events from the engine", "events", "system events")
    + _commands("pull", "Download an image from a registry", "pull", "image pull")
    + _commands("push", "Upload an image to a registry", "push", "image push")
    + _commands("login", "Log in to a registry", "login")
    + _commands("logout", "Log out from a registry", "logout")
    + _commands("search", "Search a registry's catalog (/v2/_catalog) for repositories", "search")
    + _commands("manifest_inspect", "Display an image's manifest or manifest list from its registry",
                "manifest inspect")
    + _commands("network_ls", "List networks", "network ls", "network list")
    + _commands("network_inspect", "Display detailed information on one or more networks", "network inspect")
    + _commands("network_create", "Create a network", "network create")
    + _commands("network_rm", "Remove one or more networks", "network rm", "network remove")
    + _commands("network_prune", "Remove all unused networks", "network prune")
    + _commands("network_connect", "Connect a container to a network", "network connect")
    + _commands("network_disconnect", "Disconnect a container from a network", "network disconnect")
)

GROUPS = {"container": "Manage containers", "image": "Manage images", "system": "Manage lamina",
          "manifest": "Inspect manifests in registries",
          "volume": "Manage volumes", "network": "Manage networks"}

_GLOBAL_VALUE_OPTIONS = frozenset({"--data-root", "--storage-driver", "--log-level", "-H", "--host",
                                   "--userns-remap", "--userns-remap-layers"})


def find_command(words: Sequence[str]) -> Command | None:
    for command in COMMANDS:
        if tuple(words[: len(command.words)]) == command.words:
            return command
    return None


def _help_text() -> str:
    lines = ["commands:"]
    for command in COMMANDS:
        if len(command.words) == 1:
            lines.append(f"  {command.words[0]:<12}{command.summary}")
    lines.append("")
    lines.append("management commands:")
    for group, summary in GROUPS.items():
        subcommands = sorted({c.words[1] for c in COMMANDS if c.words[0] == group})
        lines.append(f"  {group:<12}{summary} ({', '.join(subcommands)})")
    lines.append("")
    lines.append("Run 'lamina COMMAND --help' for more information on a command.")
    lines.append("")
    lines.append(EXIT_CODES_HELP)
    return "\n".join(lines)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter, as wide as the terminal the way ``shutil.get_terminal_size()``
    finds it (``COLUMNS``, else the size of stdout's terminal, else 80), without importing
    shutil (and bz2, lzma...): argparse makes a formatter for every ``add_argument`` (to check
    its metavar), a hundred for ``run``."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            width = (terminal_columns(os.environ) or 80) - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _global_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lamina", usage="lamina [OPTIONS] COMMAND [ARGS...]",
        description="A Docker-compatible container engine. Every command is a Docker Engine API "
                    "request, served in-process (default) or by the daemon named with -H.",
        epilog=_help_text(), formatter_class=HelpFormatter)
    parser.add_argument("--data-root", metavar="DIR",
                        help="root of persisted state (env LAMINA_DATA_ROOT, default /var/lib/lamina; "
                             "rootless: $XDG_DATA_HOME/lamina)")
    parser.add_argument("--storage-driver", metavar="NAME",
                        help="storage driver to use (env LAMINA_STORAGE_DRIVER; default: what the "
                             "data root holds, else the first usable of overlay2, vfs)")
    parser.add_argument("--userns-remap", metavar="default|USER[:GROUP]",
                        help="run containers in user namespaces mapped to USER's ranges in /etc/subuid "
                             "and /etc/subgid (default: the dockremap user, made when missing; "
                             "env LAMINA_USERNS_REMAP)")
    parser.add_argument("--userns-remap-layers", choices=("auto", "idmap", "copy"),
                        help="how remapped containers see the image's layers: idmapped mounts (idmap), "
                             "chowned copies under <data-root>/<uid>.<gid>/ (copy), or idmapped mounts where "
                             "the kernel and filesystem allow them, else copies (auto, the default; "
                             "env LAMINA_USERNS_REMAP_LAYERS)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), type=str.lower,
                        help="log level on stderr (env LAMINA_LOG_LEVEL, default warning)")
    parser.add_argument("-H", "--host", metavar="HOST",
                        help="daemon socket to talk to, unix:///path (env LAMINA_HOST or DOCKER_HOST; "
                             "default: in-process, no daemon)")
    parser.add_argument("--version", action="version", version=f"lamina version {__version__}",
                        help="print the version and exit")
    return parser


def _split_global(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` into the global options and the command words that follow them."""
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            return argv[:index], argv[index + 1:]
        if not token.startswith("-") or token == "-":
            break
        if token in _GLOBAL_VALUE_OPTIONS:
            index += 1
        index += 1
    return argv[:index], argv[index:]


class CommandParser(argparse.ArgumentParser):
    """argparse's parser, printing its usage, errors and help on the command's own streams (a
    :class:`Context`'s) rather than the process's, at the width of the command's terminal: a
    command that ``lamina serve`` runs for a client (:mod:`lamina.cli.forwarded`) prints them
    to the client, as wide as the client's terminal."""

    def __init__(self, *args: Any, context: Context | None = None, **kwargs: Any) -> None:
        self.context = context  # first: argparse's constructor makes a formatter
        super().__init__(*args, **kwargs)

    def _print_message(self, message: str, file: Any = None) -> None:  # argparse's one writer
        if self.context is not None and message:
            file = self.context.out if file is sys.stdout else self.context.err
        super()._print_message(message, file)

    def _get_formatter(self) -> argparse.HelpFormatter:
        columns = self.context.columns if self.context is not None else None
        if columns:
            return self.formatter_class(prog=self.prog, width=max(columns - 2, 11))
        return super()._get_formatter()


#: parsers built ahead of their command (:func:`prebuild_parsers`), each used once, by the
#: command's words (an alias, ``container ls``, has a parser of its own: its usage names it)
_PREBUILT: dict[tuple[str, ...], tuple[CommandParser, Any]] = {}


def prebuild_parsers() -> None:
    """Build every command's parser now, for the next command this process runs (the engine
    cache's fork server, whose workers each run one: :mod:`lamina.cli.forkserver`)."""
    for command in COMMANDS:
        if command.words not in _PREBUILT:
            _PREBUILT[command.words] = build_command_parser(command)  # type: ignore[assignment]
    # argparse compiles the expression that matches a parser's positional arguments on its first
    # parse (cached by the re module from then on): done here for the commands that start containers
    for words, sample in _REHEARSED:
        _PREBUILT[words][0].parse_known_args(sample)


#: the sample command lines :func:`prebuild_parsers` parses (their results are dropped)
_REHEARSED = ((("run",), ["busybox", "true"]), (("create",), ["busybox", "true"]))


def build_command_parser(command: Command, context: Context | None = None) -> tuple[argparse.ArgumentParser, Any]:
    """The argument parser of a command (printing on ``context``'s streams), and its module
    (imported now)."""
    prebuilt = _PREBUILT.pop(command.words, None)
    if prebuilt is not None:
        prebuilt[0].context = context
        return prebuilt
    module = importlib.import_module(f"lamina.cli.commands.{command.module}")
    parser = CommandParser(prog="lamina " + " ".join(command.words),
                           description=command.summary,
                           formatter_class=HelpFormatter,
                           add_help=getattr(module, "ADD_HELP", True), context=context)
    module.configure(parser)
    return parser, module


_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def _boolean_overrides(parser: argparse.ArgumentParser, argv: list[str], *,
                       stop_at_positional: bool = False) -> tuple[list[str], dict[str, bool]]:
    """Accept docker's ``--flag=false`` / ``-f=true`` for flags that take no value.  With
    ``stop_at_positional`` (``run IMAGE COMMAND...``), what follows the first positional
    argument is left alone: it belongs to the container's command."""
    kept: list[str] = []
    overrides: dict[str, bool] = {}
    takes_value = False
    for position, token in enumerate(argv):
        if token == "--" or (stop_at_positional and not takes_value
                             and (not token.startswith("-") or token == "-")):
            kept.extend(argv[position:])
            break
        option = parser._option_string_actions.get(token)
        takes_value = option is not None and option.nargs != 0 and "=" not in token
        name, equals, value = token.partition("=")
        action = parser._option_string_actions.get(name) if equals and name.startswith("-") else None
        if action is None or action.nargs != 0 or not isinstance(action.const, bool):
            kept.append(token)
            continue
        lowered = value.lower()
        if lowered not in _TRUE | _FALSE:
            raise UsageError(f'invalid argument "{value}" for "{name}" flag: expected true or false')
        enabled = lowered in _TRUE
        overrides[action.dest] = action.const if enabled else not action.const
    return kept, overrides


def _configure_logging(level_name: str | None) -> None:
    """Log to stderr; tracebacks only at debug level (users get the one-line message).

    :mod:`logging` itself is loaded only when a record at this level is emitted
    (:mod:`lamina.log`): most commands log nothing and need not pay for it."""
    from lamina import log

    name = (level_name or os.environ.get("LAMINA_LOG_LEVEL") or "warning").lower()
    log.configure(log.LEVELS.get(name, log.LEVELS["warning"]), lambda: _install_log_handler(name))


def _install_log_handler(name: str) -> None:
    import logging

    class LogFormatter(logging.Formatter):
        def formatException(self, exc_info: Any) -> str:  # noqa: N802 - logging's name
            if debug:
                return super().formatException(exc_info)
            return "(run with --log-level debug for the traceback)"

    level = getattr(logging, name.upper(), logging.WARNING)
    debug = level <= logging.DEBUG
    logger = logging.getLogger("lamina")
    for handler in list(logger.handlers):
        if getattr(handler, "_lamina_cli", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogFormatter("%(levelname)s %(name)s: %(message)s"))
    handler._lamina_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def _report(exc: BaseException, context: Context) -> int:
    """Print ``exc`` like docker and return its exit code."""
    if isinstance(exc, CommandError):
        context.error(f"Error: {exc.message}")
        return exc.exit_code
    client_module = sys.modules.get("lamina.client.client")
    if client_module is not None and isinstance(exc, client_module.ClientError):
        context.error(f"Error response from daemon: {exc.message}")
        return exit_code_for_status(exc.status)
    base_module = sys.modules.get("lamina.client.base")  # loaded by whatever raised a TransportError
    if base_module is not None and isinstance(exc, base_module.TransportError):
        context.error(f"Error: {exc}")
        return EXIT_CONNECTION
    if isinstance(exc, errdefs.LaminaError):
        from lamina.api.errors import status_for

        context.error(f"Error: {exc}")
        return exit_code_for_status(status_for(exc))
    from lamina.log import get_logger

    get_logger("lamina.cli").error("unexpected %s", type(exc).__name__, exc_info=exc)
    context.error(f"Error: internal error: {type(exc).__name__}: {exc}")
    return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    context = Context(GlobalOptions(), stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr)
    try:
        return _run(arguments, context)
    except KeyboardInterrupt:
        context.error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (lamina images | head): stop quietly, and keep the interpreter
        # from complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        finally:
            os.close(devnull)
        return EXIT_FAILURE


def run() -> None:
    """The ``lamina`` program: :func:`main` with ``sys.argv``, then exit at once (:func:`run_to_end`'s code)."""
    os._exit(run_to_end())


def run_to_end() -> int:
    """:func:`main` with ``sys.argv`` and what the interpreter's exit does that matters; the exit code.

    What the interpreter's own exit would do that matters is done here, in its order: wait for
    the threads that are not daemons, run the ``atexit`` handlers (logging's flush, pending
    ``weakref.finalize`` calls), flush stdout and stderr (exit code 120 when that fails, as
    Python's).  Only the teardown of modules and objects is skipped.

    The cyclic garbage collector's first threshold is raised from 700 to
    :data:`COLLECTOR_THRESHOLD` allocations: a command's imports make tens of thousands of
    objects that live as long as the process (modules, classes, functions), and at the default
    the collector ran ~30 times during them to find almost nothing.  Cycles are still
    collected, less often (``serve`` and long attaches included)."""
    gc.set_threshold(COLLECTOR_THRESHOLD, *gc.get_threshold()[1:])
    code = main()
    threading = sys.modules.get("threading")  # no threads were started if it was never imported
    if threading is not None:
        current = threading.current_thread()
        for thread in threading.enumerate():
            if thread is not current and not thread.daemon:
                thread.join()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            code = 120
    return code


def _run(arguments: list[str], context: Context) -> int:
    global_arguments, words = _split_global(arguments)
    if global_arguments:
        parser = _global_parser()
        try:
            options = parser.parse_args(global_arguments)
        except SystemExit as exit:
            return _exit_status(exit)
        context.options = GlobalOptions(data_root=options.data_root, storage_driver=options.storage_driver,
                                        log_level=options.log_level, host=options.host,
                                        userns_remap=options.userns_remap,
                                        userns_remap_layers=options.userns_remap_layers)
    else:
        # nothing before the command: every global option has its default (None), what the
        # global parser would give for no arguments, without building it (with its help text)
        context.options = GlobalOptions()
    _configure_logging(context.options.log_level)

    if not words or words[0] == "help":
        if len(words) > 1:
            return _run([*global_arguments, *words[1:], "--help"], context)
        _global_parser().print_help(context.out)
        return EXIT_OK
    if words[0] in GROUPS and (len(words) == 1 or words[1] in ("-h", "--help", "help")):
        context.print(_group_help(words[0]))
        return EXIT_OK
    return run_command(words, context)


def run_command(words: Sequence[str], context: Context, *, in_daemon: bool = False) -> int:
    """Run the command ``words`` name (what follows the global options) with ``context``'s
    options and streams; its exit code.  ``in_daemon``: ``lamina serve`` runs it for a client
    (:mod:`lamina.cli.forwarded`), in one of its threads, with its own engine as the
    context's transport: the process's state (logging, rootless namespaces) is not touched."""
    command = find_command(words)
    if command is None:
        shown = " ".join(words[:2]) if words[0] in GROUPS else words[0]
        context.error(f"lamina: '{shown}' is not a lamina command.\nSee 'lamina --help'")
        return EXIT_USAGE
    try:
        command_parser, module = build_command_parser(command, context)
        rest, overrides = _boolean_overrides(command_parser, words[len(command.words):],
                                             stop_at_positional=getattr(module, "OPTIONS_END_AT_POSITIONAL", False))
        try:
            args = command_parser.parse_args(rest)
        except SystemExit as exit:
            status = _exit_status(exit)
            return getattr(module, "USAGE_EXIT_CODE", status) if status == EXIT_USAGE else status
        for destination, value in overrides.items():
            setattr(args, destination, value)
        if not in_daemon and os.geteuid() != 0 and (command.module == "serve"
                                                    or not _remote_host(context.options.host)):
            _enter_rootless()
        return int(module.run(args, context) or 0)
    except (KeyboardInterrupt, BrokenPipeError):
        raise
    except Exception as exc:
        return _report(exc, context)


def _remote_host(host: str | None) -> bool:
    """Whether requests go to a daemon (``-H``, ``LAMINA_HOST``, ``DOCKER_HOST``)."""
    return bool(host or os.environ.get("LAMINA_HOST") or os.environ.get("DOCKER_HOST"))


def _enter_rootless() -> None:
    """An unprivileged user's engine works inside the user's rootless namespaces
    (:mod:`lamina.rootless`): join them before anything touches the store."""
    from lamina.config import default_exec_root
    from lamina.rootless import join
    from lamina.runtime.delegation import PAUSE_LEAF, enter

    uid = os.geteuid()
    try:
        exec_root = os.environ.get("LAMINA_EXEC_ROOT") or default_exec_root(uid)
        delegation = enter(exec_root)  # a delegated cgroup: this process moves into its engine leaf
        join(exec_root, uid, os.getegid(), delegation.leaf(PAUSE_LEAF) if delegation else None)
    except (errdefs.InvalidArgument, errdefs.FailedPrecondition) as exc:
        raise CommandError(f"rootless lamina: {exc}", EXIT_ROOTLESS) from exc


def _group_help(group: str) -> str:
    lines = [f"Usage:  lamina {group} COMMAND", "", GROUPS[group], "", "Commands:"]
    seen: set[str] = set()
    for command in COMMANDS:
        if command.words[0] == group and command.module not in seen:
            seen.add(command.module)
            lines.append(f"  {command.words[1]:<10}{command.summary}")
    lines.append("")
    lines.append(f"Run 'lamina {group} COMMAND --help' for more information on a command.")
    return "\n".join(lines)


def _exit_status(exit: SystemExit) -> int:
    code = exit.code
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    return EXIT_USAGE


if __name__ == "__main__":
    run()
