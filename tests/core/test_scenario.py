"""The scenario model (core/scenario.py): defaults, derived stages, server options, the published schema."""

import json
import re
from pathlib import Path

import pytest

from wsbench.core.scenario import SCHEMA_PATH, schema_json
from wsbench.core.scenario_loading import load_text
from wsbench.errors import ScenarioError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_and_units() -> None:
    s = load_text("clients: 10\nsenders: 2\nrate: 2000/s\nsize: 1KiB\nwarmup: 500ms\nduration: 20s\n", "s.yaml")
    assert (s.clients, s.n_senders, s.rate, s.size.values, s.warmup.duration) == (10, 2, 2000.0, [1024], 0.5)
    assert s.stage_plan() == [("measure", 20.0, 2000.0, None)]
    assert s.target.mode == "embedded" and s.drain == 2.0
    resolved = s.resolved()
    assert resolved["resolved_stages"][0]["rate"] == 2000.0
    assert json.loads(json.dumps(resolved))  # JSON-able for the results header


def test_senders_all_excludes_stalled_clients() -> None:
    s = load_text("clients: 10\nsenders: all\nstalled_clients: 1\n", "s.yaml")
    assert s.n_senders == 9


def test_steps_expand_to_stages() -> None:
    s = load_text("clients: 3\nsteps: {start: 100/s, stop: 400/s, step: 100/s, duration: 2s}\n", "s.yaml")
    assert [(n, r) for n, _, r, _ in s.stage_plan()] == [
        ("step-1", 100),
        ("step-2", 200),
        ("step-3", 300),
        ("step-4", 400),
    ]
    s = load_text("clients: 3\nsteps: {start: 100/s, stop: 1000/s, factor: 2, duration: 2s}\n", "s.yaml")
    assert [r for *_, r, _ in s.stage_plan()] == [100, 200, 400, 800]


def test_published_json_schema_is_up_to_date() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_json(), "run: wsbench validate --schema > " + str(
        SCHEMA_PATH.relative_to(ROOT)
    )


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ("{max_connections: 2000000}", "max_connections: '2000000' must be 1 to 1000000"),
        ("{ping_interval: 5ms}", "ping_interval: '0.005' must be 0 or 0.01 to 86400 seconds"),
        ("{allowed_origin: ['not an origin']}", "allowed_origin: 'not an origin' is not an origin"),
    ],
)
def test_server_options_are_checked_as_the_servers_check_them(options: str, problem: str) -> None:
    """Issue 10: one definition of each SPEC 15.1 option (wsbench_servers.options), not a copied validator."""
    with pytest.raises(ScenarioError, match=re.escape(problem)):
        load_text(f"clients: 2\ntarget: {{options: {options}}}\n", "t.yaml")


def test_a_drift_threshold_on_a_run_too_short_for_a_slope_is_warned_about_before_it_runs() -> None:
    text = "clients: 10\nduration: {d}\ndrain: 2s\nthresholds:\n  - server.rss_slope_mib_per_hour_low < 5\n"
    short = load_text(text.format(d="30s"), "s.yaml")
    assert short.short_drift_warning() == (
        "threshold 'server.rss_slope_mib_per_hour_low < 5' cannot be judged: the run measures about 32 s "
        "(33 samples of /stats), a drift slope needs 5 min and 10 samples (drift_min_span); it will fail as "
        "too short to estimate drift"
    )
    assert load_text(text.format(d="10m"), "s.yaml").short_drift_warning() is None
    assert load_text(text.format(d="30s") + "drift_min_span: 20s\n", "s.yaml").short_drift_warning() is None
    assert load_text("clients: 10\nduration: 5s\n", "s.yaml").short_drift_warning() is None  # no drift threshold
