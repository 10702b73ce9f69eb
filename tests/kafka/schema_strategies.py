"""Hypothesis strategies that build random kafka-python messages from the JSON schemas."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from kafka.protocol.schemas.fields.codecs import (
    UUID,
    BitField,
    Boolean,
    Bytes,
    Float64,
    Int8,
    Int16,
    Int32,
    Int64,
    String,
    UnsignedInt16,
)

from streamctl.kafka.apis import MESSAGE_CLASSES


def _nullable(field: Any, version: int, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    if field.nullable_for_version_q(version):
        return st.none() | strategy
    return strategy


def _simple(field: Any, version: int) -> st.SearchStrategy[Any]:
    codec = field._type
    if codec is Int8:
        return st.integers(-(2**7), 2**7 - 1)
    if codec is Int16:
        return st.integers(-(2**15), 2**15 - 1)
    if codec is UnsignedInt16:
        return st.integers(0, 2**16 - 1)
    if codec is Int32:
        return st.integers(-(2**31), 2**31 - 1)
    if codec is Int64:
        return st.integers(-(2**63), 2**63 - 1)
    if codec is Float64:
        return st.floats(allow_nan=False)
    if codec is Boolean:
        return st.booleans()
    if codec is UUID:
        return st.none() | st.uuids().filter(lambda u: u.int != 0)
    if isinstance(codec, String):
        return _nullable(field, version, st.text(max_size=8))
    if codec is Bytes:
        return _nullable(field, version, st.binary(max_size=12))
    if codec is BitField:
        return st.none() | st.sets(st.integers(0, 30), max_size=4)
    raise AssertionError(f"no strategy for {field.type_str}")


def _field(field: Any, version: int, depth: int) -> st.SearchStrategy[Any]:
    if field.is_struct_array():
        inner = struct_strategy(field.array_of, version, depth + 1)
        return _nullable(field, version, st.lists(inner, max_size=2 if depth < 2 else 1))
    if field.is_array():
        return _nullable(field, version, st.lists(_simple(field.array_of, version), max_size=3))
    if field.is_struct():
        return _nullable(field, version, struct_strategy(field, version, depth + 1))
    return _simple(field, version)


def struct_strategy(struct_field: Any, version: int, depth: int = 0, data_class: Any = None) -> Any:
    """Random instances of a struct at a version, tagged fields included or not at random."""
    cls = data_class if data_class is not None else struct_field.data_class
    required = {
        f.name: _field(f, version, depth) for f in struct_field.untagged_fields(version)
    }
    optional = {f.name: _field(f, version, depth) for f in struct_field.tagged_fields(version)._fields}
    return st.fixed_dictionaries(required, optional=optional).map(
        lambda values: cls(version=version, **values)
    )


def message_strategy(api_key: int, request: bool, version: int) -> Any:
    """Random kafka-python request/response instances of one API at one version."""
    cls = MESSAGE_CLASSES[api_key][0 if request else 1]
    return struct_strategy(cls._struct, version, data_class=cls[None])


def versions_of(api_key: int, request: bool) -> list[int]:
    """Every version the bundled schema defines for a message (its real minimum, not 0)."""
    cls = MESSAGE_CLASSES[api_key][0 if request else 1]
    low, high = cls._valid_versions
    return list(range(low, high + 1))
