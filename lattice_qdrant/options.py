"""Options written once: a pydantic field's ``description`` is both its documentation and its ``--help``.

The models whose fields are options (:class:`~lattice_qdrant.plan.PlanOptions`,
:class:`~lattice_qdrant.backfill.BackfillOptions`, :class:`~lattice_qdrant.config.Settings`) describe each
field once, with ``Field(description=...)``. :func:`documented` writes those descriptions into the class
docstring's ``Attributes:`` section, and the CLI builds its options, their types, defaults and help from the
same fields (:mod:`lattice_qdrant.cli`). :func:`summary` gives a function's ``--help`` text: the first
paragraph of its docstring, as alembic does.

:data:`Duration` is a number of seconds that also accepts ``"90s"``, ``"30m"``, ``"24h"`` or ``"7d"``, as the
config file, the environment and the command line give it.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable
from enum import Enum
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo

__all__ = [
    "Duration",
    "choices",
    "documented",
    "is_duration",
    "parse_duration",
    "plain",
    "summary",
    "value_type",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``")

M = TypeVar("M", bound=BaseModel)


def parse_duration(value: str | float | int) -> float:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"24h"`` or ``"7d"``.

    Raises:
        ValueError: the value is not a duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return float(value)
    found = _DURATION.match(value)
    if not found:
        raise ValueError(f"{value!r} is not a duration (use seconds, or 90s, 30m, 24h, 7d)")
    return float(found.group(1)) * _UNITS[found.group(2)]


def _seconds(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


#: seconds; a string is parsed by :func:`parse_duration`
Duration = Annotated[float, BeforeValidator(_seconds)]


def is_duration(field: FieldInfo) -> bool:
    """Whether the field is a :data:`Duration` (the command line gives it as text)."""
    return any(isinstance(m, BeforeValidator) and m.func is _seconds for m in field.metadata)


def value_type(field: FieldInfo) -> Any:
    """The field's type without ``None``: ``int`` for ``int | None``; a union of several types as it is."""
    kind = field.annotation
    if get_origin(kind) in (Union, UnionType):
        args = [a for a in get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return kind


def choices(field: FieldInfo) -> tuple[str, ...] | None:
    """The values a ``Literal`` or enum field (optional or not) allows, or ``None`` for any other field."""
    kind = value_type(field)
    if get_origin(kind) is Literal:
        return tuple(str(a) for a in get_args(kind))
    if isinstance(kind, type) and issubclass(kind, Enum):
        return tuple(str(m.value) for m in kind)
    return None


def plain(text: str) -> str:
    """Docstring markup as plain text for ``--help``: ``\\`\\`x\\`\\``` and ``:role:`x``` become ``x``."""

    def role(found: re.Match[str]) -> str:
        target = found.group(2)
        return target.rsplit(".", 1)[-1] if found.group(1) else target

    return _LITERAL.sub(r"\1", _ROLE.sub(role, text))


def summary(function: Callable[..., Any]) -> str:
    """The first paragraph of ``function``'s docstring, on one line and as plain text: its ``--help``."""
    doc = inspect.getdoc(function) or ""
    return plain(" ".join(doc.split("\n\n", 1)[0].split()))


def documented(model: type[M]) -> type[M]:
    """Append an ``Attributes:`` section to ``model``'s docstring from its fields' descriptions."""
    lines = ["", "Attributes:"]
    for name, field in model.model_fields.items():
        if field.description:
            lines += textwrap.wrap(
                f"{name}: {field.description}",
                width=106,
                initial_indent="    ",
                subsequent_indent="        ",
                break_on_hyphens=False,
            )
    model.__doc__ = (inspect.cleandoc(model.__doc__ or "") + "\n" + "\n".join(lines)).strip()
    return model
