"""Print pip constraints that pin every direct dependency to the lowest version that
pyproject.toml admits (``name>=X`` becomes ``name==X``), for the given extras.

CI installs with these once more and reruns the suite, so a lower bound that no longer
works fails CI instead of a user's install (transitive dependencies stay at their newest).
Further pyproject.toml files (the benchmarks' distribution) add their dependencies; a
requirement on one of the projects being installed (pondsocket-bench needs pondsocket)
is not pinned: the local checkout satisfies it.
Usage: python .ci/lowest_constraints.py test,asgi,uvloop [benchmarks/pyproject.toml ...]
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version


def lowest_pins(requirements: list[str]) -> list[str]:
    floors: dict[str, tuple[Version, str]] = {}
    for line in requirements:
        req = Requirement(line)
        bounds = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
        if not bounds:
            raise SystemExit(f"{line!r} has no lower bound: give it one in pyproject.toml")
        name = canonicalize_name(req.name)
        marker = f"; {req.marker}" if req.marker else ""
        # a package listed twice (in an extra and in test) gets the higher of its floors
        if name not in floors or max(bounds) > floors[name][0]:
            floors[name] = (max(bounds), marker)
    return [f"{name}=={version}{marker}" for name, (version, marker) in sorted(floors.items())]


def main() -> None:
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    extras = [e for e in (sys.argv[1] if len(sys.argv) > 1 else "").split(",") if e]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    local = {canonicalize_name(project["name"])}
    for path in sys.argv[2:]:
        other = tomllib.loads(Path(path).read_text())["project"]
        local.add(canonicalize_name(other["name"]))
        requirements += other["dependencies"]
    requirements = [r for r in requirements if canonicalize_name(Requirement(r).name) not in local]
    print("\n".join(lowest_pins(requirements)))


if __name__ == "__main__":
    main()
