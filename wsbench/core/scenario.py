"""Scenario files: the pydantic model, YAML loading with file:line:key errors, ``--set`` overrides.

A scenario is YAML validated by :class:`Scenario` (published as JSON Schema in
``wsbench/schemas/scenario.schema.json``; ``wsbench validate --schema`` prints it). Values take units
(:mod:`wsbench.core.units`). A file that does not validate raises :class:`ScenarioError` naming the
file, the line (found from the YAML node tree: PyYAML's composed nodes carry their start marks) and the
dotted key, and what was expected. ``--set key=value`` overrides (dotted keys, list indexes as
numbers; the value is read as YAML) are applied before validation, and errors in them name the
``--set``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from wsbench_servers.options import check_option

from wsbench.core import payload
from wsbench.core.thresholds import ThresholdError, parse_threshold
from wsbench.core.units import (
    DURATION_PATTERN,
    RATE_PATTERN,
    SIZE_PATTERN,
    UnitError,
    parse_duration,
    parse_rate,
    parse_size,
)
from wsbench.errors import ScenarioError, UsageError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "scenario.schema.json"
DEFAULT_MAX_MESSAGE_SIZE = 65536


def _unit(parse: Any) -> Any:
    def validate(value: Any) -> Any:
        try:
            return parse(value)
        except UnitError as exc:
            raise ValueError(str(exc)) from None

    return validate


def _with_unit(parse: Any, number: str, pattern: str, description: str) -> tuple[Any, Any]:
    """The validator and JSON schema of a field written as a plain ``number`` or a string with a unit."""
    return BeforeValidator(_unit(parse)), WithJsonSchema(
        {
            "anyOf": [{"type": number, "minimum": 0}, {"type": "string", "pattern": pattern}],
            "description": description,
        }
    )


Duration = Annotated[
    float, *_with_unit(parse_duration, "number", DURATION_PATTERN, "seconds, or a duration with a unit: 20s, 500ms, 2m")
]
Rate = Annotated[
    float, *_with_unit(parse_rate, "number", RATE_PATTERN, "per second, or a rate with a unit: 2000/s, 120/min")
]
ByteSize = Annotated[
    int, *_with_unit(parse_size, "integer", SIZE_PATTERN, "bytes, or a size with a unit: 512B, 1KiB, 1MiB")
]


def _threshold(value: Any) -> Any:
    try:
        parse_threshold(value)
    except ThresholdError as exc:
        raise ValueError(str(exc)) from None
    return value


ThresholdExpr = Annotated[
    str,
    AfterValidator(_threshold),
    WithJsonSchema({"type": "string", "description": "METRIC OP VALUE, e.g. 'latency.p99 < 50ms'"}),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ServerOptions(_Model):
    """Server options of SPEC 15.1, passed as flags to a server wsbench starts (None: the server's default)."""

    max_message_size: ByteSize | None = None
    ping_interval: Duration | None = None
    ping_timeout: Duration | None = None
    nodelay: bool | None = None
    allowed_origin: list[str] | None = None
    max_connections: int | None = Field(None, ge=1)
    send_buffer_limit: ByteSize | None = None
    compression: bool | None = None
    cookie_secret: str | None = None

    @model_validator(mode="after")
    def _as_the_server_takes_them(self) -> ServerOptions:
        """Each value within what SPEC 15.1 allows, checked by the servers' own parsers (the one definition)."""
        for name, value in self.model_dump().items():
            if value is None:
                continue
            for item in value if isinstance(value, list) else [value]:
                try:
                    check_option(name, item)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        return self

    def flags(self) -> dict[str, Any]:
        """For :func:`wsbench.target.option_flags` (durations as plain seconds)."""
        out: dict[str, Any] = {}
        for key, value in self.model_dump().items():
            if value is None:
                continue
            out[key] = f"{value:g}" if isinstance(value, float) else value
        return out


class Target(_Model):
    """What to load: a reference server wsbench starts (default), a command it starts, or a URL."""

    server: Literal["tornado", "aiohttp"] | None = Field(
        None, description="reference server started by wsbench (the default is tornado)"
    )
    url: str | None = Field(None, description="an already running server, e.g. http://127.0.0.1:8888")
    command: str | None = Field(
        None, description="a command that starts a SPEC.md server; wsbench adds --host, --port 0 and options"
    )
    options: ServerOptions = Field(default_factory=ServerOptions)

    @model_validator(mode="after")
    def _one_kind(self) -> Target:
        given = [k for k in ("server", "url", "command") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(f"give one of server, url or command, not {' and '.join(given)}")
        if self.url is not None and not re.match(r"^https?://[^/\s]+/?$", self.url):
            raise ValueError(f"url must be http://HOST:PORT (the server's root), got {self.url!r}")
        return self

    @property
    def mode(self) -> str:
        if self.url:
            return "url"
        if self.command:
            return "command"
        return "embedded"


class MessageSize(_Model):
    """A fixed size, or a distribution: uniform between two sizes, or weighted choices."""

    kind: Literal["fixed", "uniform", "choices"] = "fixed"
    values: list[ByteSize] = Field(min_length=1)
    weights: list[float] | None = None

    @model_validator(mode="after")
    def _shape(self) -> MessageSize:
        if self.kind == "fixed" and len(self.values) != 1:
            raise ValueError("a fixed size has one value")
        if self.kind == "uniform" and (len(self.values) != 2 or self.values[0] > self.values[1]):
            raise ValueError("uniform takes [min, max] with min <= max")
        if self.weights is not None and (
            self.kind != "choices" or len(self.weights) != len(self.values) or min(self.weights) < 0
        ):
            raise ValueError("weights go with choices, one non-negative weight per size")
        return self

    @property
    def smallest(self) -> int:
        return min(self.values)

    @property
    def largest(self) -> int:
        return max(self.values)


def _size_before(value: Any) -> Any:
    if isinstance(value, MessageSize):
        return value
    if isinstance(value, dict):
        if "kind" in value:
            return value
        if set(value) == {"uniform"}:
            return {"kind": "uniform", "values": value["uniform"]}
        if set(value) <= {"choices", "weights"} and "choices" in value:
            return {"kind": "choices", "values": value["choices"], "weights": value.get("weights")}
        raise ValueError("expected a size (128B), {uniform: [64B, 1KiB]} or {choices: [64B, 1KiB], weights: [3, 1]}")
    return {"kind": "fixed", "values": [value]}


Size = Annotated[
    MessageSize,
    BeforeValidator(_size_before),
    WithJsonSchema(
        {
            "description": "message size: 128B, {uniform: [64B, 1KiB]} or {choices: [64B, 1KiB], weights: [3, 1]}",
            "anyOf": [
                {"type": "integer", "minimum": payload.MIN_MESSAGE_SIZE},
                {"type": "string", "pattern": SIZE_PATTERN},
                {
                    "type": "object",
                    "properties": {"uniform": {"type": "array", "minItems": 2, "maxItems": 2}},
                    "required": ["uniform"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"choices": {"type": "array", "minItems": 1}, "weights": {"type": "array"}},
                    "required": ["choices"],
                    "additionalProperties": False,
                },
                {"type": "object", "required": ["kind", "values"]},
            ],
        }
    ),
]


class Connect(_Model):
    rate: Rate = Field(200.0, gt=0, description="new connections per second (the connection ramp)")
    concurrency: int = Field(64, ge=1, description="connection attempts in flight at once")
    timeout: Duration = Field(10.0, gt=0, description="login + handshake time allowed per client")
    barrier_timeout: Duration = Field(
        30.0, gt=0, description="how long to wait for every client to be online before measuring"
    )
    nickname_prefix: str = Field("wsb", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,15}$")
    max_errors: int = Field(0, ge=0, description="clients allowed to fail to connect before the run counts as broken")


class Warmup(_Model):
    duration: Duration = 0.0
    rate: Rate | None = Field(None, description="default: the first stage's rate")


def _warmup_before(value: Any) -> Any:
    if isinstance(value, dict | Warmup):
        return value
    return {"duration": value}


class Stage(_Model):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    duration: Duration = Field(gt=0)
    rate: Rate | None = Field(None, description="total messages per second; default: the scenario's rate")
    rate_to: Rate | None = Field(None, description="ramp linearly from rate to rate_to over the stage")


class Steps(_Model):
    """Stages stepping the rate up: start, start+step (or start*factor), ... up to stop."""

    start: Rate = Field(gt=0)
    stop: Rate = Field(gt=0)
    step: Rate | None = Field(None, gt=0)
    factor: float | None = Field(None, gt=1)
    duration: Duration = Field(gt=0)

    @model_validator(mode="after")
    def _one(self) -> Steps:
        if (self.step is None) == (self.factor is None):
            raise ValueError("give exactly one of step (added) or factor (multiplied)")
        if self.stop < self.start:
            raise ValueError("stop must be at least start")
        return self

    def rates(self) -> list[float]:
        out: list[float] = []
        r = self.start
        while r <= self.stop * (1 + 1e-9) and len(out) < 1000:
            out.append(r)
            r = r + self.step if self.step is not None else r * (self.factor or 2)
        return out


class Search(_Model):
    """Capacity search: after each stage, check these thresholds on that stage alone."""

    thresholds: list[ThresholdExpr] = Field(min_length=1)
    stop: bool = Field(True, description="stop at the first stage that fails")
    grace: Duration = Field(1.0, description="messages younger than this at the stage's end are not yet due")


class Accounting(_Model):
    leave_margin: Duration = Field(
        1.0, description="messages sent this long before a receiver left are not expected at it"
    )
    fanout_timeout: Duration = Field(10.0, gt=0, description="give up a message's fan-out after this")


class Churn(_Model):
    """Receivers replaced while the load runs: the oldest plain receiver leaves (close 1000) and a new
    client (a new nickname) logs in and joins; the accounting expects each only what was sent while it
    was certainly online."""

    rate: Rate = Field(gt=0, description="replacements per second, during the measured stages only")
    max: int | None = Field(None, ge=1, le=100_000, description="at most this many replacements in all")


class Scenario(_Model):
    name: str = Field("scenario", pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = 1
    target: Target = Field(default_factory=Target)
    clients: int = Field(ge=2, le=100_000, description="WebSocket clients")
    senders: int | Literal["all"] = Field(1, description="how many clients send (the first ones), or all")
    stalled_clients: int = Field(
        0, ge=0, description="clients (the last ones) that connect, then stop reading once the load starts"
    )
    model: Literal["open", "closed"] = "open"
    rate: Rate = Field(100.0, description="open model: total messages per second over all senders")
    outstanding: int = Field(1, ge=1, description="closed model: messages in flight per sender")
    think_time: Duration = Field(0.0, description="closed model: pause after a message completes")
    size: Size = Field(default_factory=lambda: MessageSize(values=[128]))
    connect: Connect = Field(default_factory=Connect)
    warmup: Annotated[Warmup, BeforeValidator(_warmup_before)] = Field(default_factory=Warmup)
    duration: Duration | None = Field(None, description="one measured stage of this length (or use stages/steps)")
    stages: list[Stage] | None = None
    steps: Steps | None = None
    drain: Duration = Field(2.0, description="time for messages in flight to arrive after the last send")
    interval: Duration = Field(1.0, gt=0, le=60)
    thresholds: list[ThresholdExpr] = Field(default_factory=list)
    search: Search | None = None
    accounting: Accounting = Field(default_factory=Accounting)
    churn: Churn | None = Field(None, description="replace receivers during the measured stages (open model)")
    probes: int = Field(
        2,
        ge=0,
        le=64,
        description="receivers per generator process that read their socket with kernel receive stamps "
        "(latency_socket, generator_delay); 0: none",
    )
    stats: bool = Field(True, description="sample the server's /stats every interval")
    drift_min_span: Duration = Field(
        300.0,
        ge=0,
        description="the server's growth per hour (RSS, connections, CPU) is estimated only from /stats "
        "samples spanning at least this long (and 10 samples); shorter runs say 'too short to estimate drift'",
    )
    live: bool = Field(True, description="show the live view when the terminal allows")

    @model_validator(mode="after")
    def _resolve(self) -> Scenario:
        given = [k for k in ("duration", "stages", "steps") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of duration, stages or steps, not {' and '.join(given)}")
        if not given:
            self.duration = 10.0
        if self.senders == "all":
            self.senders = self.clients - self.stalled_clients
        return self

    # -- derived ---------------------------------------------------------------------------------------
    @property
    def n_senders(self) -> int:
        return int(self.senders)

    def stage_plan(self) -> list[tuple[str, float, float, float | None]]:
        """``(name, duration_s, rate, rate_to)`` of the measured stages."""
        if self.steps is not None:
            return [(f"step-{i + 1}", self.steps.duration, r, None) for i, r in enumerate(self.steps.rates())]
        if self.stages is not None:
            out = []
            for i, st in enumerate(self.stages):
                rate = st.rate if st.rate is not None else self.rate
                out.append((st.name or f"stage-{i + 1}", st.duration, rate, st.rate_to))
            return out
        return [("measure", float(self.duration or 0.0), self.rate, None)]

    def short_drain_warning(self) -> str | None:
        """A warning when the drain is shorter than the scenario's own timeouts (``None`` otherwise).

        A message not delivered by the end of the drain is lost, so a drain shorter than the leave
        margin, the search's grace or a latency limit of a threshold counts as lost messages that are
        merely late by the scenario's own standard.
        """
        limits: list[tuple[float, str]] = [(float(self.accounting.leave_margin), "accounting.leave_margin")]
        if self.search is not None:
            limits.append((float(self.search.grace), "search.grace"))
        exprs = list(self.thresholds) + (list(self.search.thresholds) if self.search is not None else [])
        for expr in exprs:
            t = parse_threshold(expr)
            if t.unit == "ms" and t.op in ("<", "<=") and t.metric.split(".")[0] in ("latency", "fanout"):
                limits.append((t.limit / 1e3, f"threshold {t.expr!r}"))
        longest, what = max(limits)
        if self.drain + 1e-9 >= longest:
            return None
        return (
            f"drain is {self.drain:g} s, shorter than {what} ({longest:g} s): a message not delivered by the end "
            "of the drain counts as lost, so messages that are only late by this scenario's own standard "
            "will be counted as lost"
        )

    def short_drift_warning(self) -> str | None:
        """A warning when a threshold on a drift slope cannot be judged in the planned run (``None`` otherwise):
        the slopes need ``drift_min_span`` and 10 samples (``wsbench.core.server_stats.drift``)."""
        from wsbench.core.metrics import NOTE_OF
        from wsbench.core.server_stats import MIN_SLOPE_SAMPLES, span_text

        on_drift = [t for t in self.thresholds if parse_threshold(t).metric in NOTE_OF]
        span = sum(d for _, d, _, _ in self.stage_plan()) + float(self.drain)
        samples = int(span / float(self.interval)) + 1
        if not on_drift or (span >= float(self.drift_min_span) and samples >= MIN_SLOPE_SAMPLES):
            return None
        return (
            f"threshold {on_drift[0]!r} cannot be judged: the run measures about {span_text(span)} ({samples} "
            f"samples of /stats), a drift slope needs {span_text(float(self.drift_min_span))} and "
            f"{MIN_SLOPE_SAMPLES} samples (drift_min_span); it will fail as too short to estimate drift"
        )

    def resolved(self) -> dict[str, Any]:
        """Every default filled in, stages expanded: what the results header records."""
        data = self.model_dump(mode="json")
        data["resolved_stages"] = [
            {"name": n, "duration": d, "rate": r, "rate_to": rt} for n, d, r, rt in self.stage_plan()
        ]
        return data


# -- loading ---------------------------------------------------------------------------------------------
def _walk(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], dups: list[Any]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                dups.append(((*path, key), key_node.start_mark.line + 1))
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), lines, dups)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _walk(item, (*path, i), lines, dups)


def _dotted(path: Sequence[Any]) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def parse_override(text: str) -> tuple[list[Any], Any]:
    """``"stages.0.rate=500/s"`` -> ``(["stages", 0, "rate"], "500/s")`` (the value read as YAML)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not re.fullmatch(r"[A-Za-z_][\w]*(\.[\w]+)*", key):
        raise UsageError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. --set connect.rate=100/s")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return [int(p) if p.isdigit() else p for p in key.split(".")], value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[tuple[Any, ...], str]:
    """Apply ``--set`` texts to ``data`` in place; returns ``{path: text}`` for error messages."""
    applied: dict[tuple[Any, ...], str] = {}
    for text in overrides:
        path, value = parse_override(text)
        node: Any = data
        for i, part in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(node, list):
                if not isinstance(part, int) or part >= len(node):
                    raise UsageError(f"--set {text}: {_dotted(path[: i + 1])} is not an item of the list")
                node = node[part]
                continue
            if not isinstance(node, dict):
                raise UsageError(f"--set {text}: {_dotted(path[:i])} is not a mapping")
            if part not in node or node[part] is None:
                node[part] = [] if isinstance(nxt, int) else {}
            elif not isinstance(node[part], dict | list):
                node[part] = {}  # e.g. warmup: 2s, then --set warmup.rate=...
            node = node[part]
        last = path[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or last > len(node):
                raise UsageError(f"--set {text}: no item {last} in {_dotted(path[:-1])}")
            if last == len(node):
                node.append(value)
            else:
                node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise UsageError(f"--set {text}: {_dotted(path[:-1])} is not a mapping")
        applied[tuple(path)] = text
    return applied


def _problem(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    kind = err.get("type", "")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required, but missing"
    if (
        "input" in err
        and "got " not in msg
        and kind not in ("model_type", "dict_type")
        and not isinstance(err["input"], dict | list)
    ):
        msg = f"{msg} (got {err['input']!r})"
    return msg


def _allowed_keys(path: Sequence[Any]) -> list[str]:
    """Field names of the model at ``path`` (for 'unknown key' hints)."""
    model: Any = Scenario
    for part in path:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        inner = getattr(ann, "__args__", None)
        candidates = [ann, *(inner or [])]
        nxt = None
        for c in candidates:
            if isinstance(c, type) and issubclass(c, BaseModel):
                nxt = c
                break
            for cc in getattr(c, "__args__", ()) or ():
                if isinstance(cc, type) and issubclass(cc, BaseModel):
                    nxt = cc
        if nxt is None:
            return []
        model = nxt
    return sorted(getattr(model, "model_fields", {}))


def validate_data(
    data: Any,
    source: str,
    lines: dict[tuple[Any, ...], int] | None = None,
    overrides: dict[tuple[Any, ...], str] | None = None,
) -> Scenario:
    """Validate a mapping; errors become :class:`ScenarioError` with file, line and key."""
    lines = lines or {}
    overrides = overrides or {}
    if not isinstance(data, dict):
        raise ScenarioError(source, 1, "(top level)", "expected a mapping of scenario keys (clients, rate, ...)")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        messages: list[ScenarioError] = []
        for err in exc.errors():
            loc = [p for p in err["loc"] if isinstance(p, int) or not str(p).startswith(("function-", "literal["))]
            # drop pydantic's union/type tags such as 'int' or 'constrained-str' inside a loc
            clean: list[Any] = []
            node: Any = data
            for p in loc:
                if (isinstance(node, dict) and p in node) or (
                    isinstance(node, list) and isinstance(p, int) and p < len(node)
                ):
                    clean.append(p)
                    node = node[p]  # type: ignore[index]  # a dict key or, checked above, a list index
                elif err["type"] in ("missing", "extra_forbidden") and p == loc[-1]:
                    clean.append(p)
                    break
            problem = _problem(dict(err))
            if err["type"] == "extra_forbidden":
                allowed = _allowed_keys(clean[:-1])
                if allowed:
                    problem += f"; expected one of: {', '.join(allowed)}"
            where = source
            line = None
            for cut in range(len(clean), -1, -1):
                prefix = tuple(clean[:cut])
                if prefix in overrides:
                    where, line = f"--set {overrides[prefix]}", None
                    break
                if prefix in lines:
                    line = lines[prefix]
                    break
            if line is None and where == source:
                line = 1
            messages.append(ScenarioError(where, line, _dotted(clean), problem))
        first = messages[0]
        if len(messages) > 1:
            first.args = ("\n".join(str(m) for m in messages),)
        raise first from None


def check_semantics(s: Scenario, source: str, lines: dict[tuple[Any, ...], int]) -> None:
    """Checks across fields, with the line of the key they are about."""

    def fail(key: str, problem: str) -> None:
        path = tuple(int(p) if p.isdigit() else p for p in key.split("."))
        line = None
        for cut in range(len(path), -1, -1):
            if path[:cut] in lines:
                line = lines[path[:cut]]
                break
        raise ScenarioError(source, line if line is not None else 1, key, problem)

    if s.n_senders < 1 and s.model == "open" and any(r > 0 for _, _, r, _ in s.stage_plan()):
        fail("senders", "at least one sender is needed to send messages")
    if s.n_senders + s.stalled_clients > s.clients:
        fail("senders", f"senders ({s.n_senders}) + stalled_clients ({s.stalled_clients}) exceed clients ({s.clients})")
    if s.clients - s.stalled_clients < 2:
        fail("stalled_clients", "at least two clients must read (a sender and a receiver)")
    if s.size.smallest < payload.MIN_MESSAGE_SIZE:
        fail("size", f"messages carry a {payload.TRAILER_LEN}-byte trailer: at least {payload.MIN_MESSAGE_SIZE}B")
    limit = s.target.options.max_message_size or DEFAULT_MAX_MESSAGE_SIZE
    if s.size.largest > limit:
        fail(
            "size",
            f"{s.size.largest} bytes is over the server's max_message_size ({limit}); raise it in target.options",
        )
    if s.model == "closed":
        for i, st in enumerate(s.stages or []):
            if st.rate is not None or st.rate_to is not None:
                fail(f"stages.{i}.rate", "the closed model has no rate: senders send when their last message is done")
        if s.steps is not None:
            fail("steps", "steps step the rate, which needs the open model")
    if s.churn is not None:
        if s.model != "open":
            fail("churn", "churn needs the open model (a closed-model sender would wait on a receiver that left)")
        if s.clients - s.n_senders - s.stalled_clients < 1:
            fail("churn", "churn replaces receivers that do not send: clients must exceed senders + stalled_clients")
    names = [n for n, *_ in s.stage_plan()]
    if len(set(names)) != len(names):
        fail("stages", "stage names must be unique")
    if {"connect", "warmup", "drain"} & set(names):
        fail("stages", "connect, warmup and drain are reserved phase names")


def load_text(text: str, source: str, overrides: Iterable[str] = ()) -> Scenario:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(source, mark.line + 1 if mark else None, "(yaml)", f"not valid YAML: {problem}") from None
    lines: dict[tuple[Any, ...], int] = {}
    dups: list[tuple[tuple[Any, ...], int]] = []
    if root is not None:
        _walk(root, (), lines, dups)
    if dups:
        path, line = dups[0]
        raise ScenarioError(source, line, _dotted(path), "duplicate key (the second would silently win)")
    data = yaml.safe_load(text)
    if data is None:
        data = {}
    applied = apply_overrides(data, overrides) if isinstance(data, dict) else {}
    scenario = validate_data(data, source, lines, applied)
    check_semantics(scenario, source, lines)
    return scenario


def load_scenario(path: str | Path, overrides: Iterable[str] = ()) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{p}: no such scenario file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p}: cannot read: {exc}") from None
    return load_text(text, str(p), overrides)


def schema() -> dict[str, Any]:
    out = Scenario.model_json_schema()
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["title"] = "wsbench scenario"
    return out


def schema_json() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"
