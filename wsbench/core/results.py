"""The versioned results file (docs/results-format.md): the one writer and the one reader.

JSON Lines, flushed after every record, so a crash or Ctrl-C leaves every line written so far
readable. A file without a footer is reported as truncated, with a warning; a last line cut in the
middle is skipped, with a warning.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hdrh.histogram import HdrHistogram

from wsbench import __version__
from wsbench.core import histograms
from wsbench.errors import ResultsFileError

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


class ResultsWriter:
    """Writes one record per line and flushes it. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fh: IO[str] | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - long-lived
        except OSError as exc:
            raise ResultsFileError(f"cannot write results file {self.path}: {exc.strerror}") from exc
        self._wrote_header = False
        self._wrote_footer = False

    def _write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            raise ResultsFileError(f"results file {self.path} is already closed")
        self._fh.write(json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=_default) + "\n")
        self._fh.flush()

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
        if self._fh is not None:
            self._fh.close()
            self._fh = None

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
