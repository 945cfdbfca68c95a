"""What Litestar's generated OpenAPI document cannot say by itself, declared beside the types and routes it describes.

- `ModelSchemaPlugin`: request bodies (`schemas.common.Model`) refuse unknown fields (`additionalProperties: false`),
  and their `exactly_one` / `at_least_one` fields become `oneOf` / `anyOf` (inside `allOf`, so client generators
  still see one object with every property).
- `documented(...)`: an `operation_class` for a route that adds
  - `QueryGroup`s: query parameters of which exactly one (or at least one) must be given, written as one exploded
    form object whose `allOf`/`oneOf` says so (OpenAPI has no other way to relate two parameters). The object stays
    open: other query keys are other parameters, or ignored as the gateway ignores unknown query parameters;
  - `Rule`s: what the gateway checks that no schema can say (a time relative to now, a name that must exist in the
    EMR's catalog): listed in the operation's description and in `x-rules`, and a `422` names the same field;
  - `Link`s: where a response's values can be used next (`links`), so a client, or a fuzzer, can follow an id from
    the call that creates it to the calls that read, change or cancel it.
- `allow_header`: an `OPTIONS` answer lists every method of the path (Litestar's own lists only the methods of the
  first handler registered for it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin  # Litestar's own, for the fields
from litestar.datastructures import MutableScopeHeaders
from litestar.openapi.spec import Operation, Reference, Schema
from litestar.plugins.base import OpenAPISchemaPlugin
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope
from litestar.typing import FieldDefinition

from schemas.common import Model

RULES_EXTENSION = "x-rules"


def _non_null(schema: Schema | Reference) -> Schema | Reference:
    """`T | None` is `oneOf: [T, {type: null}]`: the T."""
    if isinstance(schema, Schema) and schema.one_of:
        rest = [s for s in schema.one_of if not (isinstance(s, Schema) and s.type == "null")]
        if len(rest) == 1:
            return rest[0]
    return schema


class ModelSchemaPlugin(OpenAPISchemaPlugin):
    def __init__(self) -> None:
        self._struct = StructSchemaPlugin()

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return not field_definition.is_union and field_definition.is_subclass_of(Model)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        schema = self._struct.to_openapi_schema(field_definition, schema_creator)
        model: type[Model] = field_definition.type_
        if model.__struct_config__.forbid_unknown_fields:
            schema.additional_properties = False
        properties = schema.properties or {}

        def present(name: str) -> Schema:
            return Schema(required=[name], properties={name: _non_null(properties[name])})

        rules: list[Schema | Reference] = []
        if model.exactly_one:
            rules.append(Schema(one_of=[present(name) for name in model.exactly_one]))
        if model.at_least_one:
            rules.append(Schema(any_of=[present(name) for name in model.at_least_one]))
        if rules:
            schema.all_of = rules
            schema.description = _with_sentence(schema.description, _struct_rule_text(model))
        if model.examples:
            schema.examples = [dict(example) for example in model.examples]
        return schema


def _struct_rule_text(model: type[Model]) -> str:
    parts = []
    if model.exactly_one:
        parts.append(f"Exactly one of {', '.join(model.exactly_one)} is given (not null).")
    if model.at_least_one:
        parts.append(f"At least one of {', '.join(model.at_least_one)} is given (not null).")
    return " ".join(parts)


def _with_sentence(text: str | None, sentence: str) -> str:
    text = (text or "").strip()
    return f"{text}\n\n{sentence}" if text and sentence not in text else text or sentence


@dataclass(frozen=True)
class QueryGroup:
    """Query parameters `members`, of which exactly one (or, `exactly_one=False`, at least one) is given."""

    name: str
    members: tuple[str, ...]
    exactly_one: bool = True
    description: str = ""

    @property
    def sentence(self) -> str:
        how = "Exactly one" if self.exactly_one else "At least one"
        return f"{how} of {', '.join(self.members)}."


@dataclass(frozen=True)
class Rule:
    """A check the schema cannot express; a `422` for it names `field` (or a field under it) in `errors`."""

    field: str
    text: str


@dataclass(frozen=True)
class Link:
    """An OpenAPI link from this operation's `status` response to `operation_id`."""

    name: str
    status: int
    operation_id: str
    parameters: dict[str, str] = field(default_factory=dict)
    request_body: Any = None
    description: str = ""

    def at(self, status: int) -> Link:
        """The same link from another response of the operation."""
        return replace(self, status=status)

    def to_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"operationId": self.operation_id}
        if self.parameters:
            out["parameters"] = dict(self.parameters)
        if self.request_body is not None:
            out["requestBody"] = self.request_body
        if self.description:
            out["description"] = self.description
        return out


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter is absent, never null: `oneOf: [X, {type: null}]` becomes X."""
    one_of = schema.get("oneOf")
    if not isinstance(one_of, list):
        return dict(schema)
    rest = [s for s in one_of if s != {"type": "null"}]
    if len(rest) != 1 or len(rest) == len(one_of):
        return dict(schema)
    out = {k: v for k, v in schema.items() if k != "oneOf"}
    out.update(rest[0])
    return out


def _group_parameter(group: QueryGroup, members: list[dict[str, Any]]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for member in members:
        prop = _without_null(member.get("schema") or {})
        if member.get("description") and "description" not in prop:
            prop["description"] = member["description"]
        properties[member["name"]] = prop
    branches = [{"required": [name]} for name in group.members]
    combinator = "oneOf" if group.exactly_one else "anyOf"
    return {
        "name": group.name,
        "in": "query",
        "required": True,
        "style": "form",
        "explode": True,
        "description": _with_sentence(group.description, group.sentence),
        "schema": {
            "type": "object",
            "properties": properties,
            "allOf": [{combinator: branches}],
        },
    }


def _rules_text(rules: tuple[Rule, ...]) -> str:
    lines = [f"- `{rule.field}`: {rule.text}" for rule in rules]
    return "Checked beyond this schema (a 422 whose `errors[].field` names the field):\n" + "\n".join(lines)


def documented(
    *, groups: tuple[QueryGroup, ...] = (), rules: tuple[Rule, ...] = (), links: tuple[Link, ...] = ()
) -> type[Operation]:
    """An `operation_class` for a route handler: Litestar builds the operation, this adds what it cannot say."""

    class DocumentedOperation(Operation):
        def to_schema(self) -> dict[str, Any]:
            out = super().to_schema()
            if groups:
                out["parameters"] = _grouped(out.get("parameters") or [], groups)
            if rules:
                out["description"] = _with_sentence(out.get("description"), _rules_text(rules))
                out[RULES_EXTENSION] = [{"field": rule.field, "rule": rule.text} for rule in rules]
            for link in links:
                response = out.get("responses", {}).get(str(link.status))
                if response is None:
                    raise ValueError(f"link {link.name}: the operation has no {link.status} response")
                response.setdefault("links", {})[link.name] = link.to_schema()
            return out

    return DocumentedOperation


def _grouped(parameters: list[dict[str, Any]], groups: tuple[QueryGroup, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for parameter in parameters:
        group = next((g for g in groups if parameter.get("in") == "query" and parameter["name"] in g.members), None)
        if group is None:
            out.append(parameter)
            continue
        if any(p.get("name") == group.name and p.get("in") == "query" for p in out):
            continue
        members = [p for p in parameters if p.get("in") == "query" and p["name"] in group.members]
        missing = set(group.members) - {p["name"] for p in members}
        if missing:
            raise ValueError(f"query group {group.name}: the handler declares no {', '.join(sorted(missing))}")
        out.append(_group_parameter(group, members))
    return out


async def allow_header(message: Message, scope: Scope) -> None:
    """`before_send` hook: the `Allow` of an `OPTIONS` answer, from every route at the matched path."""
    if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
        return
    app = scope.get("litestar_app")
    template = scope.get("path_template")
    if app is None or not template:
        return
    routes = [route for route in app.routes if isinstance(route, HTTPRoute) and route.path_format == template]
    methods = sorted({method for route in routes for method in route.methods})
    if methods:
        MutableScopeHeaders.from_message(message)["allow"] = ", ".join(methods)
