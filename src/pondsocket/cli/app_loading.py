"""Loading the application that ``pondsocket serve module:attr`` names."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from pondsocket import PondSocket
from pondsocket.cli.errors import CLIError


def load_target(target: str) -> PondSocket:
    """Import ``module:attr`` (``attr`` may be dotted) and return the PondSocket it names.

    Raises :class:`CLIError` with a one-line explanation when that is not possible.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr or ":" in attr:
        raise CLIError(f"target {target!r} must have the form module:attribute, e.g. myapp:pond")
    obj = _resolve(_import_module(module_name), module_name, attr)
    if isinstance(obj, PondSocket):
        return obj
    return _call_factory(obj, target)


def _import_module(module_name: str) -> Any:
    cwd = os.getcwd()
    if cwd not in sys.path:  # like uvicorn: serve modules of the current directory
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and _is_prefix(exc.name, module_name):
            raise CLIError(
                f"cannot import module {module_name!r}: no module named {exc.name!r}"
            ) from None
        raise CLIError(f"importing {module_name!r} failed: {exc}") from None


def _resolve(module: Any, module_name: str, attr: str) -> Any:
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CLIError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _call_factory(obj: Any, target: str) -> PondSocket:
    if not callable(obj):
        raise CLIError(f"{target!r} is a {type(obj).__name__}, not a PondSocket")
    try:
        inspect.signature(obj).bind()
    except TypeError:
        raise CLIError(
            f"{target!r} needs arguments: expected a PondSocket or a zero-argument factory"
        ) from None
    except ValueError:
        pass  # no signature to inspect (some builtins): just call it
    result = obj()
    if not isinstance(result, PondSocket):
        raise CLIError(f"{target}() returned a {type(result).__name__}, not a PondSocket")
    return result


def _is_prefix(missing: str, module_name: str) -> bool:
    """Whether the missing module is ``module_name`` itself or one of its parent packages."""
    return module_name == missing or module_name.startswith(missing + ".")
