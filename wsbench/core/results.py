"""The versioned results file (docs/results-format.md): the one writer and the one reader.

JSON Lines, flushed after every record, so a crash or Ctrl-C leaves every line written so far
readable. A file without a footer is reported as truncated, with a warning; a last line cut in the
middle is skipped, with a warning.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from wsbench import __version__
from wsbench.core import histograms, rollup
from wsbench.errors import ResultsFileError, ResultsWriteError

FORMAT = "wsbench-results"
#: 2: ``rollup`` records (every :data:`~wsbench.core.rollup.ROLLUP_INTERVALS` intervals) and the header's
#: ``rollup`` key; a version-1 reader would count their deliveries twice, so the version is bumped.
VERSION = 2
#: Phases whose intervals do not count in a summary (deliveries of messages sent in a measured phase
#: that arrive during the drain do count: they land in drain intervals).
UNMEASURED_PHASES = frozenset({"connect", "warmup"})


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def library_versions(*names: str) -> dict[str, str]:
    """Python, platform and the installed versions of ``names`` (missing ones are left out)."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform(), "wsbench": __version__}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a regular file may take a write in parts)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise :class:`ResultsFileError` now, before anything starts, when ``path`` cannot be written.

    Creates the missing parent directories (as the writer would); leaves no file behind."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        existed = p.exists()
        with open(p, "ab"):
            pass
        if not existed:
            p.unlink()
    except OSError as exc:
        raise ResultsFileError(f"cannot write the results file {p}: {exc.strerror or exc}") from exc


class ResultsWriter:
    """Writes one record per line, each with one ``write`` of its own (nothing is held in a buffer).

    Use as a context manager or call :meth:`close`. When a write fails (a full disk, a quota, an I/O
    error) the file is cut back to its last whole record, :attr:`failure` says what happened and how far
    the file got, ``on_failure`` (when set) is called once, and every record from the failed one on is
    kept in memory instead (:attr:`unwritten`): a run can then stop cleanly and still summarize all it
    measured (:meth:`read`), while the file reads as a truncated run.

    Interval records are also folded into ``rollup`` records of ``rollup_intervals`` intervals each
    (written when the next window starts, and at the footer), so that a reader of a long run can skip
    the intervals (``docs/results-format.md``). ``rollup_intervals=0`` writes none. ``observers`` are
    called with each interval, event and footer record after it is written (live metrics).
    """

    def __init__(self, path: str | os.PathLike[str], rollup_intervals: int = rollup.ROLLUP_INTERVALS) -> None:
        self.path = Path(path)
        self.rollup_intervals = rollup_intervals
        self._rollups: rollup.RowFolder | None = None
        self.observers: list[Callable[[str, dict[str, Any]], None]] = []
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ResultsFileError(f"cannot write results file {self.path}: {exc.strerror or exc}") from exc
        self._wrote_header = False
        self._wrote_footer = False
        self._closed = False
        self.records_written = 0
        self.bytes_written = 0
        self.last_interval_end_s: float | None = None
        self.failure: ResultsWriteError | None = None
        self.unwritten: list[dict[str, Any]] = []
        self.on_failure: Callable[[ResultsWriteError], None] | None = None

    def _write(self, record: dict[str, Any]) -> None:
        if self._closed:
            raise ResultsFileError(f"results file {self.path} is already closed")
        if self.failure is not None:
            self.unwritten.append(record)
            return
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=_default) + "\n").encode()
        assert self._fd is not None
        try:
            _write_all(self._fd, line)
        except OSError as exc:
            self._failed(record, exc)
            return
        self.records_written += 1
        self.bytes_written += len(line)
        if record.get("type") == "interval" and isinstance(record.get("end_s"), int | float):
            self.last_interval_end_s = float(record["end_s"])

    def _failed(self, record: dict[str, Any], exc: OSError) -> None:
        assert self._fd is not None
        with contextlib.suppress(OSError):  # cutting a file back needs no space
            os.ftruncate(self._fd, self.bytes_written)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None
        upto = f", up to {self.last_interval_end_s:.1f} s into the run" if self.last_interval_end_s is not None else ""
        got = f"it holds the first {self.records_written} records ({self.bytes_written:,} bytes{upto})"
        self.failure = ResultsWriteError(str(self.path), exc.strerror or str(exc), self.records_written, got)
        self.unwritten.append(record)
        if self.on_failure is not None:
            callback, self.on_failure = self.on_failure, None
            with contextlib.suppress(Exception):
                callback(self.failure)

    def read(self) -> Results:
        """Everything written so far, as :func:`read_results` reads it; after a failed write, the records
        the file holds and those kept in memory (the whole run, as if the disk had not filled)."""
        if self.failure is None:
            return read_results(self.path)
        head = self.path.read_bytes()[: self.bytes_written] if self.records_written else b""
        tail = "".join(json.dumps(r, ensure_ascii=False, default=_default) + "\n" for r in self.unwritten)
        return parse_results(head.decode("utf-8", errors="replace") + tail, self.path)

    def header(self, *, kind: str = "run", **fields: Any) -> None:
        if self._wrote_header:
            raise ResultsFileError("a results file has exactly one header")
        record: dict[str, Any] = {
            "type": "header",
            "format": FORMAT,
            "version": VERSION,
            "kind": kind,
            "created": now_iso(),
            "wsbench_version": __version__,
            "histogram": {
                "unit": "us",
                "lowest": histograms.LOWEST_US,
                "highest": histograms.HIGHEST_US,
                "significant_digits": histograms.SIGNIFICANT_DIGITS,
            },
        }
        if self.rollup_intervals:
            record["rollup"] = {"intervals": self.rollup_intervals}
        record.update(fields)
        self._write(record)
        self._wrote_header = True
        if self.rollup_intervals:
            interval_s = float(record.get("interval_s") or 1.0)
            self._rollups = rollup.RowFolder(interval_s, width=self.rollup_intervals)

    def interval(self, record: dict[str, Any]) -> None:
        """An interval record; histogram values may be HdrHistogram objects (encoded here) or strings.

        With rollups, an interval past the first :data:`~wsbench.core.rollup.DETAIL_INTERVALS` keeps its
        histograms' percentiles as numbers (``percentiles``) instead of the histograms: those are merged
        into its rollup, which is what a reader of such a long run uses.
        """
        out = {"type": "interval", **record}
        hists = out.get("histograms")
        if (
            hists
            and self._rollups is not None
            and not rollup.detailed(int(record.get("index", 0)), self._rollups.width)
        ):
            del out["histograms"]
            out["percentiles"] = rollup.percentile_numbers(hists)
        elif hists:
            out["histograms"] = {
                name: (histograms.encode(h) if isinstance(h, HdrHistogram) else h) for name, h in hists.items()
            }
        self._write(out)
        if self._rollups is not None:
            self._rollups.add_interval(record)
            self._write_rollups(self._rollups.take())
        self._notify("interval", record)

    def _notify(self, kind: str, record: dict[str, Any]) -> None:
        for observer in self.observers:
            observer(kind, record)

    def _write_rollups(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            row["histograms"] = {name: counts.encode() for name, counts in row["histograms"].items()}
            self._write(row)

    def flush_rollups(self) -> None:
        """Write the rollups of every interval so far (the footer does this; also before a long pause)."""
        if self._rollups is not None and not self._closed:
            self._write_rollups(self._rollups.take(everything=True))

    def event(self, kind: str, t_s: float, **fields: Any) -> None:
        record = {"type": "event", "t_s": round(t_s, 6), "kind": kind, **fields}
        self._write(record)
        self._notify("event", record)

    def case(self, **fields: Any) -> None:
        self._write({"type": "case", **fields})

    def footer(self, *, status: str, **fields: Any) -> None:
        self.flush_rollups()
        record = {"type": "footer", "ended": now_iso(), "status": status, **fields}
        self._write(record)
        self._wrote_footer = True
        self._notify("footer", record)

    def close(self) -> None:
        self._closed = True
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _default(obj: Any) -> Any:
    if isinstance(obj, HdrHistogram):
        return histograms.encode(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    raise TypeError(f"cannot write {type(obj).__name__} to a results file")


@dataclass
class Results:
    """A results file as read: header, events, cases, footer, and the intervals folded into rows.

    ``intervals`` holds interval-shaped records in time order: each interval on its own for a run of up
    to :data:`~wsbench.core.rollup.MAX_ROWS` intervals, else rows of ``row_width`` consecutive intervals
    of one phase (:mod:`wsbench.core.rollup`: counters summed, histograms merged exactly, samples as
    aggregates), whatever the length of the run. Locust workers' records of one index are merged.
    """

    path: str
    header: dict[str, Any]
    intervals: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)
    footer: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    row_width: int = 1
    interval_count: int = 0

    @property
    def kind(self) -> str:
        return str(self.header.get("kind", "run"))

    @property
    def truncated(self) -> bool:
        return self.footer is None

    @property
    def status(self) -> str:
        return "truncated" if self.footer is None else str(self.footer.get("status", "completed"))

    def measured_intervals(self, phases: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Rows that count in a summary: ``phases`` if given, else all but connect/warmup."""
        if phases is not None:
            wanted = set(phases)
            return [r for r in self.intervals if r.get("phase") in wanted]
        return [r for r in self.intervals if r.get("phase") not in UNMEASURED_PHASES]

    def histogram(self, name: str, phases: Iterable[str] | None = None) -> HdrHistogram:
        """The exact merge of histogram ``name`` over the measured rows (see measured_intervals)."""
        total = rollup.Counts()
        for r in self.measured_intervals(phases):
            total.add((r.get("histograms") or {}).get(name))
        return total.histogram()

    def counter(self, name: str, phases: Iterable[str] | None = None) -> int:
        return sum(int(r.get("counters", {}).get(name, 0)) for r in self.measured_intervals(phases))

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("kind") == kind]


_INTERVAL_PREFIX = b'{"type":"interval"'
_INDEX = re.compile(rb'"index":(\d+)')


class _Reader:
    """Reads a results file line by line, folding intervals into rows as it goes (bounded memory).

    With rollups in the file, once :data:`~wsbench.core.rollup.DETAIL_INTERVALS` intervals have been read
    one by one, the interval lines of each later rollup window are held back unparsed until that
    window's rollup arrives, and then dropped: the rollup stands for them. Lines no rollup came for (a
    truncated file's tail, a Locust worker's late record) are read one by one at the end.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.warnings: list[str] = []
        self.results: Results | None = None
        self.folder: rollup.RowFolder | None = None
        self.window = 0
        self.mode: dict[int, bool] = {}  # rollup window -> its intervals are read one by one
        self.pending: dict[int, list[tuple[int, bytes]]] = {}
        self.without_histograms = 0
        self.rollups_only = False

    def _parse(self, number: int, line: bytes, last: bool) -> dict[str, Any] | None:
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            if last:
                self.warnings.append(
                    f"{self.path}:{number}: the last line is cut short (the run was interrupted); skipped"
                )
            else:
                self.warnings.append(f"{self.path}:{number}: unreadable line skipped")
            return None
        return record

    def _header(self, record: dict[str, Any] | None) -> None:
        p = self.path
        if record is None or record.get("type") != "header" or record.get("format") != FORMAT:
            raise ResultsFileError(f"{p}: not a wsbench results file (the first line must be a wsbench-results header)")
        version = record.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise ResultsFileError(
                f"{p}: results format version {version!r} is newer than this wsbench reads ({VERSION}); upgrade wsbench"
            )
        self.results = Results(path=str(p), header=record, warnings=self.warnings)
        self.window = int((record.get("rollup") or {}).get("intervals") or 0)
        interval_s = float(record.get("interval_s") or 1.0)
        self.folder = rollup.RowFolder(interval_s, max_rows=rollup.MAX_ROWS)
        # a run planned so long that its rows will be wider than a rollup anyway: read rollups only
        planned = rollup.planned_intervals(record.get("scenario") or {}, interval_s)
        self.rollups_only = bool(self.window) and planned is not None and planned > rollup.MAX_ROWS * self.window / 2

    def line(self, number: int, line: bytes, last: bool) -> None:
        if not line.strip():
            return
        if self.results is None:
            self._header(self._parse(number, line, last))
            return
        if self.window and line.startswith(_INTERVAL_PREFIX):
            found = _INDEX.search(line, 0, 200)
            if found is not None:
                window = int(found.group(1)) // self.window
                one_by_one = self.mode.get(window)
                if one_by_one is None:
                    one_by_one = self.mode[window] = not self.rollups_only and rollup.detailed(
                        window * self.window, self.window
                    )
                if not one_by_one:
                    self.pending.setdefault(window, []).append((number, line))
                    return
        record = self._parse(number, line, last)
        if record is not None:
            self.record(record)

    def record(self, record: dict[str, Any]) -> None:
        assert self.results is not None and self.folder is not None
        kind = record.get("type")
        if kind == "interval":
            if "index" not in record:
                record["index"] = self.folder.top + 1
            self.folder.add_interval(record)
            self.folder.settle()
        elif kind == "rollup":
            window = int(record.get("index", 0)) // (self.window or rollup.ROLLUP_INTERVALS)
            if self.mode.get(window, False):
                return  # its intervals were read one by one
            self.mode[window] = False
            self.pending.pop(window, None)
            self.folder.add_rollup(record)
            self.folder.settle()
        elif kind == "event":
            self.results.events.append(record)
        elif kind == "case":
            self.results.cases.append(record)
        elif kind == "footer":
            self.results.footer = record
        elif kind == "header":
            self.warnings.append(f"{self.path}: a second header was ignored")
        else:
            self.warnings.append(f"{self.path}: unknown record type {kind!r} ignored")

    def finish(self) -> Results:
        if self.results is None:
            raise ResultsFileError(
                f"{self.path}: not a wsbench results file (the first line must be a wsbench-results header)"
            )
        assert self.folder is not None
        tail = sorted((item for lines in self.pending.values() for item in lines), key=lambda item: item[0])
        self.pending = {}
        for number, line in tail:  # intervals that no rollup stands for
            record = self._parse(number, line, False)
            if record is not None:
                self.without_histograms += "histograms" not in record and "percentiles" in record
                self.record(record)
        if self.without_histograms:
            self.warnings.append(
                f"{self.path}: the last {self.without_histograms} intervals have no rollup (the run was cut short) "
                "and, this far into a long run, no histograms: their deliveries count, their latencies are "
                "only in their records' percentiles"
            )
        results = self.results
        results.intervals = self.folder.records()
        results.row_width = self.folder.width
        results.interval_count = self.folder.top + 1
        if results.footer is None:
            self.warnings.append(
                f"{self.path}: no footer: the run was cut short; what follows is computed from the "
                f"{results.interval_count} intervals written before it stopped"
            )
        return results


def _feed(reader: _Reader, lines: Iterable[bytes]) -> Results:
    """Hand ``lines`` to ``reader``, telling it which is the last and whether it was cut short."""
    number = 0
    previous: bytes | None = None
    for line in lines:
        if previous is not None:
            reader.line(number, previous, False)
        number += 1
        previous = line
    if previous is not None and previous.strip():
        reader.line(number, previous, not previous.endswith(b"\n"))
    return reader.finish()


def read_results(path: str | os.PathLike[str]) -> Results:
    """Read a results file (streaming, in bounded memory). Raises :class:`ResultsFileError` only when
    nothing can be read."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            return _feed(_Reader(p), fh)
    except FileNotFoundError as exc:
        raise ResultsFileError(f"{p}: no such results file") from exc
    except OSError as exc:
        raise ResultsFileError(f"{p}: cannot read: {exc.strerror}") from exc


def parse_results(text: str, p: Path) -> Results:
    """The records of a results file's ``text`` (read from ``p``, which the warnings name)."""
    return _feed(_Reader(p), text.encode("utf-8").splitlines(keepends=True))


def default_results_path(stem: str, directory: str = "reports") -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(directory) / f"{stem}-{stamp}.jsonl"
