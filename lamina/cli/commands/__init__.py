"""One module per command; each provides ``configure(parser)`` and ``run(args, context)``."""

__all__: list[str] = []
