"""Request bodies decoded once, strictly.

Litestar converts JSON bodies leniently (``"5"`` or ``5.0`` become the int 5). Bodies that carry money,
keys or signed terms must never be coerced, so their handlers declare ``dto=StrictBody[T]``: the raw bytes
are decoded straight into ``T`` by msgspec with ``strict=True`` - one decode per request, no lenient pass
first - and the OpenAPI document shows ``T``'s own schema, exactly as a plain ``data: T`` would.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any, TypeVar

import msgspec
from litestar.dto import AbstractDTO, DTOFieldDefinition
from litestar.dto._backend import DTOBackend
from litestar.exceptions import ValidationException
from litestar.openapi.spec import Reference, Schema
from litestar.typing import FieldDefinition

__all__ = ["StrictBody", "decode_strict"]

T = TypeVar("T")

_MSGSPEC_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


def decode_strict(raw: bytes, target: type[T]) -> T:
    """Decode a JSON body into ``target`` with msgspec's strict rules (no str->int, no float->int).

    Errors take the same shape as Litestar's own validation errors: 400 ``invalid-request`` with the
    offending field in ``errors``.
    """
    try:
        return msgspec.json.decode(raw, type=target, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _MSGSPEC_PATH.search(message)
        key = match.group("path") if match else ""
        text = message[: match.start()] if match else message
        raise ValidationException(
            detail="the request is not valid", extra=[{"message": text, "key": key, "source": "body"}]
        ) from None
    except msgspec.DecodeError as exc:
        raise ValidationException(detail=f"the body is not valid JSON: {exc}") from None


class StrictBody(AbstractDTO[T]):
    """``dto=StrictBody[T]`` on a handler whose ``data`` is a ``T`` (or ``T | None``): strict decoding.

    Only the inbound half of Litestar's DTO protocol is used; give the handler ``return_dto=None``. An
    empty body reaches the handler as its ``data`` default, as Litestar does for any DTO.
    """

    __slots__ = ()

    def decode_bytes(self, value: bytes) -> Any:
        if (
            value.strip() == b"null"
            and self.asgi_connection.route_handler.parsed_fn_signature.parameters["data"].is_optional
        ):
            return None  # as an empty body: the handler's default
        return decode_strict(value, self.model_type)

    def decode_builtins(self, value: dict[str, Any]) -> Any:
        return msgspec.convert(value, self.model_type, strict=True)

    @classmethod
    def generate_field_definitions(cls, model_type: type[Any]) -> Generator[DTOFieldDefinition, None, None]:
        yield from ()  # no transfer model: the struct itself is decoded

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False

    @classmethod
    def create_for_field_definition(
        cls, field_definition: FieldDefinition, handler_id: str, backend_cls: type[DTOBackend] | None = None
    ) -> None:
        """Nothing to build: decoding needs only ``model_type``."""

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any
    ) -> Reference | Schema:
        return schema_creator.for_field_definition(  # type: ignore[no-any-return]
            FieldDefinition.from_annotation(cls.model_type, kwarg_definition=field_definition.kwarg_definition)
        )
