"""Build arguments: ``--build-arg`` values, ARG declarations and their scope per stage.

Docker's rules (the classic builder's ``BuildArgs``), which this module implements:

- An ARG before the first FROM is *global*: it can be used in FROM lines (base name and
  ``--platform``), and nowhere else until a stage declares it again with ``ARG NAME`` (no
  default: the stage then sees the global value, or the ``--build-arg`` value).
- Inside a stage an ARG is visible from its declaration to the end of that stage.  Its value
  is the ``--build-arg`` value when one was given (a ``--build-arg NAME`` without a value that
  the client could not resolve counts as not given), else its default, else the global ARG's
  value.
- ENV wins over ARG: substitution and RUN's environment see the ENV value of a name that is
  both (:meth:`StageArgs.environment`).
- The proxy variables (:data:`PROXY_ARGS`) are usable without any ARG when given with
  ``--build-arg``; they are passed to RUN but left out of the command Docker records in history
  and cache keys unless the Dockerfile declares them (:meth:`StageArgs.history_args`).
- A ``--build-arg`` that no ARG declared anywhere in the stages built is reported with
  Docker's warning ``[Warning] One or more build-args [a b] were not consumed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lamina.dockerfile.instructions import ArgInstruction, FromInstruction
from lamina.dockerfile.substitution import Substitution, environment_from_list

__all__ = ["BuildArgs", "StageArgs", "PROXY_ARGS"]

#: Build args usable without an ARG and excluded from history unless declared.
PROXY_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
})


class BuildArgs:
    """The build arguments of one build: ``--build-arg`` values and the global ARGs.

    ``options`` maps each ``--build-arg`` name to its value (None: given without a value and
    not resolved by the client, which Docker treats as not given).  Call
    :meth:`declare_global` for each ARG before the first FROM, :meth:`expand_from` for each
    FROM, :meth:`stage` when a stage starts, and :meth:`unused_warning` at the end.
    """

    def __init__(self, options: Mapping[str, str | None] | None = None) -> None:
        self.options: dict[str, str | None] = dict(options or {})
        self.global_args: dict[str, str | None] = {}
        self.referenced: set[str] = set()

    def _value(self, name: str, declared: Mapping[str, str | None]) -> tuple[str, bool]:
        given = self.options.get(name)
        if given is not None:
            return given, True
        if name in declared and declared[name] is not None:
            return declared[name], True  # type: ignore[return-value]
        default = self.global_args.get(name)
        if default is not None:
            return default, True
        return "", False

    def _values(self, declared: Mapping[str, str | None]) -> dict[str, str]:
        values: dict[str, str] = {}
        for name in [*declared, *sorted(PROXY_ARGS)]:
            value, found = self._value(name, declared)
            if found:
                values[name] = value
        return values

    def global_values(self) -> dict[str, str]:
        """What FROM lines can use: the global ARGs and the proxy args given."""
        return self._values(self.global_args)

    def declare_global(self, instruction: ArgInstruction, escape: str = "\\") -> ArgInstruction:
        """Declare the global ARGs of ``instruction``.  Like Docker, the whole instruction is
        expanded with the global ARGs declared *before* it (``ARG A=1 B=$A`` leaves B empty
        unless A was declared earlier)."""
        expanded = instruction.expand(Substitution(self.global_values(), escape))
        for argument in expanded.args:
            self.global_args[argument.name] = argument.default
            self.referenced.add(argument.name)
        return expanded

    def expand_from(self, instruction: FromInstruction, escape: str = "\\") -> FromInstruction:
        """``instruction`` with its base name and platform expanded by the global ARGs."""
        return instruction.expand(Substitution(self.global_values(), escape))

    def stage(self) -> StageArgs:
        """A fresh scope for a new stage: no ARG visible until the stage declares it."""
        return StageArgs(self)

    def unused(self) -> list[str]:
        """``--build-arg`` names no ARG declared (proxy args never count), sorted."""
        return sorted(name for name in self.options
                      if name not in self.referenced and name not in PROXY_ARGS)

    def unused_warning(self) -> str | None:
        """Docker's warning line for :meth:`unused`, or None."""
        unused = self.unused()
        if not unused:
            return None
        return f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed"


class StageArgs:
    """The ARGs visible in one stage (Docker's per-stage ``allowedBuildArgs``)."""

    def __init__(self, build: BuildArgs) -> None:
        self.build = build
        self.declared: dict[str, str | None] = {}

    def declare(self, name: str, default: str | None) -> None:
        """An ``ARG name[=default]`` of this stage (already expanded)."""
        self.declared[name] = default
        self.build.referenced.add(name)

    def declare_instruction(self, instruction: ArgInstruction, env: Iterable[str],
                            escape: str = "\\") -> ArgInstruction:
        """Expand ``instruction`` with the stage's variables, then declare each ARG of it."""
        expanded = instruction.expand(Substitution(self.environment(env), escape))
        for argument in expanded.args:
            self.declare(argument.name, argument.default)
        return expanded

    def values(self) -> dict[str, str]:
        """Every visible ARG with a value (and the proxy args given), by name."""
        return self.build._values(self.declared)

    def run_args(self, env: Iterable[str]) -> list[str]:
        """``NAME=value`` of the visible ARGs that ENV does not override, sorted: what RUN
        adds to the container's environment."""
        env_names = set(environment_from_list(list(env)))
        return sorted(f"{name}={value}" for name, value in self.values().items()
                      if name not in env_names)

    def environment(self, env: Iterable[str]) -> dict[str, str]:
        """The variables substitution sees: the stage's ENV (image config Env list), then the
        visible ARGs that ENV does not override."""
        env_list = list(env)
        variables = environment_from_list(env_list)
        for entry in self.run_args(env_list):
            name, _, value = entry.partition("=")
            variables[name] = value
        return variables

    def history_args(self, env: Iterable[str]) -> list[str]:
        """The build args Docker records before a RUN command in history and cache keys:
        :meth:`run_args` without the proxy args the Dockerfile did not declare."""
        return [entry for entry in self.run_args(env)
                if entry.partition("=")[0] in self.declared or entry.partition("=")[0] not in PROXY_ARGS]

    def history_command(self, env: Iterable[str], command: list[str]) -> list[str]:
        """Docker's recorded RUN command: ``["|N", "A=1", ..., *command]`` when build args
        are in effect, else ``command`` unchanged."""
        args = self.history_args(env)
        if not self.run_args(env):
            return list(command)
        return [f"|{len(args)}", *args, *command]
