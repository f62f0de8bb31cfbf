"""Dockerfile builds: the classic builder and what it reads.

The Dockerfile language itself (parser, instructions, substitution) is :mod:`lamina.dockerfile`.

- :mod:`lamina.build.builder`: the build loop, stages and the dispatch of each instruction.
- :mod:`lamina.build.buildargs`: ARG/ENV scoping per stage and ``--build-arg`` values.
- :mod:`lamina.build.dockerignore`: ``.dockerignore`` patterns and the walk they filter.
- :mod:`lamina.build.context`: build contexts (directory, tar, stdin), safe source
  resolution, wildcard expansion, COPY/ADD plans and lazy content checksums.
- :mod:`lamina.build.copy`: writing COPY/ADD sources into a mounted read-write layer.
- :mod:`lamina.build.cache`: the index of cached build steps.

Import the submodules directly; this package imports nothing so that importing one of them
stays cheap.
"""

__all__: list[str] = []
