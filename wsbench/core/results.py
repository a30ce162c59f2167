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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from wsbench import __version__
from wsbench.core import histograms
from wsbench.errors import ResultsFileError, ResultsWriteError

FORMAT = "wsbench-results"
VERSION = 1
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
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
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
        record = {
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
        record.update(fields)
        self._write(record)
        self._wrote_header = True

    def interval(self, record: dict[str, Any]) -> None:
        """An interval record; histogram values may be HdrHistogram objects (encoded here) or strings."""
        out = {"type": "interval", **record}
        hists = out.get("histograms")
        if hists:
            out["histograms"] = {
                name: (histograms.encode(h) if isinstance(h, HdrHistogram) else h) for name, h in hists.items()
            }
        self._write(out)

    def event(self, kind: str, t_s: float, **fields: Any) -> None:
        self._write({"type": "event", "t_s": round(t_s, 6), "kind": kind, **fields})

    def case(self, **fields: Any) -> None:
        self._write({"type": "case", **fields})

    def footer(self, *, status: str, **fields: Any) -> None:
        self._write({"type": "footer", "ended": now_iso(), "status": status, **fields})
        self._wrote_footer = True

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
    """A results file as read: every record, intervals merged by index across workers."""

    path: str
    header: dict[str, Any]
    intervals: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)
    footer: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

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
        """Intervals that count in a summary: ``phases`` if given, else all but connect/warmup."""
        if phases is not None:
            wanted = set(phases)
            return [r for r in self.intervals if r.get("phase") in wanted]
        return [r for r in self.intervals if r.get("phase") not in UNMEASURED_PHASES]

    def histogram(self, name: str, phases: Iterable[str] | None = None) -> HdrHistogram:
        """The exact merge of histogram ``name`` over the measured intervals (see measured_intervals)."""
        return histograms.merge(r.get("histograms", {}).get(name) for r in self.measured_intervals(phases))

    def counter(self, name: str, phases: Iterable[str] | None = None) -> int:
        return sum(int(r.get("counters", {}).get(name, 0)) for r in self.measured_intervals(phases))

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("kind") == kind]


def _merge_interval(into: dict[str, Any], other: dict[str, Any]) -> None:
    """Fold a second worker's record for the same interval index into ``into``."""
    counters = into.setdefault("counters", {})
    for key, value in other.get("counters", {}).items():
        counters[key] = counters.get(key, 0) + value
    into["clients_connected"] = into.get("clients_connected", 0) + other.get("clients_connected", 0)
    hists = into.setdefault("histograms", {})
    for name, text in other.get("histograms", {}).items():
        hists[name] = text if name not in hists else histograms.encode(histograms.merge([hists[name], text]))
    gen_a, gen_b = into.get("generator") or {}, other.get("generator") or {}
    if gen_b:
        into["generator"] = {
            "cpu_s": gen_a.get("cpu_s", 0.0) + gen_b.get("cpu_s", 0.0),
            "cpu_pct": max(gen_a.get("cpu_pct", 0.0), gen_b.get("cpu_pct", 0.0)),
            "loop_lag_ms_max": max(gen_a.get("loop_lag_ms_max", 0.0), gen_b.get("loop_lag_ms_max", 0.0)),
            "send_lag_ms_max": max(gen_a.get("send_lag_ms_max", 0.0), gen_b.get("send_lag_ms_max", 0.0)),
            "open_fds": gen_a.get("open_fds", 0) + gen_b.get("open_fds", 0),
        }
    if other.get("server") and not into.get("server"):
        into["server"] = other["server"]
    workers = into.setdefault("workers", [into.pop("worker")] if "worker" in into else [])
    if "worker" in other:
        workers.append(other["worker"])


def read_results(path: str | os.PathLike[str]) -> Results:
    """Read a results file. Raises :class:`ResultsFileError` only when nothing can be read."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError as exc:
        raise ResultsFileError(f"{p}: no such results file") from exc
    except OSError as exc:
        raise ResultsFileError(f"{p}: cannot read: {exc.strerror}") from exc
    return parse_results(text, p)


def parse_results(text: str, p: Path) -> Results:
    """The records of a results file's ``text`` (read from ``p``, which the warnings name)."""
    lines = text.split("\n")
    ends_cleanly = text.endswith("\n")
    if ends_cleanly:
        lines.pop()
    warnings: list[str] = []
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            if number == len(lines) and not ends_cleanly:
                warnings.append(f"{p}:{number}: the last line is cut short (the run was interrupted); skipped")
            else:
                warnings.append(f"{p}:{number}: unreadable line skipped")
            continue
        records.append(record)
    if not records or records[0].get("type") != "header" or records[0].get("format") != FORMAT:
        raise ResultsFileError(f"{p}: not a wsbench results file (the first line must be a wsbench-results header)")
    header = records[0]
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ResultsFileError(
            f"{p}: results format version {version!r} is newer than this wsbench reads ({VERSION}); upgrade wsbench"
        )
    results = Results(path=str(p), header=header, warnings=warnings)
    by_index: dict[int, dict[str, Any]] = {}
    for record in records[1:]:
        kind = record.get("type")
        if kind == "interval":
            index = int(record.get("index", len(by_index)))
            if index in by_index:
                _merge_interval(by_index[index], record)
            else:
                by_index[index] = dict(record)
        elif kind == "event":
            results.events.append(record)
        elif kind == "case":
            results.cases.append(record)
        elif kind == "footer":
            results.footer = record
        elif kind == "header":
            warnings.append(f"{p}: a second header was ignored")
        else:
            warnings.append(f"{p}: unknown record type {kind!r} ignored")
    results.intervals = [by_index[i] for i in sorted(by_index)]
    if results.footer is None:
        warnings.append(
            f"{p}: no footer: the run was cut short; what follows is computed from the "
            f"{len(results.intervals)} intervals written before it stopped"
        )
    return results


def default_results_path(stem: str, directory: str = "reports") -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(directory) / f"{stem}-{stamp}.jsonl"
