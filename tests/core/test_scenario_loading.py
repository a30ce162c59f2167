"""Scenario loading (core/scenario_loading.py): --set overrides, and errors that name file, line and key."""

import pytest

from wsbench.core.scenario_loading import load_scenario, load_text
from wsbench.errors import ScenarioError, UsageError


def error_of(text: str, overrides: tuple[str, ...] = ()) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_text(text, "s.yaml", overrides)
    return info.value


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
