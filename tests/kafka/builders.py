"""Build kafka-python messages from plain dicts, and whole request frames, for readable tests."""

from __future__ import annotations

from typing import Any

from streamctl.kafka.apis import MESSAGE_CLASSES
from streamctl.kafka.headers import encode_request_header
from streamctl.kafka.messages import encode_request


def _build(struct_field: Any, version: int, values: dict[str, Any], cls: Any = None) -> Any:
    cls = cls if cls is not None else struct_field.data_class
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        field = struct_field.fields[name]
        if field.is_struct_array() and value is not None:
            kwargs[name] = [
                _build(field.array_of, version, v) if isinstance(v, dict) else v for v in value
            ]
        elif field.is_struct() and isinstance(value, dict):
            kwargs[name] = _build(field, version, value)
        else:
            kwargs[name] = value
    return cls(version=version, **kwargs)


def message(api_key: int, version: int, request: bool = True, **values: Any) -> Any:
    """A request (or response) object of one API at one version, from nested dicts."""
    cls = MESSAGE_CLASSES[api_key][0 if request else 1]
    return _build(cls._struct, version, values, cls[None])


def request_frame(
    api_key: int, version: int, correlation_id: int = 7, client_id: str | None = "t", **values: Any
) -> bytes:
    """A complete request frame payload (header + body, no size prefix)."""
    body = encode_request(api_key, version, message(api_key, version, True, **values))
    return encode_request_header(api_key, version, correlation_id, client_id) + body
