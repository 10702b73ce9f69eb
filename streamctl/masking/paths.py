"""JSON field paths: `customer.email`, `items[*].card`, `orders[0].lines[*].iban`, `*.ssn`.

A path is compiled once into steps (object key, array index, or wildcard) and then applied
to parsed JSON documents in place. `$.` at the start is accepted and ignored; a key that
holds dots or brackets can be written quoted: `meta["x.y"]` or `meta['x.y']`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamctl.masking.errors import MaskingError


class _Wildcard:
    """Marker step: every key of an object or every item of an array."""

    def __repr__(self) -> str:
        return "*"


WILDCARD = _Wildcard()
#: Returned by a leaf action to remove the field (or array item) instead of replacing it.
DROP = object()

Step = str | int | _Wildcard
LeafAction = Callable[[Any], Any]

_TOKEN = re.compile(
    r"""\.?(?:
        (?P<key>[^.\[\]]+)                 # bare key (or * wildcard)
      | \[(?P<index>-?[0-9]+)\]            # [3]
      | \[(?P<star>\*)\]                   # [*]
      | \[(?P<q>["'])(?P<quoted>.*?)(?P=q)\]  # ["a.b"]
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A compiled path; `literal_keys` lets callers skip documents that cannot contain it."""

    text: str
    steps: tuple[Step, ...]
    literal_keys: tuple[str, ...]

    def apply(self, document: Any, action: LeafAction) -> int:
        """Replace (or drop) every value the path reaches; returns how many were reached."""
        if len(self.literal_keys) == len(self.steps):
            return _apply_keys(document, self.steps, action)  # type: ignore[arg-type]
        return _apply(document, self.steps, 0, action)


def compile_path(text: str) -> FieldPath:
    """Parse a field path; raises MaskingError naming the path when it is malformed."""
    source = text.strip()
    if source.startswith("$"):
        source = source[1:]
    if not source:
        raise MaskingError(f"field path {text!r} is empty")
    steps: list[Step] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None or match.end() == pos:
            raise MaskingError(f"field path {text!r} is malformed at character {pos}")
        if match.group("key") is not None:
            key = match.group("key")
            steps.append(WILDCARD if key == "*" else key)
        elif match.group("index") is not None:
            steps.append(int(match.group("index")))
        elif match.group("star") is not None:
            steps.append(WILDCARD)
        else:
            steps.append(match.group("quoted"))
        pos = match.end()
    literal = tuple(s for s in steps if isinstance(s, str))
    return FieldPath(text, tuple(steps), literal)


def _apply_keys(node: Any, keys: tuple[str, ...], action: LeafAction) -> int:
    """The common case: a path of object keys only, walked without recursion."""
    for key in keys[:-1]:
        if type(node) is not dict:
            return 0
        node = node.get(key)
    last = keys[-1]
    if type(node) is not dict or last not in node:
        return 0
    replacement = action(node[last])
    if replacement is DROP:
        del node[last]
    else:
        node[last] = replacement
    return 1


def _apply(node: Any, steps: tuple[Step, ...], i: int, action: LeafAction) -> int:
    step = steps[i]
    keys: Any
    if step is WILDCARD:
        if isinstance(node, dict):
            keys = list(node)
        elif isinstance(node, list):
            keys = range(len(node))
        else:
            return 0
    elif isinstance(step, int):
        if not isinstance(node, list) or not -len(node) <= step < len(node):
            return 0
        keys = (step % len(node),)
    else:
        if not isinstance(node, dict) or step not in node:
            return 0
        keys = (step,)
    if i + 1 < len(steps):
        reached = 0
        for k in keys:
            reached += _apply(node[k], steps, i + 1, action)
        return reached
    dropped = []
    for k in keys:
        replacement = action(node[k])
        if replacement is DROP:
            dropped.append(k)
        else:
            node[k] = replacement
    for k in reversed(dropped):  # reversed keeps array indexes valid while deleting
        del node[k]
    return len(keys)
