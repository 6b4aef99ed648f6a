"""``class_path`` + ``init_args`` specs of objects and factories, so a checkpoint can rebuild what a config named."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from bob.data.errors import BobInputError

T = TypeVar("T")


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def plain(value: Any) -> Any:
    """``value`` with tuples as lists and mappings as dicts, all the way down: what YAML and
    ``torch.load(weights_only=True)`` read back unchanged."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def import_class(path: str, base: type[T], what: str) -> type[T]:
    """The class ``path`` names, which must be a subclass of ``base``; ``what`` names it in errors."""
    module_name, _, name = str(path).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name) if module_name else None
    except ImportError as error:
        raise BobInputError(f"{what} names class {path!r}, whose module cannot be imported: {error}") from error
    if not isinstance(cls, type) or not issubclass(cls, base):
        raise BobInputError(f"{what} names {path!r}, which is not a {base.__name__} class")
    return cls


def build_from_spec(spec: Mapping[str, Any], base: type[T], what: str) -> T:
    """An instance from ``{"class_path": ..., "init_args": {...}}``."""
    if "class_path" not in spec:
        raise BobInputError(f"{what} must be {{class_path: ..., init_args: {{...}}}}, got {dict(spec)!r}")
    return import_class(spec["class_path"], base, what)(**dict(spec.get("init_args") or {}))


def factory_spec(factory: Callable[..., Any]) -> dict[str, Any] | None:
    """The spec of a class or of a ``functools.partial`` of one with keyword arguments only (what
    ``class_path: torch.optim.AdamW`` + ``init_args`` becomes); None for other callables."""
    if isinstance(factory, type):
        return {"class_path": class_path(factory), "init_args": {}}
    if isinstance(factory, functools.partial):
        # jsonargparse's partials carry the class last among their positional arguments.
        target = (factory.func, *factory.args)[-1]
        if isinstance(target, type):
            return {"class_path": class_path(target), "init_args": plain(factory.keywords)}
    return None


def factory_from_spec(spec: Mapping[str, Any], base: type, what: str) -> Callable[..., Any]:
    """The factory a `factory_spec` describes: the class with its keyword arguments bound."""
    cls = import_class(spec["class_path"], base, what)
    return functools.partial(cls, **dict(spec.get("init_args") or {}))


def factory_argument(
    factory: Callable[..., Any] | Mapping[str, Any], base: type, what: str
) -> tuple[Callable[..., Any], dict[str, Any] | None]:
    """A module's factory argument (e.g. ``optimizer: OptimizerCallable``) as the factory to call
    and the spec to save in its hyperparameters, so a checkpoint, a run record and the logger's
    config hold ``class_path`` + ``init_args``.

    ``factory`` is what jsonargparse passes (a class, or a partial binding its ``init_args``), a
    callable given in Python, or a spec: what a checkpoint passes back, or a default written as
    one so ``--print_config`` shows its values. The spec is None for a callable that has none
    (a lambda): such a module saves no spec and a checkpoint rebuilds it with the default.
    """
    if isinstance(factory, Mapping):
        factory = factory_from_spec(factory, base, what)
    return factory, factory_spec(factory)
