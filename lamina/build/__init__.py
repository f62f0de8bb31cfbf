"""Dockerfile builds: the front end the builder reads.

- :mod:`lamina.build.parser`: the Dockerfile syntax into typed instructions and stages.
- :mod:`lamina.build.shell_words`: Docker's variable substitution and word splitting.
- :mod:`lamina.build.buildargs`: ARG/ENV scoping per stage and ``--build-arg`` values.
- :mod:`lamina.build.dockerignore`: ``.dockerignore`` patterns and the walk they filter.
- :mod:`lamina.build.context`: build contexts (directory, tar, stdin), safe source
  resolution, wildcard expansion, COPY/ADD plans and lazy content checksums.

Import the submodules directly; this package imports nothing so that ``import
lamina.build.parser`` stays cheap.
"""

__all__: list[str] = []
