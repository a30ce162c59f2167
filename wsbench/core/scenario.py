"""The scenario model: :class:`Scenario` (pydantic) and its sections, and its published JSON Schema.

A scenario is YAML validated by :class:`Scenario` (published as JSON Schema in
``wsbench/schemas/scenario.schema.json``; ``wsbench validate --schema`` prints it). Values take units
(:mod:`wsbench.core.scenario_fields`). Reading a file, with errors that name file, line and key, and
``--set`` overrides: :mod:`wsbench.core.scenario_loading`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator
from wsbench_servers.options import check_option

from wsbench.core.scenario_fields import (
    ByteSize,
    Duration,
    MessageSize,
    Rate,
    Size,
    StrictModel,
    ThresholdExpr,
)
from wsbench.core.thresholds import parse_threshold

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "scenario.schema.json"


class ServerOptions(StrictModel):
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


class Target(StrictModel):
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


class Connect(StrictModel):
    rate: Rate = Field(200.0, gt=0, description="new connections per second (the connection ramp)")
    concurrency: int = Field(64, ge=1, description="connection attempts in flight at once")
    timeout: Duration = Field(10.0, gt=0, description="login + handshake time allowed per client")
    barrier_timeout: Duration = Field(
        30.0, gt=0, description="how long to wait for every client to be online before measuring"
    )
    nickname_prefix: str = Field("wsb", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,15}$")
    max_errors: int = Field(0, ge=0, description="clients allowed to fail to connect before the run counts as broken")


class Warmup(StrictModel):
    duration: Duration = 0.0
    rate: Rate | None = Field(None, description="default: the first stage's rate")


def _warmup_before(value: Any) -> Any:
    if isinstance(value, dict | Warmup):
        return value
    return {"duration": value}


class Stage(StrictModel):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    duration: Duration = Field(gt=0)
    rate: Rate | None = Field(None, description="total messages per second; default: the scenario's rate")
    rate_to: Rate | None = Field(None, description="ramp linearly from rate to rate_to over the stage")


class Steps(StrictModel):
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


class Search(StrictModel):
    """Capacity search: after each stage, check these thresholds on that stage alone."""

    thresholds: list[ThresholdExpr] = Field(min_length=1)
    stop: bool = Field(True, description="stop at the first stage that fails")
    grace: Duration = Field(1.0, description="messages younger than this at the stage's end are not yet due")


class Accounting(StrictModel):
    leave_margin: Duration = Field(
        1.0, description="messages sent this long before a receiver left are not expected at it"
    )
    fanout_timeout: Duration = Field(10.0, gt=0, description="give up a message's fan-out after this")


class Churn(StrictModel):
    """Receivers replaced while the load runs: the oldest plain receiver leaves (close 1000) and a new
    client (a new nickname) logs in and joins; the accounting expects each only what was sent while it
    was certainly online."""

    rate: Rate = Field(gt=0, description="replacements per second, during the measured stages only")
    max: int | None = Field(None, ge=1, le=100_000, description="at most this many replacements in all")


class Scenario(StrictModel):
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


def schema() -> dict[str, Any]:
    out = Scenario.model_json_schema()
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["title"] = "wsbench scenario"
    return out


def schema_json() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"
