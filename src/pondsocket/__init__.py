"""PondSocket: realtime channels for Python."""
