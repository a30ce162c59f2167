"""Scenario field types (core/scenario_fields.py): message sizes and their distributions."""

import json

from wsbench.core.scenario_loading import load_text


def test_size_distributions() -> None:
    s = load_text("clients: 3\nsize: {uniform: [64B, 1KiB]}\n", "s.yaml")
    assert (s.size.kind, s.size.values) == ("uniform", [64, 1024])
    s = load_text("clients: 3\nsize: {choices: [64B, 256B], weights: [3, 1]}\n", "s.yaml")
    assert (s.size.kind, s.size.weights) == ("choices", [3.0, 1.0])
    # the resolved form validates again (the report reads it back from the results header)
    again = load_text(json.dumps(s.model_dump(mode="json")), "again.json")
    assert again.size == s.size
