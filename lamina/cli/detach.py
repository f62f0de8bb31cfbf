"""The detach keys a command uses: ``--detach-keys``, else ``detachKeys`` of the docker CLI's
configuration file (``$DOCKER_CONFIG/config.json``, default ``~/.docker/config.json``), else
the engine's default (Ctrl-P Ctrl-Q).  The keys are sent to the engine, which watches a TTY's
input for them (:mod:`lamina.container.detachkeys`); the CLI only watches what it sends, to
know that the end of the stream is a detach (it then exits 0 and waits for nothing)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from lamina.container.detachkeys import DEFAULT_DETACH_KEYS, parse_detach_keys

__all__ = ["DetachKeys", "configured_detach_keys", "resolve_detach_keys"]


def configured_detach_keys(environment: Mapping[str, str]) -> str:
    """``detachKeys`` of the docker CLI's config file ("" when unset or unreadable)."""
    directory = environment.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    try:
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return ""
    keys = document.get("detachKeys") if isinstance(document, dict) else None
    return keys if isinstance(keys, str) else ""


class DetachKeys:
    """The specification sent to the engine ("" for its default) and its bytes."""

    def __init__(self, specification: str) -> None:
        self.specification = specification
        self.keys = parse_detach_keys(specification) if specification else DEFAULT_DETACH_KEYS


def resolve_detach_keys(flag: str | None, environment: Mapping[str, str] | None = None) -> DetachKeys:
    """The keys of ``--detach-keys`` or of the config file; InvalidArgument for unknown keys."""
    specification = flag if flag else configured_detach_keys(os.environ if environment is None else environment)
    return DetachKeys(specification)


def detach_keys_for(flag: str | None, action: str) -> DetachKeys:
    """:func:`resolve_detach_keys` for a command that attaches: unknown keys are reported as
    the engine reports them (a 400 error of ``action``)."""
    from lamina import errdefs
    from lamina.cli.foreground import EngineError
    from lamina.client.client import ClientError

    try:
        return resolve_detach_keys(flag)
    except errdefs.InvalidArgument as exc:
        raise EngineError(ClientError(400, str(exc)), action) from exc
