"""JUnit XML validates against the Jenkins-dialect schema and carries every verdict."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import xmlschema

from wsbench.conform.junit import write_junit
from wsbench.conform.model import CaseResult
from wsbench.conform.options import ServerOptions
from wsbench.conform.runner import Target, TargetReport
from wsbench.conform.spec import SPEC_VERSION

XSD = Path(__file__).with_name("junit.xsd")


def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def make(verdict: str, case_id: str, **kw: object) -> CaseResult:
    return CaseResult(
        "tornado",
        case_id,
        case_id.split(".")[0],
        "9.1",
        "RFC 6455 §5.2",
        "t",
        "expected <&>",
        'observed "é"',
        verdict,
        duration_s=0.0123,
        **kw,
    )  # type: ignore[arg-type]


def test_junit_validates_and_maps_verdicts(tmp_path: Path) -> None:
    target = Target("tornado", "embedded", ServerOptions(), kind="tornado")
    report = TargetReport(target, "tornado", "http://127.0.0.1:1", duration_s=3.5, framework_version="6.6.1")
    report.results = [
        make("pass", "limits.a"),
        make("fail", "limits.b", reason="r"),
        make("fail", "limits.c", stale_baseline=True, reason="listed but passes"),
        make("deviation", "limits.d", reason="known deviation (tornado 6.6.1): upstream"),
        make("skipped", "shutdown.e", reason="needs a server wsbench started"),
    ]
    broken = TargetReport(Target("x", "url", ServerOptions(), url="http://127.0.0.1:2"), "x", "http://127.0.0.1:2")
    broken.broken = "cannot reach http://127.0.0.1:2"
    path = write_junit(tmp_path / "sub" / "j.xml", [report, broken], 4.0)
    schema().validate(str(path))
    root = ET.parse(path).getroot()
    assert (
        root.tag == "testsuites"
        and root.get("tests") == "5"
        and root.get("failures") == "2"
        and root.get("errors") == "1"
    )
    suite = root.find("testsuite")
    assert suite is not None and suite.get("skipped") == "2" and suite.get("time") == "3.500"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["limits.a [SPEC 9.1]"].find("failure") is None
    assert cases["limits.b [SPEC 9.1]"].find("failure").get("type") == "nonconformance"  # type: ignore[union-attr]
    assert cases["limits.c [SPEC 9.1]"].find("failure").get("type") == "stale-baseline"  # type: ignore[union-attr]
    assert cases["limits.d [SPEC 9.1]"].find("skipped").get("type") == "known-deviation"  # type: ignore[union-attr]
    assert "needs a server" in cases["shutdown.e [SPEC 9.1]"].find("skipped").get("message")  # type: ignore[union-attr]
    assert 'observed "é"' in (cases["limits.a [SPEC 9.1]"].findtext("system-out") or "")
    assert f"(SPEC 9.1 (v{SPEC_VERSION}); RFC 6455 §5.2)" in (cases["limits.a [SPEC 9.1]"].findtext("system-out") or "")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["framework_version"] == "6.6.1" and props["option.max_message_size"] == "65536"
    assert props["spec_version"] == SPEC_VERSION and SPEC_VERSION in (root.get("name") or "")


def test_schema_rejects_what_ci_would_reject(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text('<testsuites><testsuite name="x" tests="1"><testcase/></testsuite></testsuites>')
    assert not schema().is_valid(str(bad))
