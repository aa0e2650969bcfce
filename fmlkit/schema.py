"""Typed configuration schemas: frozen dataclasses read from YAML, checked key by key.

A schema is a tree of frozen dataclasses (`Section` subclasses) whose fields have types (bool,
int, float, str, ``Literal`` choices, ``X | None``, tuples, free-form ``dict[str, Any]``, nested
sections) and optional range bounds (`bounded`); a float must be finite (no ``.inf``, ``.nan``).
A section with an ``enabled`` key may be given as just ``true`` or ``false``: ``{enabled: …}``.
`from_dict` builds one from plain YAML data and reports every problem at once in one
`ConfigError`, each named by its dotted key path; an unknown key names the closest valid one.
`apply_override` sets a dotted ``key=value`` from the command line; `to_dict` turns a schema
back into YAML-ready data.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import types
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml  # type: ignore[import-untyped]  # no stubs: types-PyYAML is not a dependency

from fmlkit.errors import ConfigError

T = TypeVar("T")
_INVALID = object()  # a value that failed its checks (the reason is already in the errors)


def bounded(default: Any, **bounds: float) -> Any:
    """A dataclass field with a default and range bounds (``ge``, ``gt``, ``le``, ``lt``); on a
    tuple they bound each element."""
    return dataclasses.field(default=default, metadata=bounds)


class Section:
    """Base of schema dataclasses: `problems` lists what the type and range of a single key
    cannot say, as (key relative to the section, reason)."""

    def problems(self) -> Iterable[tuple[str, str]]:
        return ()


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that also reads ``1e-3`` and ``5e-4`` as floats (YAML 1.2), not as
    strings (PyYAML's YAML 1.1 wants a dot and a signed exponent)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str, *, where: str) -> Any:
    """``text`` read as YAML with safe types (and ``1e-3`` as a float).

    Python tags (``!!python/object/apply:…``) are refused, never run. The data must stay small
    once its aliases are expanded: at most `MAX_VALUES` values in all, none of them holding
    itself (a "billion laughs" bomb of nested anchors and aliases is refused at once, before
    anything walks it).

    Raises:
        ConfigError: ``text`` is not valid YAML, is nested too deeply, or expands to too many
            values (the message starts with ``where``).
    """
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML{_yaml_problem(e)}") from None
    except RecursionError:
        raise ConfigError(f"{where}: not valid YAML: nested too deeply") from None
    try:
        size = _expanded_size(data, {}, set())
    except RecursionError:
        size = -1
    if not 0 <= size <= MAX_VALUES:
        raise ConfigError(
            f"{where}: its anchors and aliases (&name, *name) expand to more than "
            f"{MAX_VALUES:,} values or to a value holding itself; write the values out"
        )
    return data


MAX_VALUES = 1_000_000  # values a YAML document may hold once its aliases are expanded


def _yaml_problem(error: yaml.YAMLError) -> str:
    """``error`` on one line: where (line, column) and what, without PyYAML's snippet."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or getattr(error, "context", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    text = str(problem or error).replace("\n", " ")
    if "constructor for the tag" in text:
        text += " (only plain YAML is read: no !!python tags)"
    return f"{at}: {text}"


def _expanded_size(value: Any, sizes: dict[int, int], open_: set[int]) -> int:
    """How many values ``value`` holds with every alias expanded (each shared list or mapping
    counted once per reference, computed once); −1 for one that holds itself."""
    if not isinstance(value, (list, dict)):
        return 1
    key = id(value)
    if key in open_:
        return -1
    if key not in sizes:
        open_.add(key)
        total = 1
        for item in value.values() if isinstance(value, dict) else value:
            size = _expanded_size(item, sizes, open_)
            if size < 0:
                return -1
            total = min(total + size, MAX_VALUES + 1)  # capped: no huge numbers either
        open_.discard(key)
        sizes[key] = total
    return sizes[key]


def dump_yaml(data: Any) -> str:
    """Plain data (see `to_dict`) as block-style YAML, keys in their given order."""
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _found(value: Any) -> str:
    """How an error message shows a value found: short, however large the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {_SHORT.repr(value)}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return f"the list {_SHORT.repr(list(value))}"
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return f"an integer of {len(str(abs(value)))} digits"
    return f"{type(value).__name__} {_SHORT.repr(value)}"


_SHORT = reprlib.Repr()  # values in messages: a few elements, a few levels, 60 characters
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxstring, _SHORT.maxother = 2, 6, 60, 60


def _describe(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is tuple:
        count = "any number of" if args[-1] is Ellipsis else f"{len(args)}"
        return f"a list of {count} {_describe(args[0]).split(' ', 1)[1]}s"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    return {bool: "a true or false", int: "an integer", float: "a number", str: "a string"}[tp]


def _hint(tp: Any, value: Any) -> str:
    """A fix for a common wrong type: a quoted number, or a YAML 1.1 boolean where text goes."""
    if isinstance(value, str) and tp in (int, float, bool):
        return " (write it without quotes)"
    if isinstance(value, bool) and tp is str:
        return " (quote it: YAML reads yes/no/on/off/true/false as booleans)"
    if isinstance(value, Mapping) and get_origin(tp) is dict:
        return " (its keys must be text)"
    return ""


def _choice(tp: Any, value: Any, key: str, errors: list[str]) -> Any:
    choices = get_args(tp)
    if isinstance(value, str) and value in choices:
        return value
    close = difflib.get_close_matches(str(value), [str(a) for a in choices], n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    errors.append(f"{key}: expected {_describe(tp)}, found {_found(value)}{hint}")
    return _INVALID


def _convert(tp: Any, value: Any, key: str, errors: list[str], shown: Any = None) -> Any:
    """``value`` checked against the type ``tp`` (lists become tuples, ints become floats),
    or `_INVALID` with the reason appended to ``errors`` (naming ``shown``, if given, as the
    expected type)."""
    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, bool) and "enabled" in {f.name for f in dataclasses.fields(tp)}:
            value = {"enabled": value}  # `log.wandb: true` for `log.wandb: {enabled: true}`
        return _build(tp, {} if value is None else value, key, errors)  # type: ignore[arg-type]
    if origin is Literal:
        return _choice(tp, value, key, errors)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = next(a for a in args if a is not type(None))
        if value is not None:
            return _convert(inner, value, key, errors, shown=tp)
    elif origin is tuple and isinstance(value, (list, tuple)):
        variadic = args[-1] is Ellipsis
        if variadic or len(value) == len(args):
            items = [
                _convert(args[0 if variadic else i], v, f"{key}[{i}]", errors)
                for i, v in enumerate(value)
            ]
            return _INVALID if _INVALID in items else tuple(items)
    elif origin is dict and value is None:
        return {}
    elif origin is dict and isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return dict(value)
    elif tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _finite(value, key, errors)
    elif tp is int and type(value) is int and not -(2**63) <= value < 2**63:
        errors.append(f"{key}: expected an integer that fits in 64 bits, found {_found(value)}")
        return _INVALID
    elif tp in (bool, int, str) and type(value) is tp:
        return value
    expected = _describe(tp if shown is None else shown)
    errors.append(f"{key}: expected {expected}, found {_found(value)}{_hint(tp, value)}")
    return _INVALID


def _finite(value: float, key: str, errors: list[str]) -> Any:
    """``value`` as a float, or `_INVALID` if it is infinite or NaN: no number of a schema
    means anything there (an infinite learning rate trains NaN weights)."""
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if math.isfinite(number):
        return number
    errors.append(f"{key}: expected a finite number, found {_found(value)}")
    return _INVALID


_BOUNDS = {
    "ge": ("≥", lambda v, b: v >= b),
    "gt": (">", lambda v, b: v > b),
    "le": ("≤", lambda v, b: v <= b),
    "lt": ("<", lambda v, b: v < b),
}


def _check_bounds(value: Any, bounds: Mapping[str, float], key: str, errors: list[str]) -> bool:
    items = value if isinstance(value, tuple) else () if value is None else (value,)
    if all(_BOUNDS[name][1](v, b) for v in items for name, b in bounds.items()):
        return True
    wanted = " and ".join(f"{_BOUNDS[name][0]} {b:g}" for name, b in bounds.items())
    what = "every element" if isinstance(value, tuple) else "a value"
    errors.append(f"{key}: expected {what} {wanted}, found {_found(value)}")
    return False


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _unknown_key(name: str, valid: Sequence[str], prefix: str) -> str:
    key = _join(prefix, name)
    close = difflib.get_close_matches(name, valid, n=1)
    if close:
        return f"unknown key {key}; did you mean {_join(prefix, close[0])}?"
    return (
        f"unknown key {key}; valid keys {'in ' + prefix if prefix else 'are'}: {', '.join(valid)}"
    )


def _build(cls: type, data: Any, prefix: str, errors: list[str]) -> Any:
    """The dataclass ``cls`` from the mapping ``data``, or `_INVALID` (reasons in ``errors``)."""
    if not isinstance(data, Mapping):
        where = prefix or "the top level"
        errors.append(f"{where}: expected a mapping of keys, found {_found(data)}")
        return _INVALID
    fields = {f.name: f for f in dataclasses.fields(cls)}
    errors.extend(_unknown_key(str(k), list(fields), prefix) for k in data if k not in fields)
    kwargs: dict[str, Any] = {}
    given = [name for name in fields if name in data]
    for name in given:
        key = _join(prefix, name)
        value = _convert(_hints(cls)[name], data[name], key, errors)
        if value is not _INVALID and _check_bounds(value, fields[name].metadata, key, errors):
            kwargs[name] = value
    if len(kwargs) < len(given):
        return _INVALID
    section = cls(**kwargs)
    found = section.problems() if isinstance(section, Section) else ()
    problems = [f"{_join(prefix, key)}: {why}" for key, why in found]
    errors.extend(problems)
    return _INVALID if problems else section


def raise_problems(problems: Sequence[str], *, source: str) -> None:
    """Raise one `ConfigError` listing ``problems`` (each ``key: reason``), if there are any."""
    if len(problems) == 1:
        raise ConfigError(f"{source}: {problems[0]}")
    if problems:
        lines = "".join(f"\n  - {p}" for p in problems)
        raise ConfigError(f"{source}: {len(problems)} problems:{lines}")


def from_dict(cls: type[T], data: Any, *, source: str) -> T:
    """The schema dataclass ``cls`` built from plain data (as read from YAML); missing keys
    take their defaults.

    Raises:
        ConfigError: unknown keys (with the closest valid key), wrong types, values out of
            range or not among the choices: every problem at once, each named by its key path
            and prefixed by ``source``.
    """
    errors: list[str] = []
    result = _build(cls, data, "", errors)
    raise_problems(errors, source=source)
    assert isinstance(result, cls)
    return result


def to_dict(obj: Any) -> Any:
    """A schema dataclass (or any value inside one) as plain dicts, lists and scalars."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set one dotted ``key=value`` in the nested mapping ``data`` (in place).

    The value is read with YAML's rules (``64``, ``1e-3``, ``true``, ``null``, ``[0, 1]``,
    ``{margin: 0.4}``); sections missing on the way are created; whether the key exists is
    checked later, by `from_dict`. ``true`` or ``false`` set on a section sets its
    ``enabled`` key and keeps the others (``log.wandb=true`` over ``wandb: {project: x}``).

    Raises:
        ConfigError: no ``=``, an empty key part, a value that is not YAML, or a key path that
            goes through a value that is not a mapping.
    """
    key, sep, text = override.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(
            f"override {override!r}: expected KEY=VALUE with a dotted key, e.g. "
            "train.batch_size=64 or head.args.margin=0.4"
        )
    value = parse_yaml(text, where=f"override {override!r}")
    node = data
    for i, part in enumerate(parts[:-1]):
        if node.get(part) is None:
            node[part] = {}
        elif isinstance(node[part], bool):  # `log.wandb: true`, then `log.wandb.project=x`
            node[part] = {"enabled": node[part]}
        node = node[part]
        if not isinstance(node, dict):
            path = ".".join(parts[: i + 1])
            raise ConfigError(
                f"override {override!r}: {path} holds {_found(node)}, not a section of keys"
            )
    if isinstance(value, bool) and isinstance(node.get(parts[-1]), dict):
        node[parts[-1]] = {**node[parts[-1]], "enabled": value}  # keeps the section's keys
    else:
        node[parts[-1]] = value
