"""``RedisHistory``: channel history in Redis Streams, shared by every node.

Per channel, two keys with the same hash tag (so they live on one Redis Cluster slot): a
hash ``{...}:meta`` with the ``epoch`` and the ``top`` offset, and a stream ``{...}:log``
whose entry ids are ``<offset>-<milliseconds>`` (ordered by offset, and carrying the time
the record was stored). Appending and reading are Lua scripts, so a position and the
records it names never disagree. ``XADD ... MAXLEN`` keeps the last ``size`` records;
the stream expires ``ttl`` after its last append, the meta ``meta_ttl`` after its last use.
An append retried after its reply was lost is stored once: each store keeps, per channel,
the digest of its last batch and the offsets it got (a third key of the same slot,
expiring with the stream).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from pondsocket.history.store import HistoryStore, HistoryUnavailableError, Slice, Stored
from pondsocket.wire.ids import random_hex

Client = Redis | RedisCluster

# KEYS: meta, log, this writer's last batch. ARGV: new epoch, size, ttl ms, meta ttl ms,
# now ms, batch digest, records... A retry of a batch whose reply was lost (the script ran,
# the connection died) finds its digest in the writer's key and gets the offsets it got.
_APPEND = """
local last = redis.call('GET', KEYS[3])
if last then
  local digest, last_epoch, last_first = string.match(last, '^(%S+) (%S+) (%S+)$')
  if digest == ARGV[6] and redis.call('HGET', KEYS[1], 'epoch') == last_epoch then
    return {last_epoch, tonumber(last_first)}
  end
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
end
local count = #ARGV - 6
local top = redis.call('HINCRBY', KEYS[1], 'top', count)
local first = top - count + 1
for i = 1, count do
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], (first + i - 1) .. '-' .. ARGV[5], 'd', ARGV[6 + i])
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[3], ARGV[6] .. ' ' .. epoch .. ' ' .. first, 'PX', ARGV[3])
return {epoch, first}
"""

# KEYS: meta, log. ARGV: new epoch, after, limit, meta ttl ms.
_READ = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local top = redis.call('HGET', KEYS[1], 'top')
local records = {}
if tonumber(ARGV[3]) > 0 then
  records = redis.call('XRANGE', KEYS[2], (tonumber(ARGV[2]) + 1) .. '-0', '+', 'COUNT', ARGV[3])
end
return {epoch, top, records}
"""


def _digest(records: Sequence[bytes]) -> str:
    """A batch's identity: the service's records are unique (each carries an id)."""
    digest = hashlib.blake2b(digest_size=16)
    for record in records:
        digest.update(len(record).to_bytes(8, "big"))
        digest.update(record)
    return digest.hexdigest()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisHistory(HistoryStore):
    """History in the Redis (or Redis Cluster) that ``client`` talks to; ``prefix`` names
    the keys. The client stays the caller's unless ``owns_client``."""

    def __init__(
        self, client: Client, *, prefix: str = "pondsocket:history", owns_client: bool = False
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._owns_client = owns_client
        self._writer = random_hex()[:16]  # this store's own retry marker, per channel
        self._append = client.register_script(_APPEND)
        self._read = client.register_script(_READ)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "pondsocket:history") -> RedisHistory:
        """A store with its own client for ``url`` (``redis://``, ``rediss://``)."""
        return cls(Redis.from_url(url), prefix=prefix, owns_client=True)

    def _keys(self, key: str) -> list[str]:
        base = f"{self._prefix}:{{{key}}}"
        return [f"{base}:meta", f"{base}:log"]

    def _append_keys(self, key: str) -> list[str]:
        base = f"{self._prefix}:{{{key}}}"  # one hash tag: one Redis Cluster slot
        return [f"{base}:meta", f"{base}:log", f"{base}:w:{self._writer}"]

    async def append(
        self, key: str, records: Sequence[bytes], *, size: int, ttl: float, meta_ttl: float
    ) -> tuple[str, list[int]]:
        args: list[bytes | str | int] = [
            random_hex()[:16],
            size,
            max(1, int(ttl * 1000)),
            max(1, int(meta_ttl * 1000)),
            int(time.time() * 1000),
            _digest(records),
            *records,
        ]
        try:
            epoch, first = await self._append(keys=self._append_keys(key), args=args)
        except (RedisError, OSError) as exc:
            raise HistoryUnavailableError(f"history append failed: {exc}") from exc
        first = int(first)
        return _text(epoch), list(range(first, first + len(records)))

    async def read(self, key: str, after: int, limit: int, *, ttl: float, meta_ttl: float) -> Slice:
        args: list[str | int] = [random_hex()[:16], after, limit, max(1, int(meta_ttl * 1000))]
        try:
            epoch, top, raw = await self._read(keys=self._keys(key), args=args)
        except (RedisError, OSError) as exc:
            raise HistoryUnavailableError(f"history read failed: {exc}") from exc
        oldest = time.time() - ttl
        records: list[Stored] = []
        for entry_id, fields in raw:
            offset, _, millis = _text(entry_id).partition("-")
            stored = int(millis) / 1000
            if stored < oldest:
                continue
            data = fields[b"d"] if isinstance(fields, dict) else _field(fields, b"d")
            records.append(Stored(int(offset), data, stored))
        return Slice(_text(epoch), int(top), records)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _field(fields: list[Any], name: bytes) -> bytes:
    # Lua returns a stream entry's fields as a flat [name, value, ...] list.
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == name:
            value = fields[i + 1]
            return value if isinstance(value, bytes) else str(value).encode()
    raise HistoryUnavailableError("a history record without data")
