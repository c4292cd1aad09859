"""Typed, frozen configuration dataclasses from YAML: the suite's one loader.

The pipeline, the scheduler and every app describe their configuration as
frozen dataclasses and load it here.  A YAML mapping maps one-to-one onto the
dataclass; unknown keys, missing required keys and wrongly typed values are a
:class:`ConfigError` naming the dotted key (and the file), so a typo never
silently falls back to a default.  Strings may hold ``${VAR}`` and
``${VAR:-default}``; ``--set a.b=c`` overrides (:func:`parse_override`) are
YAML values at dotted keys.

Scalars are checked, not guessed: a text is not a number, and ``True`` is not
an ``int``.  The one leniency is a string that spells a number or a boolean
where one is expected (``"8080"`` for an ``int``, ``"false"`` for a ``bool``),
which is what ``${PORT:-8080}`` and an unparsed command-line value give.

Example:

>>> import dataclasses
>>> @dataclasses.dataclass(frozen=True)
... class Http:
...     host: str = "127.0.0.1"
...     port: int = 8080
>>> @dataclasses.dataclass(frozen=True)
... class App:
...     http: Http = Http()
...     tags: tuple[str, ...] = ()
>>> build_dataclass(App, {"http": {"port": 9000}, "tags": ["a"]})
App(http=Http(host='127.0.0.1', port=9000), tags=('a',))
>>> build_dataclass(App, {"http": {"port": "eighty"}}, source="app.yaml")
Traceback (most recent call last):
...
suite_core.config.ConfigError: app.yaml: http.port: expected int, got 'eighty'
>>> build_dataclass(App, {"htp": {}}, source="app.yaml")
Traceback (most recent call last):
...
suite_core.config.ConfigError: app.yaml: unknown key htp; expected one of: http, tags
>>> data = {"http": {"host": "${APP_HOST:-0.0.0.0}"}}
>>> set_dotted(data, *parse_override("http.port=81"))
>>> build_dataclass(App, expand_env(data)).http
Http(host='0.0.0.0', port=81)
"""

# No `from __future__ import annotations`: the doctest's dataclasses would get string
# annotations that name classes only the doctest knows.
import collections.abc
import dataclasses
import os
import re
import types
import typing
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

__all__ = ["ConfigError", "build_dataclass", "expand_env", "load_dataclass", "merge", "parse_override",
           "read_yaml", "set_dotted"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type; the message names the key."""


def read_yaml(path: str | os.PathLike[str], what: str = "configuration file") -> dict[str, Any]:
    """The mapping at the top of a YAML file (an empty file is an empty mapping).

    ``what`` names the file in the errors: ``<what> not found: <path>``.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """A ``--set training.epochs=2`` override: (dotted key, YAML value).

    >>> parse_override("training.epochs=2"), parse_override("data.labels=[a, b]")
    (('training.epochs', 2), ('data.labels', ['a', 'b']))
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. training.epochs=2")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: the value is not valid YAML: {error}") from None


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Sets ``data[a][b] = value`` for ``a.b``, making the sections on the way."""
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {key} is not a section")
    node[leaf] = value


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``, section by section (a non-mapping value replaces).

    >>> merge({"a": {"x": 1, "y": 2}, "b": 1}, {"a": {"y": 3}})
    {'a': {'x': 1, 'y': 3}, 'b': 1}
    """
    merged = dict(base)
    for key, value in update.items():
        old = merged.get(key)
        merged[key] = merge(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return merged


_ENV_PATTERN = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand_env(value: Any, keep: Collection[str] = ()) -> Any:
    """Expands ``${VAR}`` and ``${VAR:-default}`` in every string of a YAML tree.

    Names in ``keep`` are left as written (the pipeline's ``${name}`` is its own
    name, filled in later); an unset variable without a default is an error.
    """
    if isinstance(value, str):
        def substitute(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in keep:
                return match.group(0)
            if name in os.environ:
                return os.environ[name]
            if default is None:
                raise ConfigError(f"environment variable {name} is not set (used in {value!r})")
            return default
        return _ENV_PATTERN.sub(substitute, value)
    if isinstance(value, dict):
        return {k: expand_env(v, keep) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, keep) for v in value]
    return value


def load_dataclass(cls: type[T], path: str | os.PathLike[str] | None = None, *,
                   defaults: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                   overrides: Mapping[str, Any] | Iterable[str] = (), keep_env: Collection[str] = (),
                   what: str = "configuration file") -> T:
    """``cls`` from the defaults, then the YAML file at ``path``, then ``overrides``.

    ``defaults`` is a YAML file or a mapping that ``path`` is merged over
    section by section; ``overrides`` are ``{dotted key: value}`` or
    ``"key=value"`` strings.  ``${VAR}`` is expanded after the overrides.
    """
    data: dict[str, Any] = {}
    if isinstance(defaults, Mapping):
        data = dict(defaults)
    elif defaults is not None:
        data = read_yaml(defaults, what)
    if path is not None:
        data = merge(data, read_yaml(path, what))
    pairs = overrides.items() if isinstance(overrides, Mapping) else map(parse_override, overrides)
    for dotted, value in pairs:
        set_dotted(data, dotted, value)
    # The user's file is named; the packaged defaults are not where a wrong value comes from.
    source = "" if path is None else str(path)
    return build_dataclass(cls, expand_env(data, keep_env), "", source)


def build_dataclass(cls: type[T], data: Any, prefix: str = "", source: str = "") -> T:
    """A typed ``cls`` from a mapping; errors name the dotted key (under ``prefix``) and ``source``.

    ``None`` is the empty mapping (a YAML section with nothing under it).
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(_where(source, prefix or "top level", f"expected a mapping, got {data!r}"))
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # cls is a dataclass.
    unknown = sorted(str(key) for key in set(data) - set(fields))
    if unknown:
        raise ConfigError(_where(source, None, f"unknown key {_join(prefix, unknown[0])}; "
                                               f"expected one of: {', '.join(sorted(fields))}"))
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        key = _join(prefix, name)
        if name in data:
            values[name] = _coerce(hints[name], data[name], key, source)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(_where(source, None, f"missing required key {key}"))
    try:
        return cls(**values)
    except TypeError as error:  # A __post_init__ check that met a value it could not compare.
        raise ConfigError(_where(source, prefix or None, str(error))) from None


_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _coerce(hint: Any, value: Any, key: str, source: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, key, source)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(option, value, key, source)
            except ConfigError as error:
                errors.append(error)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            raise ConfigError(_where(source, key, f"{value!r} is not one of {', '.join(map(repr, args))}"))
        return value
    if origin in (tuple, list, collections.abc.Sequence):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(_where(source, key, f"expected a list, got {value!r}"))
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(_where(source, key, f"expected {len(args)} values, got {value!r}"))
            return tuple(_coerce(a, v, f"{key}[{i}]", source) for i, (a, v) in enumerate(zip(args, value)))
        items = [_coerce(args[0] if args else Any, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin in (collections.abc.Mapping, dict) or hint in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise ConfigError(_where(source, key, f"expected a mapping, got {value!r}"))
        key_type, value_type = args if args else (Any, Any)
        return {(str(k) if key_type is str else k): _coerce(value_type, v, f"{key}.{k}", source)
                for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
            return _BOOLEANS[value.strip().lower()]
        if not isinstance(value, bool):
            raise ConfigError(_where(source, key, f"expected true or false, got {value!r}"))
        return value
    if hint in (int, float):
        return _number(hint, value, key, source)
    if hint is Path:
        if not isinstance(value, (str, os.PathLike)):
            raise ConfigError(_where(source, key, f"expected a path, got {value!r}"))
        return Path(value)
    if not isinstance(value, hint):
        raise ConfigError(_where(source, key, f"expected {getattr(hint, '__name__', hint)}, got {value!r}"))
    return value


def _number(kind: type, value: Any, key: str, source: str) -> Any:
    if isinstance(value, str):  # "${PORT:-8080}", or a value from the command line.
        try:
            value = int(value.strip()) if kind is int else float(value.strip())
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(_where(source, key, f"expected {kind.__name__}, got {value!r}"))
    if kind is int and isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(_where(source, key, f"expected int, got {value!r}"))
        return int(value)
    return kind(value)


def _where(source: str, key: str | None, message: str) -> str:
    return ": ".join(part for part in (source, key, message) if part)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
