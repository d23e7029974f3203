"""The words of a config check's message: what was given, what an argument takes, what to write.

Used by :mod:`speechlab.run.config_check`. What to write comes from the config tree itself: a key
that is a config group (``model.encoder`` is ``conf/model/encoder/``, and a keyword spotter's is
``model/kws_encoder@model.encoder``) gets its options and the override that picks one; a key
that holds a mapping (``model.decoding``, ``data.tokenizer``) gets its keys and the one a value
of the kind given is meant for (``model.decoding.kind=beam``), read from the config composed
without the offending override.
"""

from __future__ import annotations

import collections.abc as abc
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

# What typing.get_origin gives for the mapping and sequence hints a config value can fill.
MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)
SEQUENCES = (list, tuple, abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection)
# A string meant for a group of keys most often names its kind.
LIKELY_KEYS = ("kind", "name", "type", "enabled")


def typed_overrides(overrides: Sequence[str]) -> dict[str, str]:
    """``key -> the override as typed`` for the command line's value overrides."""
    typed: dict[str, str] = {}
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # Hydra parsed them already; nothing to quote back
        return typed
    for override, text in zip(parsed, overrides, strict=False):
        typed[override.key_or_group.replace("/", ".")] = text.lstrip("+~")
    return typed


def given(where: str, value: Any, typed: Mapping[str, str]) -> str:
    """``key=value``, and whether it was typed or comes from a config file."""
    if where in typed:
        return f"{typed[where]} (on the command line)"
    return f"{where}={show(value)} (in the config)"


def show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: ..." for k in value) + "}"
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def kind(value: Any) -> str:
    """What a config value is, in words: ``a string (fast)``."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object (_target_)" if "_target_" in value else "a mapping"
    names = {bool: "a bool", int: "an int", float: "a float", str: "a string", list: "a list"}
    return names.get(type(value), type(value).__name__) + f" ({show(value)})"


def is_union(hint: Any) -> bool:
    """Whether ``hint`` is a union (``A | B``, ``Optional[A]``)."""
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def describe(hint: Any) -> str:
    """A type hint as a reader of a config says it."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if is_union(hint):
        literals = [v for a in args if typing.get_origin(a) is typing.Literal for v in a.__args__]
        parts = [
            describe(a)
            for a in args
            if a is not type(None) and typing.get_origin(a) is not typing.Literal
        ]
        if literals:  # Lightning's precision: one list of every value it takes
            parts.insert(0, "one of " + ", ".join(dict.fromkeys(show(v) for v in literals)))
        text = " or ".join(dict.fromkeys(parts))
        return f"{text} or null" if type(None) in args else text
    if origin is typing.Literal:
        return "one of " + ", ".join(show(a) for a in args)
    base = origin or hint
    if typing.is_typeddict(base):
        return f"a group of the keys {', '.join(typing.get_type_hints(base))}"
    if base in MAPPINGS:
        return "a mapping (a group of keys)"
    if base in SEQUENCES:
        return f"a list ({describe(args[0])} each)" if len(args) == 1 else "a list"
    if base is abc.Callable:
        return "an object (a node with _target_)"
    names = {bool: "true/false", int: "an int", float: "a number", str: "a string"}
    if base in names:
        return names[base]
    if inspect.isclass(base):
        return f"an object ({base.__name__}, a node with _target_)"
    return str(hint)


# -- what to write instead ---------------------------------------------------------------------


def group_of(where: str) -> tuple[str, str] | None:
    """``(group, override key)`` of the config group that fills ``where`` in this run:
    ``("model/encoder", "model/encoder")`` or, for a group placed under another package,
    ``("model/kws_encoder", "model/kws_encoder@model.encoder")``; None when ``where`` is no
    group's node (or outside a Hydra run)."""
    choices: dict[str, Any] = {}
    if HydraConfig.initialized():
        choices = dict(HydraConfig.get().runtime.choices)
    for key in choices:
        group, _, package = key.partition("@")
        if (package or group.replace("/", ".")) == where:
            return group, key
    plain = where.replace(".", "/")
    return (plain, plain) if options_of(plain) else None


def options_of(group: str) -> list[str]:
    if not GlobalHydra.instance().is_initialized():
        return []
    try:
        return list(GlobalHydra.instance().config_loader().get_group_options(group))
    except Exception:  # not a group
        return []


def original(where: str, typed: Mapping[str, str]) -> Any:
    """The value of ``where`` in the config composed without the override that set it (the
    config files' own value), unresolved; None when it cannot be composed."""
    if not (HydraConfig.initialized() and GlobalHydra.instance().is_initialized()):
        return None
    from hydra import compose

    hydra_cfg = HydraConfig.get()
    overrides = [o for o in hydra_cfg.overrides.task if o.lstrip("+~") != typed.get(where)]
    try:
        cfg = compose(config_name=hydra_cfg.job.config_name, overrides=overrides)
        node = OmegaConf.select(cfg, where)
        return OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node
    except Exception:  # the rest of the message stands without it
        return None


def _key_for(value: Any, keys: Mapping[str, Any]) -> str | None:
    """The key of ``keys`` a value like ``value`` is most likely meant for."""
    same = [k for k, v in keys.items() if type(v) is type(value) and not str(v).startswith("${")]
    for key in LIKELY_KEYS:
        if key in same:
            return key
    return same[0] if same else None


def advice(where: str, value: Any, typed: Mapping[str, str]) -> str:
    """What to write instead of a plain value where a group of keys or an object belongs."""
    if value is None or isinstance(value, Mapping):
        return ""
    found = group_of(where)
    if found is not None:
        group, override = found
        options = options_of(group)
        text = f" {where} is the config group conf/{group}/ (options: {', '.join(options)})"
        if isinstance(value, str) and value in options:
            return f"{text}: to pick one, write {override}={value} (a slash, not a dot)."
        if isinstance(value, str):
            return f"{text}; {value!r} is none of them: pick one with {override}=<option>."
    else:
        text = f" {where} is a group of keys"
    keys = original(where, typed)
    if not isinstance(keys, dict):
        if found is None:
            return ""  # a plain value of the wrong type: the message says what it takes
        keys = {}
    keys = {k: v for k, v in keys.items() if not k.startswith("_")}
    listed = f" ({', '.join(keys)})" if keys else ""
    key = _key_for(value, keys)
    pick = f", or pick an option with {found[1]}=<option>" if found else ""
    if key is not None:
        return (
            f"{text}, not a value: write {where}.{key}={show(value)} to set one of its "
            f"keys{listed}{pick}."
        )
    return f"{text}, not a value: set one of its keys{listed}{pick}."
