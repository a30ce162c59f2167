"""Fixtures for report tests: synthetic results files written with the real ResultsWriter."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.report.synthetic import write_conformance, write_run


@pytest.fixture
def tornado_file(tmp_path: Path) -> Path:
    return write_run(tmp_path / "tornado.jsonl", server="tornado", base_ms=2.0, seed=1)


@pytest.fixture
def aiohttp_file(tmp_path: Path) -> Path:
    return write_run(tmp_path / "aiohttp.jsonl", server="aiohttp", base_ms=1.6, seed=2, lost=30, rss_mb=30.0)


@pytest.fixture
def truncated_file(tmp_path: Path) -> Path:
    path = write_run(tmp_path / "truncated.jsonl", server="tornado", seed=3, truncate_after=8)
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"type": "interval", "index": 8, "start_s": 8.0, "end_s"')  # cut mid-line, as a kill leaves it
    return path


@pytest.fixture
def conformance_file(tmp_path: Path) -> Path:
    return write_conformance(tmp_path / "conformance.jsonl")
