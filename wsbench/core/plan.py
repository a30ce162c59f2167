"""What a load run does when, and who is who: pure code over the scenario, the same for both drivers.

Time zero of the load is the *load start*; the phases (warm-up, stages, drain) are laid out by
:func:`wsbench.core.pacing.plan_phases`. Client ids are 0, 1, 2, ...: the first ``senders`` ids send
(id ``i`` is sender index ``i``, whose ``seq``-th message is the open schedule's message
``seq * senders + i``) and the last ``stalled_clients`` ids stop reading once the load starts; the
rest only read. ``wsbench run`` may add ids beyond ``clients`` (churn replacements: plain readers).

Message sizes are a function of ``(seed, sender, seq)`` alone (:meth:`RunPlan.sizes_for`): blocks of
``SIZE_BLOCK`` sequence numbers per sender, each drawn from its own generator seeded with
``[seed, sender, block]``. So the same scenario and seed send the same sizes, message for message,
whichever driver sends them and however the senders are spread over processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from wsbench.core import pacing
from wsbench.core.chat import Nicknames
from wsbench.core.scenario import Scenario

#: send times are computed this many messages at a time
SCHEDULE_CHUNK = 256
#: message sizes are drawn this many sequence numbers at a time, per sender
SIZE_BLOCK = 256


@dataclass
class RunPlan:
    scenario: Scenario
    phases: list[pacing.Phase] = field(init=False)
    schedule: pacing.OpenSchedule = field(init=False)
    _size_blocks: dict[tuple[int, int], np.ndarray] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        s = self.scenario
        self.phases = pacing.plan_phases(s.warmup.duration, s.warmup.rate, s.stage_plan(), s.drain)
        self.schedule = pacing.OpenSchedule(self.phases, max(s.n_senders, 1))
        size = s.size
        self._size_p: np.ndarray | None = None
        if size.kind == "choices":
            w = np.asarray(size.weights or [1.0] * len(size.values), dtype=np.float64)
            self._size_p = w / w.sum()

    # -- who ------------------------------------------------------------------------------------------
    @property
    def clients(self) -> int:
        return self.scenario.clients

    @property
    def senders(self) -> int:
        return self.scenario.n_senders

    def is_sender(self, client: int) -> bool:
        return client < self.senders

    def is_stalled(self, client: int) -> bool:
        return self.clients - self.scenario.stalled_clients <= client < self.clients

    def role(self, client: int) -> str:
        return "sender" if self.is_sender(client) else "stalled" if self.is_stalled(client) else "receiver"

    def readers(self, clients: int | None = None) -> list[int]:
        """Every client id that reads (of ``clients`` ids; default the scenario's)."""
        return [c for c in range(self.clients if clients is None else clients) if not self.is_stalled(c)]

    def nicknames(self, run_tag: str, clients: int | None = None) -> Nicknames:
        return Nicknames(self.scenario.connect.nickname_prefix, run_tag, clients)

    def nickname(self, client: int, run_tag: str) -> str:
        """Unique per run (``run_tag``), so two runs against one server do not collide (SPEC 6.6)."""
        return self.nicknames(run_tag).of(client)

    def client_of_nickname(self, nickname: str, run_tag: str) -> int | None:
        return self.nicknames(run_tag, self.clients).client_of(nickname)

    # -- when -----------------------------------------------------------------------------------------
    @property
    def load_duration_s(self) -> float:
        """Warm-up + stages + drain."""
        return self.phases[-1].end_s if self.phases else 0.0

    @property
    def sending_s(self) -> float:
        return pacing.sending_end(self.phases)

    @property
    def interval_s(self) -> float:
        return float(self.scenario.interval)

    def phase_name(self, t_s: float, load_start_s: float | None) -> str:
        """Name of the phase at ``t_s`` after the epoch (``connect`` before the load starts)."""
        if load_start_s is None or t_s < load_start_s:
            return "connect"
        return pacing.phase_at(self.phases, t_s - load_start_s).name

    def send_times(self, sender: int) -> Iterator[tuple[int, float]]:
        """``(seq, intended seconds after the load start)`` of every message of ``sender``, in order."""
        n = self.senders
        total = self.schedule.total_messages
        seq = 0
        while True:
            ks = np.arange(seq * n + sender, min(total, (seq + SCHEDULE_CHUNK) * n + sender), n, dtype=np.int64)
            if len(ks) == 0:
                return
            for t in self.schedule.times(ks).tolist():
                yield seq, t
                seq += 1

    # -- what -----------------------------------------------------------------------------------------
    def _size_block(self, sender: int, block: int) -> np.ndarray:
        key = (sender, block)
        sizes = self._size_blocks.get(key)
        if sizes is None:
            size = self.scenario.size
            if size.kind == "fixed":
                sizes = np.full(SIZE_BLOCK, size.values[0], dtype=np.int64)
            else:
                rng = np.random.default_rng([self.scenario.seed, sender, block])
                if size.kind == "uniform":
                    sizes = rng.integers(size.values[0], size.values[1], SIZE_BLOCK, endpoint=True, dtype=np.int64)
                else:
                    values = np.asarray(size.values, dtype=np.int64)
                    sizes = values[rng.choice(len(values), SIZE_BLOCK, p=self._size_p)]
            if len(self._size_blocks) > 4096:  # a long run: keep the cache small
                self._size_blocks.clear()
            self._size_blocks[key] = sizes
        return sizes

    def sizes_for(self, sender: int, first_seq: int, count: int) -> np.ndarray:
        """Sizes of messages ``first_seq .. first_seq + count - 1`` of ``sender``."""
        out = np.empty(count, dtype=np.int64)
        done = 0
        while done < count:
            seq = first_seq + done
            block, offset = divmod(seq, SIZE_BLOCK)
            n = min(SIZE_BLOCK - offset, count - done)
            out[done : done + n] = self._size_block(sender, block)[offset : offset + n]
            done += n
        return out

    def sizes_at(self, senders: np.ndarray, seqs: np.ndarray) -> np.ndarray:
        """Sizes of messages ``(senders[i], seqs[i])`` (each sender's sequence numbers contiguous)."""
        out = np.empty(len(seqs), dtype=np.int64)
        if len(seqs) == 0:
            return out
        if self.scenario.size.kind == "fixed":
            out[:] = self.scenario.size.values[0]
            return out
        for sender in np.unique(senders).tolist():
            rows = np.flatnonzero(senders == sender)
            q = seqs[rows]
            lo = int(q.min())
            out[rows] = self.sizes_for(sender, lo, int(q.max()) - lo + 1)[q - lo]
        return out

    def size_of(self, sender: int, seq: int) -> int:
        block, offset = divmod(seq, SIZE_BLOCK)
        return int(self._size_block(sender, block)[offset])

    def sizes(self, sender: int) -> Iterator[int]:
        """Message sizes of ``sender``, in sequence order."""
        block = 0
        while True:
            yield from self.sizes_for(sender, block * SIZE_BLOCK, SIZE_BLOCK).tolist()
            block += 1
