"""The Dockerfile language, shared by the build front end and the ``--change`` engine.

Bottom to top (each module imports only those above it in this list):

- :mod:`lamina.dockerfile.lexer`: lines, continuations, comments, ``--flags`` and words before
  expansion, one logical line into a :class:`~lamina.dockerfile.lexer.Node`, and the values
  of flags (buildkit's BFlags, Go durations, HEALTHCHECK's arguments).
- :mod:`lamina.dockerfile.substitution`: Docker's variable substitution and word splitting.
- :mod:`lamina.dockerfile.instructions`: heredoc words, the instructions as typed frozen
  records, stages and the parsed :class:`~lamina.dockerfile.instructions.Dockerfile`.
- :mod:`lamina.dockerfile.parser`: directives and the whole file into instructions, one parse
  function per keyword.

Readers: :mod:`lamina.build` (builds) and :mod:`lamina.image.changes` (``import``/``commit``
``--change``).  Import the submodules directly; this package imports nothing so that a
command that does not read a Dockerfile pays nothing for it.
"""

__all__: list[str] = []
