"""The campaign's queue of requests: those waiting out their safety delay (``holding``, in
arrival order) and those a judgement held back (``held``, in rank order).

Every request the campaign does not decide as it comes waits in ``holding`` until its
``hold_until``; then it is judged (``actors.decide``): paid, expired, or held back, which
moves it to ``held``, ranked. ``held`` is released best first while the surge's spend bound
allows; its worst is pushed out first when the queue is full. Both keep their order through
events only (``actors.evolve``), so a replay rebuilds them exactly. Pure.
"""

from __future__ import annotations

import bisect
import zlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Waiting(NamedTuple):
    message_id: str
    sender: str
    prefix: str
    enqueued_at: int  # epoch ms: the text's time
    hold_until: int  # epoch ms: when it is judged
    words: str  # the text's word keys, and those of a later text of its sender
    range_debt: int  # its number range's debt when it came (``actors.decide.range_debt``)
    again: bool = False  # the sender's later text (his earlier request ended unanswered)
    texted_again: bool = False


def tiebreak(message_id: str) -> int:
    """A fair, fixed order among requests of equal rank: neither arrival nor sender decides."""
    return zlib.crc32(message_id.encode())


@dataclass(slots=True)
class RequestQueue:
    holding: dict[str, Waiting] = field(default_factory=dict)  # arrival order
    held: dict[str, Waiting] = field(default_factory=dict)  # the order they were held in
    # (rank, tiebreak, message id) of the held requests, best first, and each one's key.
    held_order: list[tuple[int, int, str]] = field(default_factory=list)
    held_keys: dict[str, tuple[int, int, str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.holding) + len(self.held)

    def get(self, message_id: str) -> Waiting | None:
        return self.holding.get(message_id) or self.held.get(message_id)

    def hold(self, item: Waiting) -> None:
        if self.get(item.message_id) is None:  # at least once: a request queued twice
            self.holding[item.message_id] = item

    def hold_back(self, message_id: str, rank: int) -> None:
        item = self.holding.pop(message_id, None)
        if item is None:
            return
        self.held[message_id] = item
        key = (rank, tiebreak(message_id), message_id)
        self.held_keys[message_id] = key
        bisect.insort(self.held_order, key)

    def replace(self, item: Waiting) -> None:
        """The same request with new facts (its sender texted again)."""
        if item.message_id in self.holding:
            self.holding[item.message_id] = item
        elif item.message_id in self.held:
            self.held[item.message_id] = item

    def remove(self, message_id: str) -> tuple[Waiting | None, bool]:
        """Take one request out: ``(item, was_held)``; (None, False) when it is not queued."""
        item = self.holding.pop(message_id, None)
        if item is not None:
            return item, False
        item = self.held.pop(message_id, None)
        if item is None:
            return None, False
        key = self.held_keys.pop(message_id)
        order = self.held_order
        i = bisect.bisect_left(order, key)
        del order[i]
        return item, True

    def worst_held(self) -> Waiting | None:
        return self.held[self.held_order[-1][2]] if self.held_order else None

    def to_dict(self) -> dict[str, Any]:
        return {"holding": [list(i) for i in self.holding.values()],
                "held": [list(i) for i in self.held.values()],
                "held_order": [list(o) for o in self.held_order]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestQueue:
        order = [(o[0], o[1], o[2]) for o in data["held_order"]]
        return cls(holding={i[0]: Waiting(*i) for i in data["holding"]},
                   held={i[0]: Waiting(*i) for i in data["held"]},
                   held_order=order, held_keys={k[2]: k for k in order})
