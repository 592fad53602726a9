"""The security suite reuses the machine's Redis (a real broker, never a fake)."""

from tests.redis.conftest import machine_redis

__all__ = ["machine_redis"]
