"""Reading one field of the stack file: the checks every value goes through.

``Fields`` wraps one mapping of the parsed document with its path in the file,
so every error names the field (``pools[1].lending_limit``). Strings are one
line of printable text and patterns match them whole; numbers are finite and
bounded; integers are integers (``true`` is not 1); unknown keys are errors.
"""

from __future__ import annotations

import math
import re
import reprlib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

MAX_USER_NAME = 128
# Upper bound of any number the stack does not bound more tightly.
MAX_NUMBER = 1e9

T = TypeVar("T")


class StackError(ValueError):
    """A stack file that cannot be used; ``path`` names the offending field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Bound:
    """The inclusive range of one setting, read by both the stack validator and the
    scheduler API's JSON Schema, so a value one accepts the other accepts too."""

    min: float
    max: float
    integer: bool = False


_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlevel, _REPR.maxlist = 60, 60, 3, 4


def show(value: Any) -> str:
    """``repr`` for error messages, cut short: YAML aliases can make a small file
    describe a value whose full repr would not fit in memory."""
    text = _REPR.repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def unprintable(text: str) -> str | None:
    """The first character of ``text`` that is not printable on one line, if any:
    control and format characters, line and paragraph separators, surrogates,
    private-use and unassigned code points."""
    for c in text:
        if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            return c
    return None


def user_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an RBAC user name (None: it can). Any printable text on
    one line, without surrounding spaces: it appears in the audit log as typed."""
    if not name:
        return "must not be empty"
    if len(name) > MAX_USER_NAME:
        return f"must be at most {MAX_USER_NAME} characters"
    if (c := unprintable(name)) is not None:
        return f"must be printable text on one line, but contains {c!r}"
    if name != name.strip():
        return "must not start or end with a space"
    return None


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an absolute http(s) URL with a host (None: it is)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a port out of range)
    except ValueError as e:
        return f"is not a URL: {e}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    if unprintable(url) is not None or " " in url:
        return "must not contain spaces or control characters"
    return None


class Fields:
    """A mapping in the YAML document, with its path, that records which keys were read."""

    def __init__(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise StackError(path, f"must be a mapping, got {type(value).__name__}")
        self.value: dict[str, Any] = value
        self.path = path
        self._read: set[str] = set()

    def at(self, key: str) -> str:
        """The path of ``key`` in the file."""
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str, default: Any = ..., *, required: bool = True) -> Any:
        self._read.add(key)
        if key not in self.value:
            if default is ... and required:
                raise StackError(self.at(key), "is required")
            return None if default is ... else default
        return self.value[key]

    def text(self, key: str, default: Any = ..., *, pattern: re.Pattern[str] | None = None) -> str:
        v = self.raw(key, default)
        if not isinstance(v, str) or not v:
            raise StackError(self.at(key), f"must be a non-empty string, got {show(v)}")
        if pattern is not None and not pattern.fullmatch(v):
            raise StackError(self.at(key), f"{show(v)} must match {pattern.pattern}")
        if unprintable(v) is not None:
            raise StackError(self.at(key), f"must be printable text on one line, got {show(v)}")
        return v

    def integer(
        self, key: str, default: Any = ..., *, min: int = 0, max: int = int(MAX_NUMBER)
    ) -> int:
        v = self.raw(key, default)
        # bool is an int in Python; in a stack file "true" is never a count.
        if isinstance(v, bool) or not isinstance(v, int):
            raise StackError(self.at(key), f"must be an integer, got {show(v)}")
        if not min <= v <= max:
            raise StackError(self.at(key), f"must be between {min} and {max}, got {v}")
        return v

    def number(
        self,
        key: str,
        default: Any = ...,
        *,
        min: float = 0.0,
        max: float = MAX_NUMBER,
        exclusive_min: bool = False,
    ) -> float:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise StackError(self.at(key), f"must be a number, got {show(v)}")
        # .nan compares false with everything and .inf passes any lower bound: both are
        # refused here rather than crash (or serve invalid JSON) further down.
        if isinstance(v, float) and not math.isfinite(v):
            raise StackError(self.at(key), f"must be a finite number, got {v}")
        low_bad = v <= min if exclusive_min else v < min
        if low_bad or v > max:
            op = ">" if exclusive_min else ">="
            raise StackError(self.at(key), f"must be {op} {min} and <= {max}, got {v}")
        return float(v)

    def seconds(
        self, key: str, default: Any = ..., *, min: float = 0.0, max: float = MAX_NUMBER
    ) -> float:
        """A duration: Prometheus and Alertmanager count in milliseconds, so it is 0 or at
        least 1 ms (a smaller one would be written as 0, which they refuse)."""
        v = self.number(key, default, min=min, max=max)
        if 0 < v < 0.001:
            raise StackError(self.at(key), f"must be 0 or at least 0.001 (1 ms), got {v}")
        return v

    def bounded(self, key: str, default: Any, bound: Bound) -> float:
        if bound.integer:
            return self.integer(key, default, min=int(bound.min), max=int(bound.max))
        return self.number(key, default, min=bound.min, max=bound.max)

    def flag(self, key: str, default: Any = ...) -> bool:
        v = self.raw(key, default)
        if not isinstance(v, bool):
            raise StackError(self.at(key), f"must be true or false, got {show(v)}")
        return v

    def child(self, key: str, default: Any = ...) -> Fields:
        return Fields(self.raw(key, default), self.at(key))

    def items(self, key: str, build: Callable[[Fields], T], default: Any = ...) -> tuple[T, ...]:
        v = self.raw(key, default)
        if not isinstance(v, list):
            raise StackError(self.at(key), f"must be a list, got {type(v).__name__}")
        out = []
        for i, item in enumerate(v):
            node = Fields(item, f"{self.at(key)}[{i}]")
            out.append(build(node))
            node.done()
        return tuple(out)

    def str_list(
        self, key: str, default: Any = ..., *, pattern: re.Pattern[str] | None = None
    ) -> tuple[str, ...]:
        v = self.raw(key, default)
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise StackError(self.at(key), "must be a list of strings")
        for i, item in enumerate(v):
            if pattern is not None and not pattern.fullmatch(item):
                raise StackError(
                    f"{self.at(key)}[{i}]", f"{show(item)} must match {pattern.pattern}"
                )
        return tuple(v)

    def done(self) -> None:
        """Unknown keys are errors: a misspelt field must not silently fall back to a default."""
        for key in self.value:
            if key not in self._read:
                raise StackError(self.at(str(key)), "unknown field")
