"""JUnit XML for CI (the Jenkins/Ant dialect that GitLab, GitHub Actions and Jenkins read).

One ``testsuite`` per server, one ``testcase`` per case. ``fail`` is a ``<failure>``; ``skipped`` and
known ``deviation`` are ``<skipped>`` (the message says which and why); what was observed on the wire
is in ``<system-out>`` for every case.
"""

from __future__ import annotations

import datetime as _dt
import socket
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from wsbench.conform.model import CaseResult
from wsbench.conform.runner import TargetReport
from wsbench.conform.spec import SPEC_VERSION
from wsbench.errors import UsageError


def _time(seconds: float) -> str:
    return f"{max(0.0, seconds):.3f}"


def _testcase(result: CaseResult, suite: str) -> ET.Element:
    case = ET.Element(
        "testcase",
        {
            "name": f"{result.id} [SPEC {result.clause}]",
            "classname": f"{suite}.{result.category}",
            "time": _time(result.duration_s),
        },
    )
    if result.verdict == "fail":
        kind = "stale-baseline" if result.stale_baseline else "nonconformance"
        message = f"expected: {result.expected}; observed: {result.observed}"
        if result.reason:
            message += f" ({result.reason})"
        failure = ET.SubElement(case, "failure", {"type": kind, "message": message})
        failure.text = message
    elif result.verdict == "skipped":
        ET.SubElement(case, "skipped", {"type": "skipped", "message": result.reason or "skipped"})
    elif result.verdict == "deviation":
        ET.SubElement(case, "skipped", {"type": "known-deviation", "message": result.reason or "known deviation"})
    out = ET.SubElement(case, "system-out")
    out.text = (
        f"{result.title} ({result.cites})\nexpected: {result.expected}\nobserved: {result.observed}\n"
        f"verdict: {result.verdict}" + (f"\nreason: {result.reason}" if result.reason else "")
    )
    return case


def junit_tree(reports: Sequence[TargetReport], duration_s: float) -> ET.ElementTree:
    stamp = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
    host = socket.gethostname()
    total = failures = 0
    root = ET.Element("testsuites", {"name": f"wsbench conform (SPEC.md v{SPEC_VERSION})"})
    for report in reports:
        suite_name = f"conform.{report.target.label}"
        results = report.results
        fails = sum(1 for r in results if r.verdict == "fail")
        skipped = sum(1 for r in results if r.verdict in ("skipped", "deviation"))
        errors = 1 if report.broken else 0
        suite = ET.SubElement(
            root,
            "testsuite",
            {
                "name": suite_name,
                "tests": str(len(results)),
                "failures": str(fails),
                "errors": str(errors),
                "skipped": str(skipped),
                "time": _time(report.duration_s),
                "timestamp": stamp,
                "hostname": host,
            },
        )
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", {"name": "spec_version", "value": SPEC_VERSION})
        ET.SubElement(props, "property", {"name": "url", "value": report.url})
        ET.SubElement(props, "property", {"name": "implementation", "value": report.impl})
        if report.framework_version:
            ET.SubElement(props, "property", {"name": "framework_version", "value": report.framework_version})
        for key, value in report.target.options.as_record().items():
            ET.SubElement(props, "property", {"name": f"option.{key}", "value": str(value)})
        for result in results:
            suite.append(_testcase(result, suite_name))
        if report.broken:
            err = ET.SubElement(suite, "system-err")
            err.text = f"the run broke: {report.broken}"
        total += len(results)
        failures += fails
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("errors", str(sum(1 for r in reports if r.broken)))
    root.set("time", _time(duration_s))
    tree = ET.ElementTree(root)
    ET.indent(tree)
    return tree


def write_junit(path: str | Path, reports: Sequence[TargetReport], duration_s: float) -> Path:
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        junit_tree(reports, duration_s).write(p, encoding="utf-8", xml_declaration=True)
    except OSError as exc:
        raise UsageError(f"cannot write the JUnit file {p}: {exc.strerror}") from exc
    return p
