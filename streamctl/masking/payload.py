"""Masking one payload (a record value, key or header value): JSON, text, or binary.

- JSON objects/arrays: field paths are applied, then detectors run over every string (and
  number, and object key). The document is re-serialised whenever a rule's key or a
  detector's hit is in its text (so duplicate keys cannot smuggle a value past the parser);
  otherwise the original bytes go out.
- Other UTF-8 text: detectors run over the text; field paths cannot apply.
- Anything else is binary: with rules on it, it is replaced whole (fail closed).

Fast paths keep the common case cheap: a JSON text that cannot contain any rule's keys and
holds no detector hit is returned as is, without parsing. Those checks are only trusted when
the text has no backslash, since a JSON escape (\\u0040) could hide a key or a value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

from streamctl.masking.detectors import find_spans
from streamctl.masking.paths import DROP
from streamctl.masking.rules import DetectorRule, TargetPlan
from streamctl.masking.strategies import TextMask

#: What a binary value becomes on a topic whose rules cover it.
BINARY_REPLACEMENT = b"[REDACTED BINARY]"
BINARY_COUNT = "binary_replaced"

# orjson (Rust) parses and writes JSON ~5x faster than the stdlib, which is most of the
# per-record cost; the stdlib is the fallback for what orjson refuses (NaN, huge integers,
# lone surrogates) so such values are still masked rather than treated as plain text.
_fast_loads = orjson.loads
_fast_dumps = orjson.dumps
_slow_loads = json.loads
_ascii_encoder = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))
_UNPARSED = object()

#: A payload mask bound to one plan: (raw, counts) -> masked payload, or raw itself.
PayloadMask = Callable[[bytes, dict[str, int]], bytes]


def mask_payload(raw: bytes, plan: TargetPlan, counts: dict[str, int]) -> bytes:
    """The masked payload, or `raw` itself (the same object) when nothing needed masking."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        counts[BINARY_COUNT] = counts.get(BINARY_COUNT, 0) + 1
        return BINARY_REPLACEMENT
    if not text:
        return raw
    first = text[0]
    if first in " \t\r\n\ufeff":  # whitespace, or a byte-order mark some parsers accept
        first = text.lstrip(" \t\r\n\ufeff")[:1]
    if first == "{" or first == "[":
        masked = _mask_json(raw, text, plan, counts)
        if masked is not None:
            return masked
    return _mask_text(raw, text, plan, counts)


def payload_mask(plan: TargetPlan) -> PayloadMask:
    """`mask_payload` bound to a plan, specialised for the hot case: object-key paths only.

    With no detectors and every field a path of object keys (`customer.email`, or
    `items[*].card`), a JSON object or array without backslashes is handled here with the
    plan's fields unpacked into locals and the document parsed only once a field's key is
    seen in the text. Anything else (detectors, index paths, escapes, leading whitespace,
    text, invalid JSON) goes through `mask_payload`, so both give the same bytes and counts.
    """
    fields = plan.fields
    if plan.detectors or not fields or any(
        f.parents is None or f.quoted_key is None for f in fields
    ):
        def general(raw: bytes, counts: dict[str, int]) -> bytes:
            return mask_payload(raw, plan, counts)

        return general
    specs = tuple((f.quoted_key or "", f.parents or (), f.leaf, f.spread, f.mask, f.name)
                  for f in fields)
    loads, dumps, decode_error, encode_error = (
        _fast_loads, _fast_dumps, orjson.JSONDecodeError, orjson.JSONEncodeError)
    drop, unparsed = DROP, _UNPARSED

    def keys_only(raw: bytes, counts: dict[str, int]) -> bytes:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            counts[BINARY_COUNT] = counts.get(BINARY_COUNT, 0) + 1
            return BINARY_REPLACEMENT
        first = text[:1]
        if (first != "{" and first != "[") or "\\" in text:
            return mask_payload(raw, plan, counts)
        document: Any = unparsed
        for quoted, parents, leaf, spread, mask, name in specs:
            if quoted not in text:
                continue  # the key is nowhere in the text, so the path reaches nothing
            if document is unparsed:
                try:
                    document = loads(raw)
                except decode_error:  # nothing changed yet: the general path decides
                    return mask_payload(raw, plan, counts)
            node = document
            for key in parents:
                if type(node) is not dict:
                    node = None
                    break
                node = node.get(key)
            if spread:
                kind = type(node)
                if kind is list:
                    items = node
                elif kind is dict:
                    items = list(node.values())
                else:
                    continue
                reached = 0
                for item in items:
                    if type(item) is dict and leaf in item:
                        replacement = mask(item[leaf])
                        if replacement is drop:
                            del item[leaf]
                        else:
                            item[leaf] = replacement
                        reached += 1
                if not reached:
                    continue
            else:
                if type(node) is not dict or leaf not in node:
                    continue
                replacement = mask(node[leaf])
                if replacement is drop:
                    del node[leaf]
                else:
                    node[leaf] = replacement
                reached = 1
            counts[name] = counts.get(name, 0) + reached
        if document is unparsed:
            return raw
        # A rule's key is in the text, so the document goes out as parsed even when no path
        # reached anything: raw text could hold a duplicate key that this parser dropped
        # (it keeps the last) and a first-wins parser downstream would read unmasked.
        try:
            return dumps(document)
        except encode_error:
            return _ascii_encoder.encode(document).encode("ascii")

    return keys_only


def _mask_json(raw: bytes, text: str, plan: TargetPlan, counts: dict[str, int]) -> bytes | None:
    """Mask a JSON document; None when the text turns out not to be JSON."""
    escaped = "\\" in text
    fields = [
        f for f in plan.fields
        if escaped or f.quoted_key is None or f.quoted_key in text
    ]
    detector_rules = [
        r for r in plan.detectors
        if escaped or any(d.spans(text) for d in r.detectors)
    ] if plan.detectors else ()
    if not fields and not detector_rules:
        return raw
    try:
        document = _fast_loads(raw)
    except orjson.JSONDecodeError:
        try:
            document = _slow_loads(text.lstrip("\ufeff"))
        except (ValueError, RecursionError):
            return None
    # A rule's key or a detector hit is in the raw text: the document goes out re-serialised
    # from what was parsed and masked, even when no path reached anything, so a duplicate
    # key that the parser dropped (it keeps the last) cannot carry an unmasked value out.
    for field in fields:
        parents = field.parents
        if parents is None:
            reached = field.path.apply(document, field.mask)
        else:  # object keys only: walked inline, the common and hot case
            node = document
            for key in parents:
                if type(node) is not dict:
                    node = None  # the path leads nowhere in this document
                    break
                node = node.get(key)
            leaf = field.leaf
            if field.spread:  # keys, [*], leaf: every item of the array (or object) reached
                kind = type(node)
                if kind is list:
                    items = node
                elif kind is dict:
                    items = list(node.values())
                else:
                    continue
                reached = 0
                mask = field.mask
                for item in items:
                    if type(item) is dict and leaf in item:
                        replacement = mask(item[leaf])
                        if replacement is DROP:
                            del item[leaf]
                        else:
                            item[leaf] = replacement
                        reached += 1
            else:
                if type(node) is not dict or leaf not in node:
                    continue
                replacement = field.mask(node[leaf])
                if replacement is DROP:
                    del node[leaf]
                else:
                    node[leaf] = replacement
                reached = 1
        if reached:
            counts[field.name] = counts.get(field.name, 0) + reached
    for rule in detector_rules:
        tally = [0]
        document = _scan(document, rule, tally)
        if document is DROP:
            document = None
        if tally[0]:
            counts[rule.name] = counts.get(rule.name, 0) + tally[0]
    try:
        return _fast_dumps(document)
    except orjson.JSONEncodeError:  # NaN is fine, but lone surrogates or huge ints are not
        return _ascii_encoder.encode(document).encode("ascii")


def _splice(text: str, spans: list[tuple[int, int]], mask: TextMask) -> str:
    """Replace each span of the text by its mask."""
    parts = []
    last = 0
    for start, end in spans:
        parts.append(text[last:start])
        parts.append(mask(text[start:end]))
        last = end
    parts.append(text[last:])
    return "".join(parts)


def _scan(node: Any, rule: DetectorRule, tally: list[int]) -> Any:
    """Run a rule's detectors over every string, number and key of a JSON value."""
    if isinstance(node, str):
        spans = find_spans(rule.detectors, node)
        if not spans:
            return node
        tally[0] += len(spans)
        if rule.strategy == "null":
            return None
        if rule.strategy == "drop":
            return DROP
        return _splice(node, spans, rule.mask)
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            new_value = _scan(value, rule, tally)
            if new_value is DROP:
                continue
            spans = find_spans(rule.detectors, key)
            if spans:
                tally[0] += len(spans)
                key = _splice(key, spans, rule.mask)
                if not key or rule.strategy in ("null", "drop"):
                    continue  # a key that held a secret goes with its value
            out[key] = new_value
        return out
    if isinstance(node, list):
        items = [_scan(item, rule, tally) for item in node]
        return [item for item in items if item is not DROP]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int | float):
        as_text = repr(node)
        if find_spans(rule.detectors, as_text):
            return _scan(as_text, rule, tally)
    return node


def _mask_text(raw: bytes, text: str, plan: TargetPlan, counts: dict[str, int]) -> bytes:
    """Run the detectors over a non-JSON text value."""
    changed = False
    for rule in plan.detectors:
        spans = find_spans(rule.detectors, text)
        if spans:
            counts[rule.name] = counts.get(rule.name, 0) + len(spans)
            text = _splice(text, spans, rule.mask)
            changed = True
    return text.encode("utf-8") if changed else raw
