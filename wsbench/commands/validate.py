"""``wsbench validate SCENARIO...``: check scenario files without running them.

Prints one line per file (``ok`` with what it would do, or the errors with file, line and key).
Exit code 0 when every file is valid, 2 otherwise. ``--schema`` prints the JSON Schema.
"""

from __future__ import annotations

import argparse

from wsbench.core.scenario import schema_json
from wsbench.core.scenario_loading import load_scenario
from wsbench.errors import EXIT_USAGE, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check scenario files (YAML) without running them",
        description="Validate scenario files; errors name the file, line and key, and what was expected.",
    )
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenario files")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--schema", action="store_true", help="print the scenario JSON Schema and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.schema:
        print(schema_json(), end="")
        return 0
    if not args.scenarios:
        raise UsageError("validate: give one or more scenario files (or --schema)")
    failed = 0
    for path in args.scenarios:
        try:
            s = load_scenario(path, args.overrides)
        except UsageError as exc:
            failed += 1
            print(str(exc))
            continue
        stages = s.stage_plan()
        total = s.warmup.duration + sum(d for _, d, _, _ in stages) + s.drain
        print(
            f"{path}: ok ({s.name}: {s.clients} clients, {s.n_senders} senders, {s.model} model, "
            f"{len(stages)} stage{'s' if len(stages) != 1 else ''}, about {total:g} s after connecting)"
        )
        for warning in filter(None, (s.short_drain_warning(), s.short_drift_warning())):
            print(f"{path}: warning: {warning}")
    return EXIT_USAGE if failed else 0
