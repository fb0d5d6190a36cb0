"""Reading the stack file's bytes into a YAML document, refusing what YAML would let through.

PyYAML's safe loader, plus: a size limit, UTF-8 only (a UTF-16 file gets a
message saying so), no key given twice in one mapping (the last would silently
win) and no nesting deeper than any stack needs (the composer recurses and
would exhaust Python's stack). Every refusal is one ``StackError`` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from deploy.stack_fields import StackError, show

# A stack file is a page of settings: these bound what a mistake (or a hostile
# file) can make the loader do.
MAX_STACK_BYTES = 1 << 20
MAX_DEPTH = 32


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing what it would otherwise let through quietly:
    a key given twice in one mapping (where the last would silently win) and
    nesting deeper than any stack needs (where it would exhaust the stack)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        first: dict[Any, int] = {}
        if isinstance(node, yaml.MappingNode):
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # "<<: *defaults" is overridden on purpose
                key = self.construct_object(key_node, deep=True)
                try:
                    line = first.get(key)
                except TypeError:
                    continue  # unhashable: the base class says so
                if line is not None:
                    raise ConstructorError(
                        None,
                        None,
                        f"duplicate key {show(key)} (first given at line {line})",
                        key_node.start_mark,
                    )
                first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _decode(data: bytes, p: Path) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise StackError("", f"{p} is UTF-16; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise StackError(
            "", f"{p} is not UTF-8: byte 0x{data[e.start]:02x} at line {line} cannot be decoded"
        ) from None


def read_document(p: Path) -> Any:
    """The YAML document in file ``p``. Raises ``StackError`` saying what is wrong with it."""
    try:
        with p.open("rb") as f:
            data = f.read(MAX_STACK_BYTES + 1)
    except OSError as e:
        raise StackError("", f"cannot read stack file {p}: {e.strerror}") from None
    if len(data) > MAX_STACK_BYTES:
        raise StackError("", f"{p} is larger than {MAX_STACK_BYTES} bytes: not a stack file")
    text = _decode(data, p)
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise StackError("", f"{p} is not valid YAML{where}: {problem}") from None
