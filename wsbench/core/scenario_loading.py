"""Reading scenario files: YAML to a validated :class:`~wsbench.core.scenario.Scenario`, ``--set`` overrides.

A file that does not validate raises :class:`ScenarioError` naming the file, the line (found from the
YAML node tree: PyYAML's composed nodes carry their start marks) and the dotted key, and what was
expected. ``--set key=value`` overrides (dotted keys, list indexes as numbers; the value is read as
YAML) are applied before validation, and errors in them name the ``--set``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from wsbench_servers.options import DEFAULT_MAX_MESSAGE_SIZE

from wsbench.core import payload
from wsbench.core.scenario import Scenario
from wsbench.errors import ScenarioError, UsageError


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
