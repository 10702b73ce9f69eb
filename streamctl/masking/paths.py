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
        """Replace (or drop) every value the path reaches; returns how many were reached.

        Walked breadth-first without recursion: the frontier holds the containers reached
        so far, which keeps the per-document cost to a few list operations per step.
        """
        steps = self.steps
        nodes = [document]
        for step in steps[:-1]:
            following: list[Any] = []
            for node in nodes:
                kind = type(node)
                if step is WILDCARD:
                    if kind is dict:
                        following.extend(node.values())
                    elif kind is list:
                        following.extend(node)
                elif kind is dict:
                    if type(step) is str and step in node:
                        following.append(node[step])
                elif kind is list and type(step) is int and -len(node) <= step < len(node):
                    following.append(node[step])
            if not following:
                return 0
            nodes = following
        return _apply_leaf(nodes, steps[-1], action)


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


def _apply_leaf(nodes: list[Any], step: Step, action: LeafAction) -> int:
    """Apply the action to the last step's values in every container reached."""
    reached = 0
    for node in nodes:
        kind = type(node)
        if kind is dict:
            if step is WILDCARD:
                keys: Any = list(node)
            elif type(step) is str and step in node:
                keys = (step,)
            else:
                continue
        elif kind is list:
            if step is WILDCARD:
                keys = range(len(node) - 1, -1, -1)  # backwards, so drops keep indexes valid
            elif type(step) is int and -len(node) <= step < len(node):
                keys = (step % len(node),)
            else:
                continue
        else:
            continue
        for key in keys:
            replacement = action(node[key])
            if replacement is DROP:
                del node[key]
            else:
                node[key] = replacement
            reached += 1
    return reached
