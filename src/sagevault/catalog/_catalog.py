"""The compiled catalog: fields by document and path, and the trees ingest walks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Union

from ._model import CatalogField, Document
from ._table import FIELDS

# A compiled catalog tree: dict key -> subtree or field; "[]" is the element of an array.
Tree = dict[str, Union["Tree", CatalogField]]


def path_tokens(path: str) -> list[str]:
    """`OrderItems[].BuyerInfo.GiftMessageText` -> OrderItems, [], BuyerInfo, GiftMessageText."""
    tokens = []
    for part in path.split("."):
        name = part.removesuffix("[]")
        if name:
            tokens.append(name)
        if name != part:
            tokens.append("[]")
    return tokens


class Catalog:
    """The field table with lookups by document and path, and the compiled trees ingest walks."""

    def __init__(self, fields: Iterable[CatalogField]) -> None:
        self._fields = list(fields)
        self._by_path: dict[tuple[Document, str], CatalogField] = {}
        self._trees: dict[Document, Tree] = {}
        for f in self._fields:
            if (f.document, f.path) in self._by_path:
                raise ValueError(f"catalog declares {f.document} {f.path} twice")
            self._by_path[(f.document, f.path)] = f
            node = self._trees.setdefault(f.document, {})
            *parents, leaf = path_tokens(f.path)
            for tok in parents:
                child = node.setdefault(tok, {})
                if isinstance(child, CatalogField):
                    raise TypeError(f"catalog field {f.path} lies under leaf field {child.path}")
                node = child
            if leaf in node:
                raise ValueError(f"catalog field {f.path} clashes with a subtree of the same name")
            node[leaf] = f

    def __iter__(self) -> Iterator[CatalogField]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def tree(self, document: Document) -> Tree:
        return self._trees[document]

    def field(self, document: Document, path: str) -> CatalogField | None:
        """The catalog field of a concrete path (`OrderItems[3].Title`) or a catalog path."""
        return self._by_path.get((document, generic_path(path)))

    def fields(self, document: Document) -> list[CatalogField]:
        return [f for f in self._fields if f.document == document]

    def describe(self) -> list[dict[str, Any]]:
        """Rows for the record of processing and for docs."""
        return [
            {
                "document": str(f.document),
                "path": f.path,
                "pii": f.pii,
                "category": f.category,
                "purposes": sorted(str(p) for p in f.purposes),
                "retention": str(f.retention),
                "search": f.search,
            }
            for f in self._fields
        ]


def generic_path(path: str) -> str:
    """`OrderItems[3].Title` -> `OrderItems[].Title`."""
    if "[" not in path:
        return path
    out, i = [], 0
    while i < len(path):
        c = path[i]
        if c == "[":
            j = path.find("]", i)
            if j < 0:  # an unclosed bracket (a caller's typo): kept as is, so it names no catalog path
                out.append(path[i:])
                break
            out.append("[]")
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


CATALOG = Catalog(FIELDS)
