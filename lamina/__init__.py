"""lamina: a container engine in Python implementing the Docker model.

The package is layered (DESIGN.md §2); ``tests/test_layering.py`` enforces that a
module imports only from its own layer or below.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
