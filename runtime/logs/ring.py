"""The last worker lines, kept in memory for `logs` and the dashboard, and live followers.

Blocks of complete lines are stored as they were read (one deque append per chunk, no
per-line work on the hot path); lines are only split when somebody asks for them.

The bound: each block counts its bytes plus BLOCK_OVERHEAD_BYTES (the block object, its
bytes header, timestamp and deque slot: about 190 bytes measured with tracemalloc), the
oldest blocks go once the total passes `max_bytes`, and there are never more than
`max_blocks`. So the ring holds at most `max_bytes` (2 MiB by default) plus one block,
whether the workers print long lines or a flood of 2-byte ones.

The master's own events (`worker_started`, `restart_scheduled`...) are kept apart, for
the dashboard's log pane: the last MAX_EVENTS of them, each value cut to
MAX_EVENT_VALUE_CHARS, and sent only to followers that ask for them (`events=True`), so
`logs` keeps showing worker lines alone.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtime.logs.formats import Source, dumps

DEFAULT_MAX_BYTES = 2 << 20
BLOCK_OVERHEAD_BYTES = 256  # what one block costs beyond its data (measured: ~190)
DEFAULT_MAX_BLOCKS = DEFAULT_MAX_BYTES // BLOCK_OVERHEAD_BYTES
MAX_TAIL_LINES = 10_000
FOLLOW_QUEUE = 10_000
MAX_EVENTS = 1000
MAX_EVENT_VALUE_CHARS = 1024
MAX_EVENT_FIELDS = 32


@dataclass(frozen=True, slots=True)
class Block:
    """Complete lines one worker wrote to one stream, read at one moment."""

    app: str
    instance: int
    pid: int
    stream: str
    timestamp: str
    data: bytes

    def records(self, last: int | None = None) -> list[dict[str, Any]]:
        """Its lines as records, or only the `last` ones (without splitting the rest)."""
        text = self.data.decode("utf-8", "replace").removesuffix("\n")
        if last is None:
            lines = text.split("\n")
        else:
            lines = text.rsplit("\n", last)[-last:] if last > 0 else []
        return [
            {
                "timestamp": self.timestamp,
                "app": self.app,
                "instance": self.instance,
                "pid": self.pid,
                "stream": self.stream,
                "message": line.removesuffix("\r"),
            }
            for line in lines
        ]


class LogRing:
    """Bounded by bytes and blocks; followers get records through bounded queues (drop
    when full)."""

    def __init__(
        self, max_bytes: int = DEFAULT_MAX_BYTES, max_blocks: int = DEFAULT_MAX_BLOCKS
    ) -> None:
        self.max_bytes = max_bytes
        self.max_blocks = max_blocks
        self._blocks: deque[Block] = deque(maxlen=max_blocks)
        self._size = 0
        # each follower's queue and what it follows: (app or None for all, instance or None)
        self._followers: dict[asyncio.Queue[dict[str, Any]], tuple[str | None, int | None]] = {}
        self._event_followers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.dropped = 0

    def add(self, src: Source, stream: str, ts: str, data: bytes) -> None:
        """Keep a block of complete lines (the log sink's tap)."""
        block = Block(src.app, src.instance, src.pid, stream, ts, bytes(data))
        blocks = self._blocks
        if len(blocks) == self.max_blocks:
            self._size -= len(blocks.popleft().data) + BLOCK_OVERHEAD_BYTES
        blocks.append(block)
        self._size += len(block.data) + BLOCK_OVERHEAD_BYTES
        while self._size > self.max_bytes and len(blocks) > 1:
            self._size -= len(blocks.popleft().data) + BLOCK_OVERHEAD_BYTES
        if self._followers:
            self._publish(block)

    def add_event(self, event: Mapping[str, Any]) -> None:
        """Keep one of the master's events (the log sink's event tap), bounded in size."""
        record = _event_record(event)
        self._events.append(record)
        for queue in self._event_followers:
            try:
                queue.put_nowait(record)
            except asyncio.QueueFull:
                self.dropped += 1

    def events(self, last: int) -> list[dict[str, Any]]:
        """The last `last` events, oldest first."""
        if last <= 0:
            return []
        return list(itertools.islice(self._events, max(0, len(self._events) - last), None))

    def __len__(self) -> int:
        """The number of blocks held."""
        return len(self._blocks)

    def _publish(self, block: Block) -> None:
        records = block.records()
        for queue, (name, instance) in self._followers.items():
            if not _selected(block, name, instance):
                continue
            for record in records:
                try:
                    queue.put_nowait(record)
                except asyncio.QueueFull:
                    self.dropped += 1

    def tail(
        self, lines: int, app: str | None = None, instance: int | None = None
    ) -> list[dict[str, Any]]:
        """The last `lines` records (MAX_TAIL_LINES at most; of one app, or one instance of
        it, when given), oldest first, in time proportional to `lines`."""
        wanted = min(lines, MAX_TAIL_LINES)
        chunks: list[list[dict[str, Any]]] = []
        found = 0
        for block in reversed(self._blocks):
            if found >= wanted:
                break
            if not _selected(block, app, instance):
                continue
            chunk = block.records(wanted - found)
            chunks.append(chunk)
            found += len(chunk)
        return [record for chunk in reversed(chunks) for record in chunk]

    def recent(self, app: str, pid: int, max_blocks: int = 256) -> list[bytes]:
        """What one worker wrote lately, oldest first, looking at the last `max_blocks` blocks."""
        found = [
            b.data
            for b in itertools.islice(reversed(self._blocks), max_blocks)
            if b.pid == pid and b.app == app
        ]
        return found[::-1]

    def subscribe(
        self, app: str | None = None, instance: int | None = None, *, events: bool = False
    ) -> asyncio.Queue[dict[str, Any]]:
        """A queue of the new records of every app, one app, or one instance of it; with
        `events`, the master's events too, in the order they happen."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(FOLLOW_QUEUE)
        self._followers[queue] = (app, instance)
        if events:
            self._event_followers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._followers.pop(queue, None)
        self._event_followers.discard(queue)


def _event_record(event: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-ready copy of an event: scalars kept, anything else as its JSON text, every
    string cut to MAX_EVENT_VALUE_CHARS, at most MAX_EVENT_FIELDS keys."""
    record: dict[str, Any] = {}
    for key, value in itertools.islice(event.items(), MAX_EVENT_FIELDS):
        if value is None or isinstance(value, bool | int | float):
            record[str(key)] = value
            continue
        text = value if isinstance(value, str) else dumps(value)
        record[str(key)] = text[:MAX_EVENT_VALUE_CHARS]
    return record


def _selected(block: Block, app: str | None, instance: int | None) -> bool:
    """Whether `block` is of `app` (any when None) and `instance` (any when None)."""
    return (app is None or block.app == app) and (instance is None or block.instance == instance)
