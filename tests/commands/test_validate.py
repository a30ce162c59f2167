from __future__ import annotations

import json
from pathlib import Path

from wsbench.cli import main
from wsbench.core.scenario import SCHEMA_PATH

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_scenarios_validate(capsys) -> None:
    paths = sorted(str(p) for p in (ROOT / "scenarios").glob("*.yaml"))
    assert len(paths) >= 6
    assert main(["validate", *paths]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok (") == len(paths)


def test_bad_file_exits_2_naming_file_line_and_key(tmp_path: Path, capsys) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("clients: 3\n", encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text("clients: 3\nconnect:\n  timeout: soon\n", encoding="utf-8")
    assert main(["validate", str(good), str(bad)]) == 2
    out = capsys.readouterr().out
    assert f"{good}: ok" in out
    assert f"{bad}:3: connect.timeout: expected a duration" in out


def test_schema_is_printed_and_matches_the_published_file(capsys) -> None:
    assert main(["validate", "--schema"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["title"] == "wsbench scenario"
    assert out == SCHEMA_PATH.read_text(encoding="utf-8")
