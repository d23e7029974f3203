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
import os
import pathlib
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from speechlab.checkpoint.init_from import without_init_from
from speechlab.run.config_advice import (
    MAPPINGS,
    SEQUENCES,
    advice,
    describe,
    given,
    group_of,
    is_union,
    kind,
    typed_overrides,
)

# The parts of train.yaml whose nodes build objects.
CHECKED = ("data", "model", "trainer", "callbacks", "logger")
_SPECIAL = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


class ConfigValueError(ValueError):
    """A config value of the wrong shape or type for the argument it is passed to."""


# Plain values of train.yaml that build no object, and what each takes.
PLAIN = {"seed": int, "train": bool, "test": bool}


def check_config(
    cfg: DictConfig, overrides: Sequence[str] = (), sections: Sequence[str] = CHECKED
) -> None:
    """Hold the config against what it builds, before any data is prepared: a plain value typed
    where a config group belongs (``model.compile=true``), each ``_target_`` node under
    :data:`CHECKED` against its callable's signature (and :data:`VALUES`), and the plain values
    of :data:`PLAIN`.

    Args:
        cfg: the composed job config (interpolations are resolved here, on a copy).
        overrides: the command line's overrides, quoted back in messages.
        sections: the parts of the config that will be built (``speechlab shard``: ``data``).

    Raises:
        ConfigValueError: a key the callable does not take, or a value of the wrong type; the
            message names the key, the value given, the type wanted and what to write.
    """
    typed = typed_overrides(overrides)
    _check_groups(cfg, typed)
    for key, wanted in PLAIN.items():
        value = cfg.get(key)
        if key in cfg and not fits(value, wanted):
            raise ConfigValueError(
                f"{given(key, value, typed)}: {key} takes {describe(wanted)}, not {kind(value)}."
            )
    for section in sections:
        node = cfg.get(section)
        if node is None:
            continue
        try:
            container = OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as missing:  # ??? in a config: named from the top
            key = str(missing.full_key or section)
            key = key if key.startswith(f"{section}.") else f"{section}.{key}"
            raise ConfigValueError(
                f"{key} has no value (??? in the config) and this run needs one: give it on the "
                f"command line, {key}=<value>"
            ) from None
        if section == "model" and isinstance(container, dict):
            container = without_init_from(container)  # the runner's option, not the task's
        _walk(container, section, typed)


def _check_groups(cfg: DictConfig, typed: Mapping[str, str]) -> None:
    """A plain value typed for a config group's node (``model.frontend=logmel_global``) is
    named before anything that refers to the group's keys fails to resolve."""
    for where in typed:
        if group_of(where) is None:
            continue
        value = OmegaConf.select(cfg, where, throw_on_resolution_failure=False)
        if value is None or OmegaConf.is_config(value):
            continue
        raise ConfigValueError(
            f"{given(where, value, typed)}: {where} takes a group of keys, not "
            f"{kind(value)}.{advice(where, value, typed)}"
        )


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
                f"{given(where, value, typed)}: {name} takes no argument {key!r}. Its arguments: "
                f"{', '.join(names)}. Check the spelling, or remove the key "
                f"(~{where} on the command line)."
            )
        hint = hints.get(key, inspect.Parameter.empty)
        if hint is not inspect.Parameter.empty and not fits(value, hint):
            _check_keys(where, value, hint, typed)
            raise ConfigValueError(
                f"{given(where, value, typed)}: {name}'s argument {key!r} takes "
                f"{describe(hint)}, not {kind(value)}.{advice(where, value, typed)}"
            )
        check = VALUES.get((node["_target_"], key))
        problem = check(value) if check is not None else None
        if problem:
            raise ConfigValueError(f"{given(where, value, typed)}: {problem}")


def _typed_dict(hint: Any) -> Any:
    """The ``TypedDict`` in ``hint`` (itself, or a member of a union), or None."""
    members = typing.get_args(hint) if is_union(hint) else (hint,)
    return next((m for m in members if typing.is_typeddict(m)), None)


def _key_problem(value: Mapping[str, Any], hint: Any) -> tuple[str, Any, str] | None:
    """The first key of ``value`` that a ``TypedDict`` ``hint`` refuses: ``(key, value, what it
    takes)``; None when every key fits."""
    fields = typing.get_type_hints(hint)
    for key, item in value.items():
        if key not in fields:
            return key, item, f"is no key of it (its keys: {', '.join(fields)})"
        if not fits(item, fields[key]):
            return key, item, f"takes {describe(fields[key])}, not {kind(item)}"
    for key in getattr(hint, "__required_keys__", ()):
        if key not in value:
            return key, None, f"is missing: it takes {describe(fields[key])}"
    return None


def _check_keys(where: str, value: Any, hint: Any, typed: Mapping[str, str]) -> None:
    """Name the key of a mapping that its ``TypedDict`` refuses (``model.compile.enabled``)."""
    schema = _typed_dict(hint)
    if schema is None or not isinstance(value, Mapping):
        return
    problem = _key_problem(value, schema)
    if problem is None:
        return
    key, item, wanted = problem
    raise ConfigValueError(f"{given(f'{where}.{key}', item, typed)}: {where}.{key} {wanted}.")


def _devices(value: Any) -> str | None:
    if not isinstance(value, str) or re.fullmatch(r"auto|-1|\d+|(\d+,)+\d*", value.strip()):
        return None
    return (
        "trainer.devices takes a count (trainer.devices=2), a list of device ids "
        "(trainer.devices=[0,1]) or auto (every device)."
    )


def _one_of(what: str, names: Callable[[], Sequence[str]]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return None
        known = sorted(names())
        if value in known:
            return None
        return f"{what} takes one of {', '.join(known)} (or an object: a node with _target_)."

    return check


def _accelerators() -> list[str]:
    from lightning.pytorch.accelerators import AcceleratorRegistry

    return ["auto", "gpu", *AcceleratorRegistry.available_accelerators()]


def _strategies() -> list[str]:
    from lightning.pytorch.strategies import StrategyRegistry

    return ["auto", *StrategyRegistry.available_strategies()]


# Values a type hint lets through that the callable refuses, checked by name: Lightning's
# Trainer takes any string for these three and fails on an unknown one only when a run starts.
VALUES: dict[tuple[str, str], Callable[[Any], str | None]] = {
    ("lightning.pytorch.Trainer", "devices"): _devices,
    ("lightning.pytorch.Trainer", "accelerator"): _one_of("trainer.accelerator", _accelerators),
    ("lightning.pytorch.Trainer", "strategy"): _one_of("trainer.strategy", _strategies),
}


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
    if is_union(hint):
        return any(fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if origin is typing.Annotated:
        return fits(value, args[0])
    if typing.is_typeddict(hint):
        return isinstance(value, Mapping) and _key_problem(value, hint) is None
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
    if base in MAPPINGS:
        return isinstance(value, Mapping)
    if base in SEQUENCES:
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
        return isinstance(value, Mapping)  # a node with _target_ (a string is not callable)
    if inspect.isclass(base):
        # an object the callable builds from a node with _target_ (handled above): a plain
        # value is wrong, a plain mapping may be one the callable itself turns into its object
        return isinstance(value, Mapping)
    return True


# -- messages -----------------------------------------------------------------------------------
