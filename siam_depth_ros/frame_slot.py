"""The depth node's input mailbox: it holds only the newest frame, so frames never queue behind a slow model.

`LatestFrameSlot.put` (from the subscription callback) replaces a frame the worker has not taken yet
and says so (a drop); `take` (from the worker thread) waits for a frame. `LatestFrameSlots` is the same with one
mailbox per camera (the node's slots): the worker takes the newest frame of every camera that has one. Pure Python,
no ROS.
"""
from __future__ import annotations

import threading
from typing import Generic, TypeVar

Item = TypeVar("Item")


class FrameError(ValueError):
    """A frame that cannot be processed (the node logs it once and serves the next frame)."""


class LatestFrameSlot(Generic[Item]):
    """A depth-1 mailbox between one producer and one consumer thread; counts the items it dropped."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._item: Item | None = None
        self._closed = False
        self.dropped = 0

    def put(self, item: Item) -> bool:
        """Offer `item`; returns True when it replaced an item nobody took (which is then dropped)."""
        with self._ready:
            replaced = self._item is not None
            self._item = item
            self.dropped += int(replaced)
            self._ready.notify()
        return replaced

    def take(self) -> Item | None:
        """Wait for an item and remove it from the slot; None once the slot is closed."""
        with self._ready:
            self._ready.wait_for(lambda: self._item is not None or self._closed)
            if self._closed:
                return None
            item, self._item = self._item, None
            return item

    def clear(self) -> bool:
        """Drop a frame nobody took (e.g. when the node stops processing); returns whether there was one."""
        with self._ready:
            dropped, self._item = self._item is not None, None
        return dropped

    def close(self) -> None:
        """Wake the consumer: `take` returns None from now on."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()


Key = TypeVar("Key")


class LatestFrameSlots(Generic[Key, Item]):
    """One depth-1 mailbox per key (a camera) behind one lock, for one consumer thread: `put(key, item)` replaces
    that key's untaken item (a drop, counted); `take_all` waits until some key has an item and takes the newest
    item of every key that has one, so a key that never puts (a silent camera) delays nobody."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._items: dict[Key, Item] = {}
        self._closed = False
        self.dropped = 0

    def put(self, key: Key, item: Item) -> bool:
        """Offer `item` for `key`; returns True when it replaced an item of `key` nobody took (then dropped)."""
        with self._ready:
            replaced = key in self._items
            self._items[key] = item
            self.dropped += int(replaced)
            self._ready.notify()
        return replaced

    def take_all(self) -> dict[Key, Item] | None:
        """Wait for an item of any key and take the items of every key that has one; None once closed."""
        with self._ready:
            self._ready.wait_for(lambda: bool(self._items) or self._closed)
            if self._closed:
                return None
            items, self._items = self._items, {}
            return items

    def clear(self) -> bool:
        """Drop every item nobody took; returns whether there was one."""
        with self._ready:
            dropped, self._items = bool(self._items), {}
        return dropped

    def close(self) -> None:
        """Wake the consumer: `take_all` returns None from now on."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
