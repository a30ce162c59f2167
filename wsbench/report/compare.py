"""Side-by-side comparison of runs: ratios against the first run (the baseline), and whether each
difference is larger than the run-to-run noise measured from the runs themselves.

Metrics (ratio = run / baseline):

* ``throughput`` - deliveries received per second while the send schedule runs (higher is better);
* ``p50``, ``p99``, ``p99_9`` - corrected broadcast latency (from intended send time) over the
  measured intervals, exactly as the summary computes it (lower is better);
* ``loss`` - lost / expected deliveries (final accounting of the footer; lower is better);
* ``cpu_per_delivery`` - CPU seconds per delivery in microseconds: the server's when its ``/stats``
  samples carry ``cpu_s`` in every run, else the generator's (lower is better);
* ``rss`` - server resident memory, mean of the ``/stats`` samples of the measured intervals (lower is
  better);
* ``socket_p50``, ``socket_p99`` - latency at the socket (the probe receivers' kernel receive stamps,
  ``latency_socket``: the server's latency without the generator's own delay), only when every run
  has it; the comparison says whether it was compared (lower is better).

How the noise is measured (also printed under every comparison): see :mod:`wsbench.report.compare_stats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from wsbench.core.results import Results
from wsbench.core.summary import summarize
from wsbench.errors import UsageError
from wsbench.report.compare_stats import (
    CONFIDENCE,
    MAX_BLOCKS,
    RESAMPLES,
    SAME_WITHIN,
    Statistic,
    bootstrap_weights,
    cpu_source_of,
    loss_counts,
    metric_statistics,
    ratio,
    ratio_interval,
    resample_seed,
    rows_for,
)
from wsbench.report.rundata import RunData, unique_labels

if TYPE_CHECKING:
    from wsbench.report.compare_thresholds import ThresholdVerdict


NOISE_METHOD = (
    f"Noise: each run's 1-second intervals are bootstrap-resampled ({RESAMPLES} resamples, in at most "
    f"{MAX_BLOCKS} contiguous blocks; percentiles from the exactly merged histograms of each resample), "
    f"independently per run; ≈ marks a ratio whose {CONFIDENCE:.0%} interval contains 1.0 or that is within "
    f"{SAME_WITHIN:.1%} of 1. Loss uses a Poisson (Jeffreys) interval on the lost count instead."
)
NOISE_SINGLE = (
    " With one run per column this is the noise within a run: a machine busier during one run than the other "
    "is not in it (use --repeat 3: interleaved repeats, pooled)."
)
NOISE_REPEATS = (
    " Repeats of a run are pooled: each resample first draws repeats with replacement, then blocks within "
    "them, so the spread between repeats counts as noise."
)


@dataclass(frozen=True)
class MetricSpec:
    key: str
    title: str
    unit: str
    better: Literal["higher", "lower"]


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("throughput", "deliveries/s", "", "higher"),
    MetricSpec("p50", "latency p50", "ms", "lower"),
    MetricSpec("p99", "latency p99", "ms", "lower"),
    MetricSpec("p99_9", "latency p99.9", "ms", "lower"),
    MetricSpec("loss", "loss", "%", "lower"),
    MetricSpec("cpu_per_delivery", "CPU/delivery", "us", "lower"),
    MetricSpec("rss", "server RSS mean", "MiB", "lower"),
)
#: compared when every run has kernel-stamped probe deliveries (``latency_socket``)
SOCKET_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("socket_p50", "latency at the socket p50", "ms", "lower"),
    MetricSpec("socket_p99", "latency at the socket p99", "ms", "lower"),
)
SOCKET_COMPARED = (
    " Latency at the socket (socket_p50, socket_p99: the probe receivers' kernel receive stamps, the server's "
    "latency without the generator's own delay) is compared too: every run has it."
)
SOCKET_NOT_COMPARED = " Latency at the socket is not compared: {missing} has no kernel-stamped probe deliveries."


@dataclass
class Cell:
    """One run's value of one metric, with its bootstrap distribution and its ratio to the baseline."""

    value: float | None
    samples: np.ndarray | None = field(default=None, repr=False)
    ratio: float | None = None
    low: float | None = None
    high: float | None = None
    within_noise: bool | None = None
    #: ``baseline``, ``n/a``, ``same`` (equal values), ``noise``, ``better`` or ``worse``
    verdict: str = "n/a"


@dataclass
class MetricRow:
    spec: MetricSpec
    cells: list[Cell]
    winner: int | None = None  # index of the best run when its lead is outside the noise
    winner_within_noise: bool = False
    note: str = ""


@dataclass
class Comparison:
    runs: list[RunData]
    rows: list[MetricRow]
    warnings: list[str] = field(default_factory=list)
    method: str = NOISE_METHOD
    #: runs during which the load generator was the bottleneck (the summary's self-check)
    generator_bound: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [run.label for run in self.runs]

    def row(self, key: str) -> MetricRow:
        for row in self.rows:
            if row.spec.key == key:
                return row
        raise KeyError(key)

    def to_dict(self, verdicts: Sequence[ThresholdVerdict] = ()) -> dict[str, object]:
        """The comparison as plain JSON-able data (``wsbench compare --json``); infinite ratios are null."""

        def num(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else round(x, 6)

        return {
            "baseline": self.labels[0],
            "runs": [
                {
                    "label": run.label,
                    "path": run.results.path,
                    "status": run.results.status,
                    "repeats": [{"path": p.path, "status": p.status} for p in run.parts],
                }
                for run in self.runs
            ],
            "metrics": {
                row.spec.key: {
                    "title": row.spec.title,
                    "unit": row.spec.unit,
                    "better": row.spec.better,
                    "values": [num(c.value) for c in row.cells],
                    "ratios": [num(c.ratio) for c in row.cells[1:]],
                    "ratio_infinite": [c.ratio is not None and math.isinf(c.ratio) for c in row.cells[1:]],
                    "intervals": [[num(c.low), num(c.high)] for c in row.cells[1:]],
                    "verdicts": [c.verdict for c in row.cells[1:]],
                    "winner": None if row.winner is None else self.labels[row.winner],
                    "winner_within_noise": row.winner_within_noise,
                }
                for row in self.rows
            },
            "headline": self.headline(),
            "noise_method": self.method,
            "thresholds": [
                {
                    "expr": v.threshold.expr,
                    "metric": v.threshold.metric,
                    "op": v.threshold.op,
                    "limit": v.threshold.limit,
                    "run": v.run,
                    "observed": num(v.observed),
                    "within_noise": v.within_noise,
                    "passed": v.passed,
                }
                for v in verdicts
            ],
            "warnings": self.warnings,
        }

    def _lead(self, key: str) -> tuple[str, str, float, bool] | None:
        """``(winner, runner-up, winner/runner-up, within noise)`` of a metric, or None."""
        row = self.row(key)
        if row.winner is None:
            return None
        best = row.cells[row.winner].value
        rivals = [(i, c.value) for i, c in enumerate(row.cells) if i != row.winner and c.value is not None]
        reverse = row.spec.better == "lower"  # the runner-up is the next best value
        second_i, second = sorted(rivals, key=lambda iv: iv[1], reverse=not reverse)[0]
        r = ratio(best, second)
        if r is None:
            return None
        return self.labels[row.winner], self.labels[second_i], r, row.winner_within_noise

    def headline(self) -> str:
        """One sentence naming the faster run (by corrected latency p99, then p50) with its ratio, and a
        caveat when the load generator, not the server, was the bottleneck in some run."""
        caveat = ""
        if self.generator_bound:
            caveat = (
                f" Caveat: the load generator was the bottleneck during {', '.join(self.generator_bound)}: "
                "latencies there are partly the generator's (see the warnings)."
            )
        return self._headline() + caveat

    def _vs_base(self, key: str, label: str) -> str | None:
        """``run / base`` of metric ``key`` for run ``label``, worded and rounded as the table's column."""
        row = self.row(key)
        i = self.labels.index(label)
        r = row.cells[i].ratio if row.cells[i].ratio is not None else ratio(row.cells[i].value, row.cells[0].value)
        if r is None:
            return None
        return f"{key} {'∞' if math.isinf(r) else f'{r:.2f}'}x"

    def _headline(self) -> str:
        """Every ratio as the table states it: run / base (the first run), below 1 when the run is faster."""
        p99, p50 = self._lead("p99"), self._lead("p50")
        base = self.labels[0]
        decided = next((lead for lead in (p99, p50) if lead is not None and not lead[3]), None)
        if decided is None:
            shown, key = (p99, "p99") if p99 is not None else (p50, "p50")
            if shown is None:
                return "No latency difference to report (no latency was measured in some run)."
            stated = []
            for run in shown[:2]:
                said = self._vs_base(key, run) if run != base else None
                if said is not None:
                    stated.append(f"{run} / {base} {said.split(' ', 1)[1]}")
            return f"No run is faster beyond the noise: latency {key} {', '.join(stated)}, within the measured noise."
        winner, rival, _, _ = decided
        clauses = []
        for run in (winner, rival):
            if run == base:
                continue
            parts = []
            for key, lead in (("p50", p50), ("p99", p99)):
                said = self._vs_base(key, run)
                if said is not None:
                    noise = " (within noise)" if lead is None or lead[3] or lead[0] != winner else ""
                    parts.append(said + noise)
            if parts:
                clauses.append(f"{run} / {base} {', '.join(parts)}")
        who = f"{winner} (the base)" if winner == base else winner
        return f"Faster: {who}. Latency, run / base as in the table: {'; '.join(clauses)}."


def _cell_bootstrap(key: str, run: RunData, index: int, statistic: Statistic, rows: np.ndarray, resamples: int) -> Cell:
    if rows.size == 0:
        return Cell(value=None)
    point = statistic(run, rows, np.ones((1, rows.size)))[0]
    if not np.isfinite(point):
        return Cell(value=None)
    weights = bootstrap_weights(run, rows, resamples, np.random.default_rng(resample_seed(key, index)))
    return Cell(value=float(point), samples=statistic(run, rows, weights))


def _cell_loss(run: RunData, index: int, resamples: int) -> Cell:
    lost, expected = loss_counts(run)
    if expected <= 0:
        return Cell(value=None)
    rng = np.random.default_rng(resample_seed("loss", index))
    samples = rng.gamma(lost + 0.5, 1.0, size=resamples) / expected * 100.0
    return Cell(value=100.0 * lost / expected, samples=samples)


def _judge(spec: MetricSpec, cell: Cell, base: Cell) -> None:
    cell.ratio = ratio(cell.value, base.value)
    if cell.ratio is None:
        cell.verdict = "n/a"
        return
    if cell.value == base.value:
        cell.within_noise = True
        cell.verdict = "same"
        return
    interval = (
        ratio_interval(base.samples, cell.samples) if cell.samples is not None and base.samples is not None else None
    )
    if interval is not None:
        cell.low, cell.high = interval
    in_interval = interval is not None and interval[0] <= 1.0 <= interval[1]
    negligible = math.isfinite(cell.ratio) and abs(cell.ratio - 1.0) < SAME_WITHIN
    cell.within_noise = in_interval or negligible
    if cell.within_noise:
        cell.verdict = "noise"
    else:
        higher = cell.ratio > 1.0
        cell.verdict = "better" if higher == (spec.better == "higher") else "worse"


def _winner(spec: MetricSpec, row: MetricRow) -> None:
    known = [(i, c) for i, c in enumerate(row.cells) if c.value is not None]
    if len(known) < 2:
        return
    ordered = sorted(known, key=lambda ic: ic[1].value, reverse=spec.better == "higher")
    (best_i, best), (_, second) = ordered[0], ordered[1]
    if best.value == second.value:
        return
    row.winner = best_i
    r = ratio(second.value, best.value)
    interval = (
        ratio_interval(best.samples, second.samples)
        if best.samples is not None and second.samples is not None
        else None
    )
    in_interval = interval is not None and interval[0] <= 1.0 <= interval[1]
    row.winner_within_noise = in_interval or (r is not None and math.isfinite(r) and abs(r - 1.0) < SAME_WITHIN)


def compare_runs(runs: Sequence[RunData], resamples: int = RESAMPLES) -> Comparison:
    """Compare runs against ``runs[0]``. Needs at least two runs."""
    if len(runs) < 2:
        raise UsageError("a comparison needs at least two results files")
    runs = list(runs)
    warnings: list[str] = []
    for run in runs:
        for k, part in enumerate(run.parts):
            if part.kind != "run":
                raise UsageError(f"{part.path}: a {part.kind} file holds no load run to compare")
            name = run.label if len(run.parts) == 1 else f"{run.label} #{k + 1}"
            warnings += [f"{name}: {w}" for w in summarize(part)["warnings"]]
            footer = part.footer or {}
            if footer and footer.get("status", "completed") != "completed":
                reason = f" ({footer['reason']})" if footer.get("reason") else ""
                warnings.append(
                    f"{name}: {part.path} {footer['status']}{reason}: it counts with what it measured until then"
                )
    scenarios = {str((part.header.get("scenario") or {}).get("name", "")) for run in runs for part in run.parts}
    if len(scenarios) > 1:
        warnings.append(f"the runs come from different scenarios ({', '.join(sorted(scenarios))}): ratios may mislead")
    cpu_source = cpu_source_of(runs)
    statistics = metric_statistics(cpu_source)
    without_socket = [run.label for run in runs if not _has_socket_latency(run)]
    rows: list[MetricRow] = []
    for spec in METRICS + (SOCKET_METRICS if not without_socket else ()):
        if spec.key == "loss":
            cells = [_cell_loss(run, i, resamples) for i, run in enumerate(runs)]
        else:
            cells = [
                _cell_bootstrap(spec.key, run, i, statistics[spec.key], rows_for(spec.key, run, cpu_source), resamples)
                for i, run in enumerate(runs)
            ]
        title = (
            f"{'server' if cpu_source == 'server' else 'gen.'} {spec.title}"
            if spec.key == "cpu_per_delivery"
            else spec.title
        )
        row = MetricRow(spec=MetricSpec(spec.key, title, spec.unit, spec.better), cells=cells)
        cells[0].verdict = "baseline"
        for cell in cells[1:]:
            _judge(spec, cell, cells[0])
        _winner(spec, row)
        if spec.key == "rss" and all(c.value is None for c in cells):
            row.note = "no /stats samples"
        rows.append(row)
    method = NOISE_METHOD + (NOISE_REPEATS if any(len(run.parts) > 1 for run in runs) else NOISE_SINGLE)
    if not without_socket:
        method += SOCKET_COMPARED
    elif len(without_socket) < len(runs):
        method += SOCKET_NOT_COMPARED.format(missing=", ".join(without_socket))
    bound = [run.label for run in runs if any(summarize(p)["generator"]["bottleneck"] for p in run.parts)]
    return Comparison(runs=runs, rows=rows, warnings=warnings, method=method, generator_bound=bound)


def _has_socket_latency(run: RunData) -> bool:
    return run.has_histogram("latency_socket") and bool(run.histogram("latency_socket").total().sum())


def load_runs(results: Sequence[Results], labels: Sequence[str | None] | None = None) -> list[RunData]:
    """One run per results file; files given the same label are pooled as repeats of one run."""
    labels = list(labels) if labels is not None else [None] * len(results)
    if len(labels) != len(results):
        raise UsageError(f"{len(labels)} labels for {len(results)} results files")
    groups: list[tuple[list[Results], str | None]] = []
    by_label: dict[str, list[Results]] = {}
    for result, label in zip(results, labels, strict=True):
        if label is not None and label in by_label:
            by_label[label].append(result)
            continue
        parts = [result]
        if label is not None:
            by_label[label] = parts
        groups.append((parts, label))
    runs = [RunData.from_repeats(parts, label) for parts, label in groups]
    given = {label for _, label in groups if label is not None}
    defaults = [run for run, (_, label) in zip(runs, groups, strict=True) if label is None]
    for run in defaults:  # a file's own name must not take a name given on the command line
        if run.label in given:
            run.label = f"{run.label} ({Path(run.results.path).stem})"
    unique = unique_labels([r.label for r in defaults], [r.results.path for r in defaults])
    for run, label in zip(defaults, unique, strict=True):
        run.label = label
    return runs
