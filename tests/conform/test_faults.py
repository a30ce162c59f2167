"""Proving the gate: every fault-injected server variant fails the case that names its bug.

Each variant is a reference server with one bug (tests/fixtures/faulty_servers), started by the SPEC 15
contract exactly as ``--server-cmd`` starts it; only the case naming the bug is run, to keep time down.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from tests.fixtures.faulty_servers.faults import FAULTS, build
from wsbench.conform.cases import BY_ID, select
from wsbench.conform.options import resolve
from wsbench.conform.runner import Target, run_target
from wsbench.target import command_server_argv, option_flags

ROOT = Path(__file__).resolve().parents[2]

VARIANTS = [(name, base) for name, fault in sorted(FAULTS.items()) for base in fault.bases]


def fault_command(name: str, base: str) -> str:
    """The --server-cmd for a variant (PYTHONPATH so it runs from any working directory)."""
    return shlex.join(
        [
            "env",
            f"PYTHONPATH={ROOT}",
            sys.executable,
            "-m",
            "tests.fixtures.faulty_servers.run",
            "--fault",
            name,
            "--base",
            base,
        ]
    )


def test_every_fault_names_a_real_case_and_builds() -> None:
    assert len(FAULTS) >= 12
    for name, fault in FAULTS.items():
        assert fault.case in BY_ID, name
        for base in fault.bases:
            assert build(name, base).__name__ == f"{base}_{name}"
    with pytest.raises(ValueError, match="cannot be injected"):
        build("version_not_checked", "tornado")


@pytest.mark.parametrize(("name", "base"), VARIANTS, ids=[f"{b}-{n}" for n, b in VARIANTS])
def test_fault_is_caught_by_its_case(name: str, base: str) -> None:
    fault = FAULTS[name]
    options = resolve(True, dict(fault.options))
    command = fault_command(name, base)
    target = Target(name, "command", options, argv=command_server_argv(command, option_flags(options.as_flags_dict())))
    report = run_target(target, select([fault.case]))
    assert report.impl == base  # /stats still names the base server, so its baseline applies
    result = next(r for r in report.results if r.id == fault.case)
    assert result.verdict == "fail", f"{base} with {name} ({fault.bug}) passed {fault.case}: {result.observed}"
    assert report.broken is None
