"""Docker's variable substitution and word splitting for Dockerfile arguments.

The implementation lives in :mod:`lamina.image.dockerfile_words` (the image layer's
``--change`` engine uses the same lexer); this module keeps the build front end's names.
"""

from __future__ import annotations

from lamina.image.dockerfile_words import (
    EXPANDED_INSTRUCTIONS,
    WORD_SPLIT_INSTRUCTIONS,
    ShellWords,
    Substitution,
    WordResult,
    environment_from_list,
    is_go_space,
)

__all__ = [
    "ShellWords", "WordResult", "Substitution", "EXPANDED_INSTRUCTIONS", "WORD_SPLIT_INSTRUCTIONS",
    "is_go_space", "environment_from_list",
]
