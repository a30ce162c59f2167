"""Scenario loading: defaults, units, --set overrides, and errors that name file, line and key."""

import json
import re
from pathlib import Path

import pytest

from wsbench.core.scenario import SCHEMA_PATH, load_scenario, load_text, schema_json
from wsbench.errors import ScenarioError, UsageError

ROOT = Path(__file__).resolve().parents[2]


def error_of(text: str, overrides: tuple[str, ...] = ()) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_text(text, "s.yaml", overrides)
    return info.value


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


def test_size_distributions() -> None:
    s = load_text("clients: 3\nsize: {uniform: [64B, 1KiB]}\n", "s.yaml")
    assert (s.size.kind, s.size.values) == ("uniform", [64, 1024])
    s = load_text("clients: 3\nsize: {choices: [64B, 256B], weights: [3, 1]}\n", "s.yaml")
    assert (s.size.kind, s.size.weights) == ("choices", [3.0, 1.0])
    # the resolved form validates again (the report reads it back from the results header)
    again = load_text(json.dumps(s.model_dump(mode="json")), "again.json")
    assert again.size == s.size


@pytest.mark.parametrize(
    ("text", "where", "expected"),
    [
        ("clients: 10\nrate: fast\n", "s.yaml:2: rate:", "expected a rate such as 2000/s"),
        (
            "clients: 10\nconnect:\n  rat: 5/s\n",
            "s.yaml:3: connect.rat:",
            "unknown key; expected one of: barrier_timeout",
        ),
        (
            "clients: 10\nstages:\n  - duration: 2s\n  - duration: 2s\n    rate: 1x\n",
            "s.yaml:5: stages.1.rate:",
            "unknown rate unit",
        ),
        ("rate: 5/s\n", "s.yaml:1: clients:", "required"),
        (
            "clients: 3\nthresholds:\n  - latency.p99 < 4ms\n  - latency.p98 < 4ms\n",
            "s.yaml:4: thresholds.1:",
            "unknown metric",
        ),
        ("clients: 5\nsize: 10B\n", "s.yaml:2: size:", "at least 46B"),
        ("clients: 5\nsize: 2MiB\n", "s.yaml:2: size:", "max_message_size"),
        ("clients: [1\n", "s.yaml:2: (yaml):", "not valid YAML"),
        ("clients: 5\nclients: 6\n", "s.yaml:2: clients:", "duplicate key"),
        ("clients: 5\nsenders: 4\nstalled_clients: 2\n", "s.yaml:2: senders:", "exceed clients"),
        ("clients: 5\nduration: 5s\nstages: [{duration: 1s}]\n", "s.yaml:1:", "one of duration, stages or steps"),
        ("clients: 5\ntarget:\n  server: nginx\n", "s.yaml:3: target.server:", "'tornado' or 'aiohttp'"),
        ("clients: 5\ntarget:\n  options:\n    nodelay: maybe\n", "s.yaml:4: target.options.nodelay:", "boolean"),
        ("clients: 5\nmodel: closed\nstages:\n  - duration: 1s\n    rate: 5/s\n", "s.yaml:5: stages.0.rate:", "closed"),
        ("- 1\n- 2\n", "s.yaml:1: (top level):", "mapping"),
        ("clients: 5\nmodel: closed\nchurn:\n  rate: 1/s\n", "s.yaml:3: churn:", "open model"),
        ("clients: 3\nsenders: all\nchurn: {rate: 1/s}\n", "s.yaml:3: churn:", "exceed senders"),
        ("clients: 3\nchurn: {rate: 0/s}\n", "s.yaml:2: churn.rate:", "greater than 0"),
    ],
)
def test_errors_name_file_line_key_and_what_was_expected(text: str, where: str, expected: str) -> None:
    message = str(error_of(text))
    assert message.startswith(where), message
    assert expected in message, message
    assert "Traceback" not in message


def test_several_errors_are_all_reported() -> None:
    err = error_of("clients: x\nrate: y\n")
    assert "s.yaml:1: clients:" in str(err) and "s.yaml:2: rate:" in str(err)


def test_set_overrides_with_dotted_keys_and_list_indexes() -> None:
    s = load_text(
        "clients: 5\nwarmup: 2s\nstages:\n  - duration: 3s\n",
        "s.yaml",
        [
            "clients=7",
            "rate=2000/s",
            "warmup.rate=5/s",
            "stages.0.rate=70/s",
            "stages.1={duration: 1s}",
            "connect.rate=9",
        ],
    )
    assert s.clients == 7 and s.rate == 2000 and s.warmup.rate == 5 and s.connect.rate == 9
    assert s.stage_plan() == [("stage-1", 3.0, 70.0, None), ("stage-2", 1.0, 2000.0, None)]


def test_set_errors_name_the_set() -> None:
    assert str(error_of("clients: 5\n", ("rate=abc",))).startswith("--set rate=abc: rate: expected a rate")
    with pytest.raises(UsageError, match="KEY=VALUE"):
        load_text("clients: 5\n", "s.yaml", ["rate"])
    with pytest.raises(UsageError, match="not an item"):
        load_text("clients: 5\nstages: [{duration: 1s}]\n", "s.yaml", ["stages.3.rate=5"])


def test_missing_file_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no such scenario file"):
        load_scenario("/nonexistent/x.yaml")


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
