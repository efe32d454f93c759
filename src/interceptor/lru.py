"""One small least-recently-used cache for the per-container caches (verified tokens, principal entities,
per-caller tool lists, AWS sessions), after Powertools' `shared/cache_dict.py` (`LRUDict`): an `OrderedDict` that
keeps at most `max_items` entries, the least recently read or written leaving first.
"""

from __future__ import annotations

from collections import OrderedDict


class LRUDict[K, V](OrderedDict[K, V]):
    """`get` and assignment count as use; anything over `max_items` (0: nothing is kept) leaves oldest first.

    Only `get` refreshes an entry: plain `[]` reads, `in` and iteration do not (OrderedDict's own methods may
    read items, and a read must not reorder what they are walking)."""

    def __init__(self, max_items: int) -> None:
        super().__init__()
        self.max_items = max_items

    def get[D](self, key: K, default: D | None = None) -> V | D | None:  # type: ignore[override]
        try:
            self.move_to_end(key)  # one lookup on a hit (the warm path); a miss raises
        except KeyError:
            return default
        return self[key]

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.max_items:
            self.popitem(last=False)
