"""Every bound the upload readers enforce, named once with its default. A file past one is refused
with a LogParseError naming the limit (`line_chars=1,048,576`), or read up to it with a warning.

The numbers are chosen so a hostile file costs at most ~30 s and ~10x its size in memory, while
no real training log comes near them: the widest exports we know (W&B chart CSVs of 100 runs x 10
metrics x MIN/MAX) have ~3,000 columns, and the deepest JSON (trainer_state.json) nests 3 levels.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Limits:
    # Matches .streamlit/config.toml's maxUploadSize so the CLI and the page refuse the same files.
    file_bytes: int = 200 * 1024 * 1024
    # A zip is expanded in memory, so its claimed and actual expanded size are both bounded.
    zip_total_bytes: int = 512 * 1024 * 1024
    zip_ratio: int = 200  # deflate tops out near 1000:1; real logs compress 5-20:1
    # Each member is parsed as its own file (~4 ms for a small log): 2,000 keep a zip under ~10 s.
    zip_members: int = 2000
    # A line is read pair by pair when no template takes it; one 48 MB line of pairs would be
    # millions of Python objects at once.
    line_chars: int = 1024 * 1024
    # Lines no print-statement template takes are read one at a time, ~20 us each (1-2 MB/s); past
    # this many the rest of the file is left unread with a warning, so such a file stays under 30 s.
    slow_lines: int = 100_000
    # json's C decoder and our flattening recurse; Python's own limit (~1000) is not a message.
    json_depth: int = 64
    # A JSON document (not JSON lines) is decoded whole, at ~10 bytes of Python objects per byte.
    json_document_bytes: int = 64 * 1024 * 1024
    # Each column is converted on its own; 100,000 columns once took over a minute and 1.5 GB.
    columns: int = 10_000
    # Distinct metric keys in one file; past it the first keys (in file order) are kept.
    series: int = 10_000
    # Points of one key in one file; past it the first points (in file order) are kept.
    points_per_series: int = 10_000_000

    def with_(self, **kw) -> Limits:
        return replace(self, **kw)


DEFAULT = Limits()

# The names older code and tests import.
MAX_FILE_BYTES = DEFAULT.file_bytes
MAX_ZIP_TOTAL_BYTES = DEFAULT.zip_total_bytes
MAX_ZIP_RATIO = DEFAULT.zip_ratio
MAX_ZIP_MEMBERS = DEFAULT.zip_members

