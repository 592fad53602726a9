"""Routing: the path-pattern language shared by endpoints, channels and events."""

from pondsocket.routing.pattern import (
    InvalidPatternError,
    PathPattern,
    Route,
    compile_pattern,
    parse_query,
)

__all__ = ["InvalidPatternError", "PathPattern", "Route", "compile_pattern", "parse_query"]
