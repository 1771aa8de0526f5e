"""What the OpenAPI document says beyond what Litestar derives from handler signatures: request bodies
that reject unknown fields, and success responses served in more media types than JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.plugins import OpenAPISchemaPlugin

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.typing import FieldDefinition

__all__ = ["BINARY", "CSV", "PDF", "StrictStructSchemaPlugin", "also_served_as"]

CSV = Schema(type=OpenAPIType.STRING, description="CSV (`charset=utf-8`, with a byte order mark), CRLF line ends")
PDF = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY, description="A PDF document")
BINARY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)


def _forbids_unknown_fields(annotation: object) -> bool:
    return (
        isinstance(annotation, type)
        and issubclass(annotation, msgspec.Struct)
        and bool(annotation.__struct_config__.forbid_unknown_fields)
    )


class StrictStructSchemaPlugin(OpenAPISchemaPlugin):
    """Documents a msgspec Struct declared with ``forbid_unknown_fields=True`` as
    ``additionalProperties: false``: the decoder answers any other field with a 400, so the document
    says so. The schema itself is Litestar's own for the Struct (the next plugin that supports it);
    pass before Litestar's defaults (``Litestar(plugins=[...])`` does)."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return not field_definition.is_union and _forbids_unknown_fields(field_definition.annotation)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        delegate = next(
            plugin
            for plugin in schema_creator.plugins
            if plugin is not self and schema_creator.plugin_supports_field(plugin, field_definition)
        )
        schema = delegate.to_openapi_schema(field_definition, schema_creator)
        assert isinstance(schema, Schema), f"{field_definition.annotation!r}: Litestar gave {type(schema)!r}"
        schema.additional_properties = False
        return schema


def also_served_as(media: Mapping[str, Schema]) -> type[Operation]:
    """``operation_class=`` of a route whose success response comes in other media types too (by
    ``Accept`` or a ``format`` parameter): adds ``media`` to the success response's documented content,
    next to the JSON schema Litestar (or a ``ResponseSpec`` for the success status) documents."""

    @dataclass
    class AlsoServedAs(Operation):
        def __post_init__(self) -> None:
            for status, response in (self.responses or {}).items():
                if status.startswith("2") and isinstance(response, OpenAPIResponse):
                    extra = {name: OpenAPIMediaType(schema=schema) for name, schema in media.items()}
                    response.content = {**(response.content or {}), **extra}
                    return

    return AlsoServedAs
