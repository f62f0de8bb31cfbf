"""Layer archives: streaming tar, tar-split, safe extraction, changes and compression.

See :mod:`lamina.archive.api` for the vocabulary (entry, whiteout, opaque directory,
tar-split) and each module's docstring for its format and safety rules.
"""

from lamina.archive.api import (
                                OPAQUE_XATTR,
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
    "WHITEOUT_PREFIX", "WHITEOUT_OPAQUE", "OPAQUE_XATTR",
    "TarReader", "TarWriter",
    "TarSplitWriter", "assemble", "assembled_size", "DirectoryFileGetter",
    "apply_tar",
    "overlay_changes", "tree_changes", "export_tree", "export_changes", "copy_tree",
    "detect", "decompressed",
]
