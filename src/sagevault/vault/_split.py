"""Split a document into its clear part and its PII, guided by the compiled catalog tree.

This is the ingest hot path: it visits every key once, builds path strings only for PII, and
treats anything the catalog does not know, or a value whose shape differs from the catalog's,
as PII (fail closed).
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any

from sagevault.catalog import CatalogField, Tree, generic_path

PiiValue = tuple[str, CatalogField, Any]
UNKNOWN_PATH = "?"  # the blob entry that holds every unknown field of a record, paths included

_SAFE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def split(obj: dict[str, Any], tree: Tree, prefix: str, pii: list[PiiValue], unknown: dict[str, Any]) -> dict[str, Any]:
    clear: dict[str, Any] = {}
    for key, value in obj.items():
        node = tree.get(key)
        if node is None:
            unknown[prefix + key] = value
        elif type(node) is CatalogField:
            if value is None:
                clear[key] = None
            elif type(value) is dict or type(value) is list:
                unknown[prefix + key] = value  # a container where the catalog expects a value
            elif node.pii:
                pii.append((prefix + key, node, value))
            else:
                clear[key] = value
        elif type(value) is dict:
            clear[key] = split(value, node, prefix + key + ".", pii, unknown)  # type: ignore[arg-type]
        elif type(value) is list and "[]" in node:  # type: ignore[operator]
            clear[key] = _split_list(value, node["[]"], prefix + key, pii, unknown)  # type: ignore[index]
        elif value is None:
            clear[key] = None
        else:
            unknown[prefix + key] = value
    return clear


def _split_list(
    items: list[Any], elem: Tree | CatalogField, path: str, pii: list[PiiValue], unknown: dict[str, Any]
) -> list[Any]:
    # PII elements leave a None in the clear list so that indices keep their meaning.
    out: list[Any] = []
    for i, item in enumerate(items):
        here = f"{path}[{i}]"
        if type(elem) is CatalogField:
            if item is None:
                out.append(None)
            elif type(item) is dict or type(item) is list:
                unknown[here] = item
                out.append(None)
            elif elem.pii:
                pii.append((here, elem, item))
                out.append(None)
            else:
                out.append(item)
        elif type(item) is dict:
            out.append(split(item, elem, here + ".", pii, unknown))  # type: ignore[arg-type]
        else:
            if item is not None:
                unknown[here] = item
            out.append(None)
    return out


def describe_unknown_path(path: str) -> str:
    """A path fit for a warning: catalog-style keys are shown, anything else (which could be a
    value used as a key) is replaced by `<key>`."""
    parts = []
    for part in generic_path(path).split("."):
        name, bracket, rest = part.partition("[")
        parts.append((name if _SAFE_KEY.fullmatch(name) or not name else "<key>") + bracket + rest)
    return ".".join(parts)


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Put `value` at a concrete path (`a.b[2].c`) of a clear document, creating what is missing."""
    tokens: list[str | int] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        if name:
            tokens.append(name)
        while rest:
            idx, _, rest = rest.partition("]")
            tokens.append(int(idx))
            rest = rest.removeprefix("[")
    node: Any = doc
    for tok, nxt in pairwise(tokens):
        if isinstance(tok, int):
            while len(node) <= tok:
                node.append(None)
            if node[tok] is None:
                node[tok] = [] if isinstance(nxt, int) else {}
            node = node[tok]
        else:
            if node.get(tok) is None:
                node[tok] = [] if isinstance(nxt, int) else {}
            node = node[tok]
    last = tokens[-1]
    if isinstance(last, int):
        while len(node) <= last:
            node.append(None)
    node[last] = value
