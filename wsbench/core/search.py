"""The capacity search's rule, once for both drivers (sans I/O): a stage's verdict and the early stop.

A scenario with ``steps:`` and ``search:`` steps the rate up stage by stage. Each *measured* stage is
judged once every record of it is final, that is ``search.grace`` after its end (records are held that
long, :mod:`wsbench.core.recorder`): the search thresholds are checked on that stage's own messages
(those whose intended send time is in the stage, however late they arrived):

* ``delivery.expected``, ``lost``, ``pairs_with_loss`` and ``loss_ratio`` from the delivery accounting's
  totals of the messages *sent* in the stage (:meth:`DeliveryAccounting.totals` with the stage's
  bounds): a message of the stage not delivered by the verdict counts as lost;
* latency, fan-out, counters and rates from the stage's folded interval records
  (:class:`~wsbench.core.intervals.PhaseTotals`), the probe receivers' histograms included.

``wsbench run`` (``drivers/stages.py``) and the Locust master (``locust/master.py``) both feed
:class:`CapacitySearch` and write what it returns: the ``threshold`` event of each stage and, with
``search.stop``, the stop (:func:`stopped_plan`): the remaining stages are skipped and the drain starts
at once; what the next stage sent while the broken one's verdict was awaited belongs to the drain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wsbench.core import socket_latency
from wsbench.core.accounting import Totals
from wsbench.core.intervals import PhaseTotals
from wsbench.core.pacing import MEASURED, Phase
from wsbench.core.scenario import Search
from wsbench.core.summary import metrics
from wsbench.core.thresholds import evaluate


@dataclass(frozen=True)
class StageVerdict:
    """One stage's verdict: the ``threshold`` event a capacity search writes per stage."""

    stage: str
    rate: float
    passed: bool
    verdicts: list[dict[str, Any]]

    @property
    def detail(self) -> str:
        return ("held" if self.passed else "broke") + f" at {self.rate:g}/s"

    def event_fields(self) -> dict[str, Any]:
        """The fields of the ``threshold`` event (docs/results-format.md), but ``t_s``."""
        return {
            "stage": self.stage,
            "rate": self.rate,
            "passed": self.passed,
            "verdicts": self.verdicts,
            "detail": self.detail,
        }


def judge_stage(search: Search, phase: Phase, totals: Totals, phase_totals: PhaseTotals) -> StageVerdict:
    """The search thresholds on one stage's own messages (see the module docstring)."""
    pt = phase_totals
    h = pt.histogram
    probe = {name: pt.hist[name] for name in socket_latency.HISTOGRAMS if name in pt.hist}
    summary = metrics(
        h("latency"), h("latency_uncorrected"), h("fanout"), pt.counters, pt.span_s, totals.as_dict(), probe
    )
    verdicts = evaluate(list(search.thresholds), summary)
    return StageVerdict(phase.name, phase.final_rate, all(v["passed"] for v in verdicts), verdicts)


@dataclass
class CapacitySearch:
    """A run's capacity search: which stages are judged, their verdicts, and whether the search stopped."""

    search: Search
    verdicts: list[StageVerdict] = field(default_factory=list)
    stopping: bool = False  # a stage broke with ``search.stop``: the load goes to the drain

    def stage_index(self, phases: list[Phase], name: str) -> int | None:
        """The position of the measured stage ``name`` in ``phases`` (None: not a judged stage)."""
        return next((k for k, p in enumerate(phases) if p.name == name and p.kind == MEASURED), None)

    def due_s(self, phase: Phase) -> float:
        """When (seconds after the load start) every record of ``phase`` is final: its end + the grace."""
        return phase.end_s + float(self.search.grace)

    def judged(self, name: str) -> bool:
        return any(v.stage == name for v in self.verdicts)

    def judge(self, phase: Phase, totals: Totals, phase_totals: PhaseTotals) -> StageVerdict | None:
        """The verdict of ``phase`` (None once the search stopped, or for a stage judged already)."""
        if self.stopping or self.judged(phase.name):
            return None
        verdict = judge_stage(self.search, phase, totals, phase_totals)
        self.verdicts.append(verdict)
        if not verdict.passed and self.search.stop:
            self.stopping = True
        return verdict

    @staticmethod
    def stop_reason(verdict: StageVerdict) -> str:
        return f"stage {verdict.stage} broke the search thresholds"


def stopped_plan(phases: list[Phase], broken: str, t_s: float) -> list[Phase]:
    """The phases after the search stopped at ``t_s`` (seconds after the load start) on the stage
    ``broken``: every phase up to that stage, then the drain, which starts at ``t_s`` and keeps its
    duration (what ran between the stage's end and ``t_s`` belongs to the drain)."""
    last = next((k for k, p in enumerate(phases) if p.name == broken), len(phases) - 2)
    drain = phases[-1]
    return [*phases[: last + 1], Phase(drain.name, drain.kind, t_s, drain.duration_s)]
