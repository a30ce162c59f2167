"""Known deviations (a baseline): cases a server is known to fail, each with its clause, framework
version and upstream reason.

A failing case listed for its server becomes a ``deviation`` (not a failure). A listed case that now
*passes* becomes a failure, so the baseline cannot go stale. Entries are matched by the server's
implementation name (``tornado``, ``aiohttp``, or the ``server`` field of a target's ``/stats``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from wsbench.conform.model import PASSING, Case, CaseResult
from wsbench.errors import ScenarioError, UsageError

DEFAULT_BASELINE_NAME = "known-deviations.yaml"


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    server: str
    case: str
    clause: str
    framework: str
    reason: str
    upstream: str | None = None

    @field_validator("server", "case", "clause", "framework", "reason")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value


@dataclass(frozen=True)
class Deviation:
    server: str
    case: str
    clause: str
    framework: str
    reason: str
    upstream: str | None
    path: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class Baseline:
    path: str
    deviations: list[Deviation]

    def find(self, server: str, case_id: str) -> Deviation | None:
        for d in self.deviations:
            if d.server == server and d.case == case_id:
                return d
        return None


def default_baseline_path() -> Path | None:
    """The baseline shipped with the reference servers (``servers/known-deviations.yaml``)."""
    try:
        path = resources.files("wsbench_servers") / DEFAULT_BASELINE_NAME
    except ModuleNotFoundError:
        return None
    return Path(str(path)) if path.is_file() else None


def _key_lines(node: yaml.Node) -> dict[str, int]:
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[str(key.value)] = value.start_mark.line + 1
    return lines


def load_baseline(path: str | Path, cases: Mapping[str, Case]) -> Baseline:
    """Read and check a baseline file; every problem names the file, line and key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{p}: cannot read the baseline: {exc.strerror}") from exc
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ScenarioError(str(p), mark.line + 1 if mark else None, "(yaml)", str(exc).splitlines()[0]) from exc
    if data is None:
        return Baseline(str(p), [])
    if not isinstance(data, dict) or set(data) - {"deviations"}:
        raise ScenarioError(str(p), 1, "(top level)", "expected a mapping with one key, 'deviations' (a list)")
    items = data.get("deviations")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise ScenarioError(str(p), _key_lines(root).get("deviations"), "deviations", "expected a list of entries")
    item_nodes: Sequence[yaml.Node] = []
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "deviations" and isinstance(value, yaml.SequenceNode):
                item_nodes = value.value
    out: list[Deviation] = []
    seen: dict[tuple[str, str], int] = {}
    for index, item in enumerate(items):
        node = item_nodes[index] if index < len(item_nodes) else None
        line = node.start_mark.line + 1 if node is not None else None
        lines = _key_lines(node) if node is not None else {}
        where = f"deviations[{index}]"
        if not isinstance(item, dict):
            raise ScenarioError(str(p), line, where, "expected a mapping with server, case, clause, framework, reason")
        try:
            entry = _Entry.model_validate({k: (str(v) if isinstance(v, int | float) else v) for k, v in item.items()})
        except ValidationError as exc:
            # an unknown key first: it is usually a misspelt one, which also makes a required one "missing"
            err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
            key = ".".join(str(x) for x in err["loc"]) or "(entry)"
            raise ScenarioError(str(p), lines.get(key, line), f"{where}.{key}", err["msg"]) from None
        case = cases.get(entry.case)
        if case is None:
            raise ScenarioError(str(p), lines.get("case", line), f"{where}.case", f"no case {entry.case!r}")
        if case.clause != entry.clause:
            raise ScenarioError(
                str(p), lines.get("clause", line), f"{where}.clause",
                f"case {entry.case} checks SPEC {case.clause}, not {entry.clause}",
            )  # fmt: skip
        if (entry.server, entry.case) in seen:
            raise ScenarioError(
                str(p),
                line,
                where,
                f"{entry.server} {entry.case} is already listed at line {seen[entry.server, entry.case]}",
            )
        seen[entry.server, entry.case] = line or 0
        out.append(
            Deviation(
                entry.server, entry.case, entry.clause, entry.framework, entry.reason, entry.upstream, str(p), line or 0
            )
        )
    return Baseline(str(p), out)


def apply_baseline(results: list[CaseResult], impl: str, baseline: Baseline | None) -> list[str]:
    """Turn listed failures into deviations and listed passes into (stale-baseline) failures.

    Returns warnings (e.g. an entry that could not be checked because its case was skipped).
    """
    warnings: list[str] = []
    if baseline is None:
        return warnings
    for result in results:
        entry = baseline.find(impl, result.id)
        if entry is None:
            continue
        if result.verdict == "fail":
            result.verdict = "deviation"
            result.reason = f"known deviation ({entry.framework}): {entry.reason}"
        elif result.verdict in PASSING:
            result.verdict = "fail"
            result.stale_baseline = True
            result.reason = (
                f"listed as a known deviation at {entry.where}, but it passes now: remove the entry from the baseline"
            )
        elif result.verdict == "skipped":
            warnings.append(f"{entry.where}: {impl} {entry.case} was skipped, so this baseline entry was not checked")
    return warnings


def framework_warnings(baseline: Baseline | None, impl: str, version: str | None) -> list[str]:
    """Entries recorded on another framework version than the server runs now (worth re-checking)."""
    if baseline is None or not version:
        return []
    out = []
    for d in baseline.deviations:
        if d.server == impl and version not in d.framework:
            out.append(f"{d.where}: recorded on {d.framework}, the {impl} server runs {version}: re-check it")
    return out


def entry_record(d: Deviation) -> dict[str, Any]:
    return {"server": d.server, "case": d.case, "clause": d.clause, "framework": d.framework, "where": d.where}
