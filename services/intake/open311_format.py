"""GeoReport v2 documents in XML (required by the spec) and JSON (its Spark-convention mirror).

A document is plain data: a dict becomes an element per key, a list becomes one element per
item named by ``ITEM_TAGS``, ``None`` is left out in both formats. The XML is built with
ElementTree, so text from citizens is escaped, never spliced into markup.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal

Format = Literal["xml", "json"]
FORMATS: tuple[Format, ...] = ("xml", "json")
MEDIA_TYPES: dict[Format, str] = {
    "xml": "text/xml; charset=utf-8",
    "json": "application/json; charset=utf-8",
}
# What the discovery document announces, in the spec's spelling.
ANNOUNCED_FORMATS = ("text/xml", "application/json")

# The element each list's items are wrapped in, by the list's own element name.
ITEM_TAGS = {
    "services": "service",
    "attributes": "attribute",
    "values": "value",
    "service_requests": "request",
    "errors": "error",
    "endpoints": "endpoint",
    "formats": "format",
}

Document = Mapping[str, object] | Sequence[Mapping[str, object]]


def w3c(moment: datetime) -> str:
    """UTC with a ``Z`` and whole seconds: what GeoReport clients parse without surprises."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render(fmt: Format, root: str, document: Document) -> bytes:
    """``root`` names the XML root element; JSON has no root, a list stays a bare array."""
    if fmt == "json":
        return json.dumps(_without_nulls(document), ensure_ascii=False).encode()
    # The declaration written out: the spec asks for it, with double quotes, before the root.
    body = ET.tostring(_element(root, document), encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}'.encode()


def _without_nulls(value: object) -> object:
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_nulls(v) for v in value]
    return value


def _element(tag: str, value: object) -> ET.Element:
    element = ET.Element(tag)
    if isinstance(value, Mapping):
        for key, child in value.items():
            if child is not None:
                element.append(_element(key, child))
    elif isinstance(value, list | tuple):
        item_tag = ITEM_TAGS[tag]
        for child in value:
            element.append(_element(item_tag, child))
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    else:
        element.text = str(value)
    return element
