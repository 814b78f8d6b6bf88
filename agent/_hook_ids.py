"""Cheap ids and timestamps for the hot path of the library hook and the tracer.

``str(uuid.uuid4())`` costs a system call and ~2.5 us; ``datetime.now().isoformat()``
~1.8 us. A decorated call needs one id and two timestamps, so both are done here in a
fraction of that:

* :func:`new_step_id` returns UUID-shaped ids (``8-4-4-4-12`` hex, version nibble ``4``,
  RFC 4122 variant) made of a per-process random 72-bit prefix and a 48-bit counter. Ids
  are unique within the process by construction and across processes by the random
  prefix, which is re-drawn in a forked child. The text up to the counter's last three
  hex digits is cached per 4096 ids (~90 ns an id).
* :func:`iso_from_ns` formats a ``time.time_ns()`` value in the reference SDK's wire format
  (``2024-05-01T12:34:56.123456Z``), caching the text up to the millisecond;
  :func:`iso_now` does the same from the float ``time.time()`` (no big-integer
  arithmetic), and the hook's hot paths inline it.
"""

from __future__ import annotations

import itertools
import os
import random
import time

__all__ = [
    "SpanIds",
    "iso_from_ns",
    "iso_now",
    "iso_pair",
    "ms_entry",
    "new_step_id",
    "span_step_id",
]

_rng = random.SystemRandom()


def _new_prefix() -> str:
    bits = _rng.getrandbits(74)
    hi = f"{bits >> 2:018x}"
    # version 4 in the third group, RFC 4122 variant (8..b) in the fourth one
    variant = "89ab"[bits & 3]
    return f"{hi[:8]}-{hi[8:12]}-4{hi[12:15]}-{variant}{hi[15:18]}"


_prefix = _new_prefix()
_counter = itertools.count(1)
# The counter's low 12 bits index a table of 3-digit hex strings; the rest of the id (the
# random prefix and the counter's high bits) is formatted once per 4096 ids and cached as
# ``(high bits, text)``: an id is then one counter step, a table look-up and a concatenation.
_HEX3 = tuple(f"{i:03x}" for i in range(4096))
_block: tuple[int, str] = (-1, "")


def _reseed() -> None:
    global _prefix, _counter, _block
    _prefix = _new_prefix()
    _counter = itertools.count(1)
    _block = (-1, "")


os.register_at_fork(after_in_child=_reseed)


def new_step_id() -> str:
    """A fresh UUID-shaped id, unique in the process and (with high probability) globally."""
    global _block
    n = next(_counter)  # atomic (C); the cache below is re-derived from n, so races are benign
    high = n >> 12
    block = _block
    if block[0] != high:
        block = _block = (high, f"{_prefix}-{high:09x}")
    return block[1] + _HEX3[n & 0xFFF]


def span_step_id(trace_id: int, span_id: int) -> str:
    """The step id of a span: its trace id's high 64 bits and its span id, UUID-shaped.

    Reversible: ``int(step_id.replace("-", "")[16:], 16)`` is the span id. The same
    function serves spans of :mod:`agent.trace` and of the real OpenTelemetry SDK, so a
    child can name its parent's step from the parent's span id alone. The formatted prefix
    (trace high bits + span id top 16 bits) is cached: :mod:`agent.trace` draws those per
    process, so its spans only format their low 48 bits.
    """
    global _prefix_cache
    hi = trace_id >> 64
    top = span_id >> 48
    cache = _prefix_cache
    if hi != cache[0] or top != cache[1]:
        h = f"{hi & 0xFFFF_FFFF_FFFF_FFFF:016x}"
        prefix = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{top & 0xFFFF:04x}-"
        cache = _prefix_cache = (hi, top, prefix)
    return cache[2] + f"{span_id & 0xFFFF_FFFF_FFFF:012x}"


_prefix_cache: tuple[int, int, str] = (-1, -1, "")


class SpanIds:
    """Per-process id sources of :mod:`agent.trace` (re-drawn in a forked child).

    Span ids are 16 random bits per process + a 48-bit counter (unique in the process, hence
    in every trace it takes part in); trace ids are 64 random bits per process (high half) +
    the counter value of the trace's root span (low half). The tracer keeps the counters and
    derives the ids only when asked for them.
    """

    trace_high: int = _rng.getrandbits(64) << 64
    span_top: int = _rng.getrandbits(16) << 48
    counter: itertools.count[int] = itertools.count(1)
    step_id_prefix: str | None = None  # span_step_id(trace_high, span_top)[:24], cached

    @classmethod
    def reseed(cls) -> None:
        cls.trace_high = _rng.getrandbits(64) << 64
        cls.span_top = _rng.getrandbits(16) << 48
        cls.counter = itertools.count(1)
        cls.step_id_prefix = None


os.register_at_fork(after_in_child=SpanIds.reseed)


# the microseconds within a millisecond, as text; index 1000 (a float rounding up at the
# very end of a millisecond, in iso_now) repeats 999
_MICROS = (*(f"{i:03d}Z" for i in range(1000)), "999Z")
# (millisecond, "YYYY-MM-DDTHH:MM:SS.mmm") of the last formatted time: consecutive calls
# and a short step's start and end usually fall in the same millisecond.
_ms_cache: tuple[int, str] = (-1, "")


def _format_ms(ms: int) -> str:
    sec, milli = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{milli:03d}"


def iso_from_ns(ns: int) -> str:
    """``time.time_ns()`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, microseconds)."""
    global _ms_cache
    ms = ns // 1_000_000
    cache = _ms_cache
    if ms != cache[0]:
        cache = _ms_cache = (ms, _format_ms(ms))
    return cache[1] + _MICROS[(ns // 1000) % 1000]


def iso_pair(start_ns: int, end_ns: int) -> tuple[str, str]:
    """:func:`iso_from_ns` of two times (inlined: it runs for every span)."""
    global _ms_cache
    ms = start_ns // 1_000_000
    cache = _ms_cache
    if ms != cache[0]:
        cache = _ms_cache = (ms, _format_ms(ms))
    start = cache[1] + _MICROS[(start_ns // 1000) % 1000]
    ms = end_ns // 1_000_000
    if ms != cache[0]:
        cache = _ms_cache = (ms, _format_ms(ms))
    return start, cache[1] + _MICROS[(end_ns // 1000) % 1000]


def ms_entry(t: float) -> tuple[float, str]:
    """``(start of the millisecond of t, "YYYY-MM-DDTHH:MM:SS.mmm")``: :func:`iso_now`'s cache."""
    ms = int(t * 1000)
    return ms / 1000, _format_ms(ms)


# ms_entry() of the last iso_now() (a float clock: no big-integer arithmetic per call)
now_cache: tuple[float, str] = (0.0, "")


def iso_now() -> str:
    """The current UTC time in the wire format.

    ``time.time()`` (a float, ~0.24 us apart at today's epoch) within its millisecond, which
    is formatted once per millisecond; the hot paths of the hook inline these lines.
    """
    global now_cache
    t = _time()
    cache = now_cache
    d = t - cache[0]
    if not 0.0 <= d < 0.001:
        cache = now_cache = ms_entry(t)
        d = t - cache[0]
    return cache[1] + _MICROS[int(d * 1e6)]


_time = time.time
_time_ns = time.time_ns
