"""cattrs at the edges: TOML/JSON data in, frozen attrs objects out, and every
problem reported as one line ``what was wrong @ where``.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import cattrs
from cattrs.errors import AttributeValidationNote, BaseValidationError
from cattrs.v import format_exception as _cattrs_format

from fleetcore.config.units import Duration, Size
from fleetcore.errors import ConfigError

T = TypeVar("T")
Validator = Callable[[Any, Any, Any], None]


class UserValueError(ValueError):
    """A value error whose message is already written for the user."""


class KeyedValueError(ValueError):
    """A validator's error about one key of a table: the error's path names
    that key under the attribute (``labels.hardware``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def checked(*validators: Validator) -> Validator:
    """Wrap attrs validators so cattrs keeps the attribute's path in errors.

    attrs raises validator errors from ``__init__``, where cattrs no longer
    knows which attribute failed; the note we add tells it.
    """

    def run(inst: Any, attr: Any, value: Any) -> None:
        try:
            for validator in validators:
                validator(inst, attr, value)
        except (ValueError, TypeError) as exc:
            err = UserValueError(str(exc))
            name = f"{attr.name}.{exc.key}" if isinstance(exc, KeyedValueError) else attr.name
            err.add_note(
                AttributeValidationNote(
                    f"Structuring class {type(inst).__name__} @ attribute {name}",
                    name,
                    attr.type,
                )
            )
            raise err from None

    return run


def between(low: float, high: float) -> Validator:
    def check(_inst: Any, attr: Any, value: float) -> None:
        if not low <= value <= high:
            raise ValueError(f"{attr.name} must be between {low} and {high}, got {value}")

    return check


def one_of(*choices: str) -> Validator:
    def check(_inst: Any, attr: Any, value: str) -> None:
        if value not in choices:
            raise ValueError(f"{attr.name} must be one of {', '.join(choices)}, got {value!r}")

    return check


def not_empty(_inst: Any, attr: Any, value: Any) -> None:
    if not value:
        raise ValueError(f"{attr.name} must not be empty")


def _format(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, UserValueError):
        return str(exc)
    if isinstance(exc, KeyError) and not isinstance(exc, BaseValidationError):
        return "required key missing"
    message = _cattrs_format(exc, type_)
    return message.replace("required field missing", "required key missing").replace(
        "extra fields found", "unknown keys"
    )


def _structure_datetime(value: Any, _type: type) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"expected a date and time like 2025-11-01T00:00:00Z, got {value!r}"
            ) from None
    else:
        raise ValueError(f"expected a date and time like 2025-11-01T00:00:00Z, got {value!r}")
    # A time without zone is UTC: devices and servers disagree about local time.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _structure_time(value: Any, _type: type) -> dt.time:
    if isinstance(value, dt.time):
        return value
    try:
        return dt.time.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"expected a time of day like '02:00', got {value!r}") from None


def _structure_str(value: Any, _type: type) -> str:
    if not isinstance(value, str):
        raise UserValueError(f"expected a string, got {value!r}")
    return value


def _structure_int(value: Any, _type: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserValueError(f"expected a whole number, got {value!r}")
    return value


def _structure_bool(value: Any, _type: type) -> bool:
    if not isinstance(value, bool):
        raise UserValueError(f"expected true or false, got {value!r}")
    return value


def _structure_str_table(value: Any, _type: Any) -> dict[str, str]:
    # The values are checked by the field's validator, which names the key
    # (``labels.hardware``) where cattrs would say ``labels['hardware']``.
    if not isinstance(value, dict):
        raise UserValueError(f"expected a table of strings, got {value!r}")
    return dict(value)


def _user(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Mark a hook's ValueErrors as written for the user, whatever type
    (optional, union) cattrs reports them under."""

    def hook(value: Any, type_: Any) -> Any:
        try:
            return fn(value, type_)
        except UserValueError:
            raise
        except ValueError as exc:
            raise UserValueError(str(exc)) from None

    return hook


def _is_sequence(type_: Any) -> bool:
    import typing

    return typing.get_origin(type_) in (tuple, list)


def _structure_sequence(conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    def hook(value: Any, type_: Any) -> Any:
        import typing

        if isinstance(value, str | bytes | dict) or not isinstance(value, list | tuple):
            raise UserValueError(f"expected a list, got {value!r}")
        args = typing.get_args(type_)
        origin = typing.get_origin(type_)
        item = args[0] if args else Any
        items = []
        errors = []
        for index, element in enumerate(value):
            try:
                items.append(conv.structure(element, item))
            except Exception as exc:
                exc.add_note(
                    cattrs.errors.IterableValidationNote(
                        f"Structuring {type_} @ index {index}", index, item
                    )
                )
                errors.append(exc)
        if errors:
            raise cattrs.errors.IterableValidationError(f"While structuring {type_}", errors, type_)
        return tuple(items) if origin is tuple else items

    return hook


def make_converter() -> cattrs.Converter:
    """A converter for configuration: strict about keys and types."""
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(Duration, _user(lambda v, _t: Duration.parse(v)))
    conv.register_structure_hook(Size, _user(lambda v, _t: Size.parse(v)))
    conv.register_structure_hook(dt.datetime, _user(_structure_datetime))
    conv.register_structure_hook(dt.time, _user(_structure_time))
    conv.register_structure_hook(Path, lambda v, _t: Path(_structure_str(v, str)))
    # cattrs would turn 5 into "5" and "5" into 5; a config file that says
    # either where the other is meant has a mistake worth reporting.
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook_func(lambda t: t == dict[str, str], _structure_str_table)
    # A string where a list is meant would be split into characters.
    conv.register_structure_hook_func(_is_sequence, _structure_sequence(conv))
    conv.register_unstructure_hook(Duration, str)
    conv.register_unstructure_hook(Size, str)
    conv.register_unstructure_hook(Path, str)
    conv.register_unstructure_hook(dt.datetime, lambda d: d.isoformat())
    conv.register_unstructure_hook(dt.time, lambda t: t.strftime("%H:%M"))
    return conv


converter = make_converter()


def problems_of(exc: BaseException, root: str = "") -> list[str]:
    """Turn a cattrs error into lines ``message @ key.path``."""
    lines = cattrs.transform_error(exc, path="$", format_exception=_format)
    out = []
    for line in lines:
        message, _, path = line.rpartition(" @ ")
        path = path.removeprefix("$").lstrip(".")
        if root:
            path = f"{root}.{path}" if path else root
        out.append(f"{message} @ {path}" if path else message)
    return out


def structure(data: Any, cls: type[T], *, source: str, root: str = "") -> T:
    """Structure ``data`` into ``cls`` or raise one :class:`ConfigError` with
    every problem, each naming its key under ``root`` in ``source``."""
    try:
        return converter.structure(data, cls)
    except (BaseValidationError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(source, problems_of(exc, root)) from None


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file, naming the file and the line on a syntax error."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from None


def parse_toml(text: bytes, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None


def split_table(
    table: Mapping[str, Any], core_keys: Iterable[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a table into the core's keys and the rest (a plugin's options)."""
    keys = set(core_keys)
    core = {k: v for k, v in table.items() if k in keys}
    rest = {k: v for k, v in table.items() if k not in keys}
    return core, rest
