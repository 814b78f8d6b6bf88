"""The parsed-document cache finds documents by a short key (length and three slices) and
tells apart texts that share it by comparing them whole."""

from __future__ import annotations

from agent.collector._graphql import DEFAULT_CACHE_CHARS, Prepared, _DocumentCache, _short_key


def _text(marker: bytes) -> bytes:
    # same length, same start, middle and end: only a byte at a quarter of the text differs
    body = bytearray(b"a" * 5000)
    body[1250] = marker[0]
    return bytes(body)


def test_texts_sharing_a_short_key_are_told_apart() -> None:
    first, second = _text(b"x"), _text(b"y")
    assert _short_key(first) == _short_key(second) and first != second
    cache = _DocumentCache(DEFAULT_CACHE_CHARS)
    one, two = Prepared(None, size=len(first)), Prepared(None, size=len(second))
    cache.put(first, one)
    assert cache.get(second) is None
    cache.put(second, two)
    assert cache.get(first) is one and cache.get(second) is two
    assert cache.get(_text(b"z")) is None
    assert _short_key(b"short") == b"short"


def test_eviction_is_bounded_by_count_and_size() -> None:
    cache = _DocumentCache(10 * 5000, max_items=3)
    texts = [_text(bytes([65 + i])) for i in range(5)]  # all under one short key
    for text in texts:
        cache.put(text, Prepared(None, size=len(text)))
    assert all(cache.get(t) is None for t in texts[:2])  # the oldest texts went
    assert all(cache.get(t) is not None for t in texts[2:])
    small = _DocumentCache(8 * 3000)  # by total size: 8 texts of 3000 characters
    for i in range(9):
        small.put(b"%d" % i * 3000, Prepared(None, size=3000))
    assert small.get(b"0" * 3000) is None
    assert all(small.get(b"%d" % i * 3000) is not None for i in range(1, 9))
