"""TensorBoard log folders followed live: each refresh reads only the bytes appended to each event
file since the last one, frames them (core/logs/tfrecord.py) and decodes the scalars as columns
(core/logs/tensorboard.py), the same reader the compare page uses on uploads.

- A record still being written at the end of a file is left for the next refresh (never an error).
- A record whose payload fails its CRC is skipped with a warning naming its byte offset; a record
  whose header fails its CRC cannot be framed, so reading skips ahead to the next valid header.
  With the CRCs skipped (ACTLAB_TFEVENTS_VERIFY_CRC=0, about 1.4x faster) a damaged length is
  followed as it is, and the records it runs over are lost; a damaged payload is dropped only if
  it is no longer a valid Event.
- A writer that restarts writes a new event file into the same folder: it is picked up and its
  points join the run's series.
- A file deleted while followed ends its part of the series with a note; the points read stay.
- A folder with more than MAX_EVENT_FILES event files is refused (ACTLAB_TB_MAX_FILES).

TensorBoard's own layout: every folder that holds event files is one run.
"""
from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..logs.tensorboard import scalar_frame, verify_crc_default
from ..logs.tfrecord import frame, masked_crc32c
from .frame import SeriesFrame, SourceStatus

MAX_EVENT_FILES_ENV = "ACTLAB_TB_MAX_FILES"
MAX_EVENT_FILES = 1000
# A run whose files changed within this many seconds is drawn as running.
LIVE_S = 60.0
_LEN = struct.Struct("<Q")


def max_event_files() -> int:
    try:
        return int(os.environ.get(MAX_EVENT_FILES_ENV, MAX_EVENT_FILES))
    except ValueError:
        raise UserError(f"{MAX_EVENT_FILES_ENV} must be a whole number, got {os.environ[MAX_EVENT_FILES_ENV]!r}") from None


def is_event_file(name: str) -> bool:
    return "tfevents" in name and not name.endswith((".tmp", ".part"))


def find_runs(root: str | os.PathLike) -> dict[str, Path]:
    """{run name: folder} for every folder under `root` holding event files; the name is
    'tb:<root's name>' for root itself, 'tb:<root's name>/<sub/folder>' below it."""
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"TensorBoard folder {root} does not exist")
    if not root.is_dir():
        raise UserError(f"TensorBoard folder {root} is a file, not a folder (give the folder that holds the event files)")
    limit, seen, runs = max_event_files(), 0, {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        n = sum(map(is_event_file, files))
        if not n:
            continue
        seen += n
        if seen > limit:
            raise UserError(f"TensorBoard folder {root} holds more than {limit} event files (the limit, "
                            f"{MAX_EVENT_FILES_ENV}={limit}): add a sub-folder, or raise the limit")
        rel = Path(folder).relative_to(root).as_posix()
        runs[f"tb:{root.resolve().name}" + ("" if rel == "." else f"/{rel}")] = Path(folder)
    return runs


class EventFileTail:
    """One event file, read from where the last read stopped."""

    def __init__(self, path: Path, verify_crc: bool | None = None):
        self.path, self.offset = Path(path), 0
        self.verify_crc = verify_crc_default() if verify_crc is None else verify_crc
        self.warnings: list[str] = []
        self.last_step: int | None = None  # the newest step read from this file
        self._resync_from: int | None = None  # a corrupt header was met here; warned once

    def read(self):
        """The scalar rows appended since the last read (a DataFrame or None). Raises
        FileNotFoundError when the file is gone."""
        size = os.stat(self.path).st_size
        if size < self.offset:
            self.warnings.append(f"{self.path.name} shrank from {self.offset} to {size} bytes: read again from the start")
            self.offset = 0
        if size == self.offset:
            return None
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        frames = []
        base = self.offset
        pos = 0
        while pos < len(data):
            chunk = data if pos == 0 else data[pos:]
            fr = frame(chunk, self.verify_crc)
            for b in fr.bad_crc:
                self.warnings.append(f"{self.path.name}: the record at byte {base + pos + b} fails its CRC: skipped")
            if len(fr.start):
                df, n_bad = scalar_frame(chunk, fr.start, fr.end, self.path.parent.name)
                if n_bad:
                    self.warnings.append(f"{self.path.name}: {n_bad} record(s) before byte {base + pos + int(fr.end[-1]) + 4} "
                                         "are not valid Events: skipped")
                if df is not None:
                    frames.append(df)
                    self.last_step = int(df["step"].max()) if self.last_step is None else max(self.last_step, int(df["step"].max()))
            stop = fr.stop_at
            if stop is None:
                pos = len(data)
                break
            if fr.stop_why == "truncated" and not self._bad_header(chunk, stop):
                pos += stop  # a record still being written: the next refresh reads it whole
                break
            nxt = _next_header(chunk, stop + 1)
            at = base + pos + stop
            if self._resync_from != at:
                self.warnings.append(f"{self.path.name}: the record header at byte {at} fails its CRC: "
                                     + (f"skipped to the next record at byte {base + pos + nxt}" if nxt is not None
                                        else "skipped; reading resumes at the next valid record"))
            self._resync_from = at
            if nxt is None:
                # Nothing valid after it yet: come back from the same place (the rest may still be arriving).
                pos += stop
                break
            pos += nxt
        self.offset = base + pos
        if not frames:
            return None
        import pandas as pd

        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    @staticmethod
    def _bad_header(chunk: bytes, at: int) -> bool:
        """A cut record at the end: if its 12-byte header is all there, it must check out."""
        if at + 12 > len(chunk):
            return False
        return masked_crc32c(chunk[at:at + 8]) != struct.unpack_from("<I", chunk, at + 8)[0]


def _next_header(data: bytes, start: int) -> int | None:
    """The first offset >= start where a whole record header (length + its CRC) checks out and
    the payload opens like an Event (0x09: wall_time), or None."""
    u8 = np.frombuffer(data, np.uint8)
    if len(u8) < start + 13:
        return None
    cand = np.flatnonzero(u8[start + 12:] == 0x09) + start
    for c in cand.tolist():
        (ln,) = _LEN.unpack_from(data, c)
        if ln < 1 << 31 and masked_crc32c(data[c:c + 8]) == struct.unpack_from("<I", data, c + 8)[0]:
            return c
    return None


class TensorBoardFollower:
    """One TensorBoard run (a folder of event files), followed live. Same attributes the monitor
    reads from a SeriesFollower: name, scalars, status, config, layers, histograms, units."""
    kind = "tensorboard"

    def __init__(self, name: str, folder: str | os.PathLike, points: int = 800, verify_crc: bool | None = None):
        self.name, self.folder, self.verify_crc = name, Path(folder), verify_crc
        self.series = SeriesFrame(name, points)
        self.tails: dict[str, EventFileTail] = {}
        self.ended: set[str] = set()
        self.status = SourceStatus()
        self.config: dict = {"source": "tensorboard", "folder": str(self.folder)}
        self.layers: dict = {}
        self.histograms: list[dict] = []
        self.units: list[dict] = []
        self.warnings: list[str] = []

    @property
    def scalars(self):
        return self.series.scalars

    @property
    def notes(self) -> list[str]:
        return self.series.notes

    def poll(self) -> int:
        try:
            names = sorted(e.name for e in os.scandir(self.folder) if e.is_file() and is_event_file(e.name))
        except FileNotFoundError:
            names = []
            self._note(f"the folder {self.folder} was deleted: the series end here")
        if len(names) > max_event_files():
            raise UserError(f"{self.folder} holds {len(names)} event files, more than the limit of {max_event_files()} "
                            f"({MAX_EVENT_FILES_ENV})")
        for n in names:  # file names carry the writer's start time: older files first
            if n not in self.tails and n not in self.ended:
                self.tails[n] = EventFileTail(self.folder / n, self.verify_crc)
        added, newest = 0, 0.0
        for n, tail in list(self.tails.items()):
            try:
                added += self.series.add(tail.read())
                newest = max(newest, os.stat(tail.path).st_mtime)
            except FileNotFoundError:
                del self.tails[n]
                self.ended.add(n)
                self._note(f"event file {n} was deleted while followed: its series end"
                           + (f" at step {tail.last_step}" if tail.last_step is not None else ""))
            self.warnings += tail.warnings
            tail.warnings = []
        live = self.tails and time.time() - newest < LIVE_S
        self.status = SourceStatus("running" if live else ("ended" if not self.tails else "idle"),
                                   "; ".join(self.notes[-3:] + self.warnings[-3:]) or None)
        return added

    def _note(self, text: str) -> None:
        if text not in self.series.notes:
            self.series.notes.append(text)
