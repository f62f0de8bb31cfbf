"""Layer archives: streaming tar, tar-split, safe extraction, changes and compression.

See :mod:`lamina.archive.api` for the vocabulary (entry, whiteout, opaque directory,
tar-split) and each module's docstring for its format and safety rules.

The names below are imported from their module on first use (PEP 562): importing
``lamina.archive.api`` for a type does not load the tar, compression and extraction code
(and its C extensions), which starting a container never needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lamina.lazyexports import lazy_exports

if TYPE_CHECKING:
    from lamina.archive.api import (
        OPAQUE_XATTR,
        USER_OPAQUE_XATTR,
        WHITEOUT_OPAQUE,
        WHITEOUT_PREFIX,
        Change,
        ChangeKind,
        EntryType,
        FileGetter,
        TarEntry,
        WhiteoutMode,
    )
    from lamina.archive.changes import (
        copy_tree,
        export_changes,
        export_tree,
        overlay_changes,
        tree_changes,
    )
    from lamina.archive.compression import decompressed, detect
    from lamina.archive.extract import apply_tar
    from lamina.archive.tarsplit import (
        DirectoryFileGetter,
        TarSplitWriter,
        assemble,
        assembled_size,
    )
    from lamina.archive.tarstream import TarReader, TarWriter

__all__ = [
    "TarEntry", "EntryType", "WhiteoutMode", "ChangeKind", "Change", "FileGetter",
    "WHITEOUT_PREFIX", "WHITEOUT_OPAQUE", "OPAQUE_XATTR", "USER_OPAQUE_XATTR",
    "TarReader", "TarWriter",
    "TarSplitWriter", "assemble", "assembled_size", "DirectoryFileGetter",
    "apply_tar",
    "overlay_changes", "tree_changes", "export_tree", "export_changes", "copy_tree",
    "detect", "decompressed",
]

# public name -> the module of this package that defines it
_HOMES = {
    **dict.fromkeys(("TarEntry", "EntryType", "WhiteoutMode", "ChangeKind", "Change", "FileGetter",
                     "WHITEOUT_PREFIX", "WHITEOUT_OPAQUE", "OPAQUE_XATTR", "USER_OPAQUE_XATTR"), "api"),
    **dict.fromkeys(("TarReader", "TarWriter"), "tarstream"),
    **dict.fromkeys(("TarSplitWriter", "assemble", "assembled_size", "DirectoryFileGetter"), "tarsplit"),
    "apply_tar": "extract",
    **dict.fromkeys(("overlay_changes", "tree_changes", "export_tree", "export_changes", "copy_tree"), "changes"),
    **dict.fromkeys(("detect", "decompressed"), "compression"),
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, __all__)
