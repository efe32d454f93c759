"""The one LRU helper behind the per-container caches (verified tokens, principal entities, per-caller tool lists,
AWS sessions): bounded, least recently used leaves first, `get` and assignment count as use."""

from __future__ import annotations

from pathlib import Path

import pytest

from interceptor import aws_session, listing, policy, tokens
from interceptor.lru import LRUDict


def test_the_oldest_entry_leaves_first() -> None:
    cache: LRUDict[str, int] = LRUDict(2)
    cache["a"], cache["b"], cache["c"] = 1, 2, 3
    assert list(cache.items()) == [("b", 2), ("c", 3)]


def test_get_refreshes_an_entry_and_a_miss_changes_nothing() -> None:
    cache: LRUDict[str, int] = LRUDict(2)
    cache["a"], cache["b"] = 1, 2
    assert cache.get("a") == 1
    assert cache.get("zz") is None
    assert cache.get("zz", 7) == 7
    cache["c"] = 3
    assert list(cache) == ["a", "c"]


def test_assigning_again_refreshes_and_replaces() -> None:
    cache: LRUDict[str, int] = LRUDict(2)
    cache["a"], cache["b"] = 1, 2
    cache["a"] = 10
    cache["c"] = 3
    assert dict(cache) == {"a": 10, "c": 3}


def test_plain_reads_do_not_reorder() -> None:
    cache: LRUDict[str, int] = LRUDict(2)
    cache["a"], cache["b"] = 1, 2
    assert cache["a"] == 1 and "a" in cache
    cache["c"] = 3
    assert list(cache) == ["b", "c"]


@pytest.mark.parametrize("size", [0, 1, 5])
def test_never_holds_more_than_its_size(size: int) -> None:
    cache: LRUDict[int, int] = LRUDict(size)
    for n in range(20):
        cache[n] = n
        assert len(cache) <= size
    assert list(cache) == list(range(20 - size, 20))


def test_every_cache_uses_it() -> None:
    """No hand-written LRU (reordering, evicting the oldest by hand) is left in the modules that cache."""
    for module in (tokens, policy, listing, aws_session):
        source = Path(str(module.__file__)).read_text(encoding="utf-8")
        assert "LRUDict(" in source, module.__name__
        assert "move_to_end" not in source and "popitem(" not in source, module.__name__
