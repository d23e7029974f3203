"""Check a composed config against what its ``_target_`` objects take, before any data is prepared.

Hydra replaces a whole group with a plain value when a dot is typed for a slash
(``model.compile=true`` for ``model.compile.enabled=true``, ``model.encoder=conformer`` for
``model/encoder=conformer``), and a value of the wrong type (``trainer.max_epochs=ten``,
``trainer.precision=fp16``) only fails deep inside a constructor or a training step, after the
corpus was prepared. Here every node with a ``_target_`` is held against the signature of the
callable it builds: each key must be one of its arguments (unless it takes ``**kwargs``), and each
value must fit the argument's type hint (:func:`fits`). A mismatch stops the run with a
:class:`ConfigValueError` that names the key, what was given, what the argument takes and, where
the key is a config group, what to write instead.
"""

from __future__ import annotations

import collections.abc as abc
import inspect
import logging
import os
import pathlib
import types
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from speechlab.checkpoint.init_from import without_init_from

log = logging.getLogger(__name__)

# The parts of train.yaml whose nodes build objects.
CHECKED = ("data", "model", "trainer", "callbacks", "logger")
_SPECIAL = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


class ConfigValueError(ValueError):
    """A config value of the wrong shape or type for the argument it is passed to."""


def check_config(cfg: DictConfig, overrides: Sequence[str] = ()) -> None:
    """Hold every ``_target_`` node under :data:`CHECKED` against its callable's signature.

    Args:
        cfg: the composed job config (interpolations are resolved here, on a copy).
        overrides: the command line's overrides, quoted back in messages.

    Raises:
        ConfigValueError: a key the callable does not take, or a value of the wrong type; the
            message names the key, the value given, the type wanted and what to write.
    """
    typed = _typed_overrides(overrides)
    for section in CHECKED:
        node = cfg.get(section)
        if node is None:
            continue
        container = OmegaConf.to_container(node, resolve=True)
        if section == "model" and isinstance(container, dict):
            container = without_init_from(container)  # the runner's option, not the task's
        _walk(container, section, typed)


def _walk(node: Any, path: str, typed: Mapping[str, str]) -> None:
    if isinstance(node, Mapping):
        if isinstance(node.get("_target_"), str):
            _check_target(node, path, typed)
        for key, value in node.items():
            if key not in _SPECIAL:
                _walk(value, f"{path}.{key}", typed)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _walk(value, f"{path}[{index}]", typed)


def _check_target(node: Mapping[str, Any], path: str, typed: Mapping[str, str]) -> None:
    signature, hints, name = _signature(node["_target_"])
    if signature is None:
        return
    parameters = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for key, value in node.items():
        if key in _SPECIAL:
            continue
        where = f"{path}.{key}"
        if key not in parameters:
            if takes_any:
                continue
            names = [n for n, p in parameters.items() if p.kind is not p.VAR_POSITIONAL]
            raise ConfigValueError(
                f"{_given(where, value, typed)}: {name} takes no argument {key!r}. Its arguments: "
                f"{', '.join(names)}. Check the spelling, or remove the key "
                f"(~{where} on the command line)."
            )
        hint = hints.get(key, inspect.Parameter.empty)
        if hint is inspect.Parameter.empty or fits(value, hint):
            continue
        raise ConfigValueError(
            f"{_given(where, value, typed)}: {name}'s argument {key!r} takes "
            f"{_describe(hint)}, not {_kind(value)}.{_advice(where, value)}"
        )


@cache
def _signature(target: str) -> tuple[inspect.Signature | None, dict[str, Any], str]:
    """The signature and resolved type hints of ``target`` (empty when it cannot be read)."""
    try:
        obj = get_method(target)
    except Exception:  # an unknown target fails at instantiation with Hydra's own message
        return None, {}, target
    function = obj.__init__ if inspect.isclass(obj) else obj
    name = getattr(obj, "__qualname__", target)
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None, {}, name
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # an annotation that does not resolve: check the names alone
        hints = {}
    return signature, hints, name


# -- does a config value fit a type hint --------------------------------------------------------

_SEQUENCES = (list, tuple, abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)
_PATHS = (pathlib.Path, pathlib.PurePath, os.PathLike)


def fits(value: Any, hint: Any) -> bool:
    """Whether the plain config value ``value`` (``None``, a bool, number, string, list or dict;
    a dict with ``_target_`` builds an object) can be passed where ``hint`` is annotated.

    Strict where a config is typically mistyped (a string or float for an int, a bool for a
    number, a scalar for a list, a mapping or an object, a value outside a ``Literal``), lenient
    where the hint is not one of those plain kinds (``Any``, protocols, type variables, objects
    of classes a ``_target_`` builds)."""
    if hint is Any or isinstance(hint, (typing.TypeVar, str, typing.ForwardRef)):
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if origin is typing.Annotated:
        return fits(value, args[0])
    if value is None:
        return False
    if isinstance(value, Mapping) and "_target_" in value:
        # builds an object: wrong only where a plain value is wanted
        return not (hint in (bool, int, float, str) or origin in (list, tuple) or hint in _PATHS)
    base = origin or hint
    if base is bool:
        return isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is str:
        return isinstance(value, str)
    if base in _PATHS:
        return isinstance(value, str)
    if base in _MAPPINGS:
        return isinstance(value, Mapping)
    if base in _SEQUENCES:
        if not isinstance(value, list):
            return False
        if base is tuple and len(args) == 2 and args[1] is Ellipsis:
            args = args[:1]
        if base is tuple and args and len(args) != len(value) and len(args) > 1:
            return False
        if len(args) == 1:
            return all(fits(item, args[0]) for item in value)
        if args and base is tuple:
            return all(fits(item, arg) for item, arg in zip(value, args, strict=False))
        return True
    if base in (abc.Callable, typing.Callable):
        return isinstance(value, (Mapping, str))
    if inspect.isclass(base):
        # an object the callable builds from a node with _target_ (handled above): a plain
        # value is wrong, a plain mapping may be one the callable itself turns into its object
        return isinstance(value, Mapping)
    return True


# -- messages -----------------------------------------------------------------------------------


def _typed_overrides(overrides: Sequence[str]) -> dict[str, str]:
    """``key -> the override as typed`` for the command line's value overrides."""
    typed: dict[str, str] = {}
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:
        return typed
    for override, text in zip(parsed, overrides, strict=False):
        typed[override.key_or_group.replace("/", ".")] = text.lstrip("+~")
    return typed


def _given(where: str, value: Any, typed: Mapping[str, str]) -> str:
    if where in typed:
        return f"{typed[where]} (on the command line)"
    return f"{where}={_show(value)} (in the config)"


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: ..." for k in value) + "}"
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object (_target_)" if "_target_" in value else "a mapping"
    return {bool: "a bool", int: "an int", float: "a float", str: "a string", list: "a list"}.get(
        type(value), type(value).__name__
    ) + f" ({_show(value)})"


def _describe(hint: Any) -> str:
    """A type hint as a reader of a config says it."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        literals = [v for a in args if typing.get_origin(a) is typing.Literal for v in a.__args__]
        parts = [
            _describe(a)
            for a in args
            if a is not type(None) and typing.get_origin(a) is not typing.Literal
        ]
        if literals:  # Lightning's precision: one list of every value it takes
            parts.insert(0, "one of " + ", ".join(dict.fromkeys(_show(v) for v in literals)))
        text = " or ".join(dict.fromkeys(parts))
        return f"{text} or null" if type(None) in args else text
    if origin is typing.Literal:
        return "one of " + ", ".join(_show(a) for a in args)
    base = origin or hint
    if base in _MAPPINGS:
        return "a mapping (a group of keys)"
    if base in _SEQUENCES:
        return f"a list of {_describe(args[0])}" if len(args) == 1 else "a list"
    names = {bool: "true/false", int: "an int", float: "a number", str: "a string"}
    if base in names:
        return names[base]
    if base in _PATHS:
        return "a path"
    if inspect.isclass(base):
        return f"an object ({base.__name__}, a node with _target_)"
    return str(hint)


def _advice(where: str, value: Any) -> str:
    """What to write instead, when ``where`` is a config group (``conf/<group>/``)."""
    group = where.replace(".", "/")
    options = _group_options(group)
    if not options or isinstance(value, (Mapping, type(None))):
        return ""
    text = f" {where} is the config group conf/{group}/ (options: {', '.join(options)})"
    if isinstance(value, str) and value in options:
        return f"{text}: to pick one, write {group}={value} (a slash, not a dot)."
    keys = _option_keys(group, options)
    same = [k for k, v in keys.items() if type(v) is type(value)]
    listed = f" ({', '.join(keys)})" if keys else ""
    if same:
        return (
            f"{text}, not a value: write {where}.{same[0]}={_show(value)} to set one of its "
            f"keys{listed}, or pick an option with {group}=<option>."
        )
    return (
        f"{text}, not a value: pick an option with {group}=<option>, or set one of its "
        f"keys{listed}."
    )


def _group_options(group: str) -> list[str]:
    if not GlobalHydra.instance().is_initialized():
        return []
    try:
        return list(GlobalHydra.instance().config_loader().get_group_options(group))
    except Exception:
        return []


def _option_keys(group: str, options: Sequence[str]) -> dict[str, Any]:
    """The keys of the group's first option (``default`` if there is one) with their values."""
    option = "default" if "default" in options else options[0]
    try:
        loader = GlobalHydra.instance().config_loader()
        loaded = loader.repository.load_config(f"{group}/{option}")  # type: ignore[attr-defined]
        container = OmegaConf.to_container(loaded.config, resolve=False)
    except Exception:  # an option that cannot be read: no example, the rest of the message stands
        return {}
    if not isinstance(container, dict):
        return {}
    return {k: v for k, v in container.items() if k != "defaults" and not k.startswith("_")}
