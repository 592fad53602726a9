"""Channel history: stores of recent broadcasts, and the service that records, orders
and replays them (see docs/recovery.md)."""

from pondsocket.history.memory import MemoryHistory
from pondsocket.history.store import HistoryStore, HistoryUnavailableError, Slice, Stored

__all__ = ["HistoryStore", "HistoryUnavailableError", "MemoryHistory", "Slice", "Stored"]
