"""Mustache rendering with chevron's rules (the renderer behind the reference's prompts).

Supported: ``{{name}}`` (HTML-escaped), ``{{{name}}}`` and ``{{& name}}`` (raw), dotted
names and list indexes (``{{a.b}}``, ``{{items.0}}``), ``{{.}}``, sections ``{{#x}}...{{/x}}``
(lists iterate, other truthy values become the scope), inverted sections ``{{^x}}``,
comments ``{{! ...}}``, delimiter changes ``{{=<% %>=}}``, and the standalone-line rule
(a line holding only a section/comment/delimiter tag disappears). Missing names render
as the empty string. Partials render as nothing (the reference would read
``<name>.mustache`` files from the working directory: a prompt must never do that) and
lambdas are treated as plain truthy values.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["MustacheError", "render"]


class MustacheError(ValueError):
    """The template is malformed (unclosed tag, mismatched section)."""


_TAG_KINDS = {
    "!": "comment",
    "#": "section",
    "^": "inverted",
    "/": "end",
    ">": "partial",
    "=": "delimiter?",
    "{": "raw?",
    "&": "raw",
}
_INLINE = frozenset({"variable", "raw"})

Token = tuple[str, str]
Node = tuple[Any, ...]


def _tokenize(template: str) -> list[Token]:
    tokens: list[Token] = []
    standalone = True
    open_sections: list[str] = []
    left, right = "{{", "}}"
    line = 1
    while template:
        literal, found, template = template.partition(left)
        line += literal.count("\n")
        if not found:
            tokens.append(("literal", literal))
            break
        # A tag may stand alone on its line only if nothing but blanks precede it.
        if "\n" in literal or standalone:
            padding = literal.rsplit("\n", 1)[-1]
            standalone = padding.isspace() or padding == ""
        else:
            standalone = False
        tag, found, template = template.partition(right)
        if not found:
            raise MustacheError(f"unclosed tag at line {line}")
        kind = _TAG_KINDS.get(tag[:1], "variable")
        if kind != "variable":
            tag = tag[1:]
        if kind == "delimiter?":
            if not tag.endswith("="):
                raise MustacheError(f"unclosed set delimiter tag at line {line}")
            kind, tag = "delimiter", tag[:-1]
        elif kind == "raw?" and left == "{{" and right == "}}" and template.startswith("}"):
            kind, template = "raw", template[1:]
        key = tag.strip()
        if kind == "delimiter":
            parts = key.split(" ")
            left, right = parts[0], parts[-1]
        elif kind in ("section", "inverted"):
            open_sections.append(key)
        elif kind == "end":
            if not open_sections:
                raise MustacheError(f"closing tag {key!r} at line {line} was never opened")
            last = open_sections.pop()
            if key != last:
                raise MustacheError(f"closing tag {key!r} at line {line}, but {last!r} is open")
        # ... and nothing but blanks follow it.
        if standalone and kind not in _INLINE:
            rest_of_line = template.split("\n", 1)[0]
            standalone = rest_of_line.isspace() or not rest_of_line
        else:
            standalone = False
        if standalone:
            template = template.split("\n", 1)[-1]
            if kind != "partial":
                literal = literal.rstrip(" ")
        if literal:
            tokens.append(("literal", literal))
        if kind not in ("comment", "delimiter", "raw?"):
            tokens.append((kind, key))
    if open_sections:
        raise MustacheError(f"section {open_sections[-1]!r} was never closed")
    return tokens


@functools.lru_cache(maxsize=512)
def _parse(template: str) -> tuple[Node, ...]:
    """The template as a tree: text, variables, sections (with their children)."""
    stack: list[tuple[str, str, list[Node]]] = [("root", "", [])]
    for kind, key in _tokenize(template):
        if kind in ("section", "inverted"):
            stack.append((kind, key, []))
        elif kind == "end":
            section_kind, section_key, children = stack.pop()
            stack[-1][2].append((section_kind, section_key, tuple(children)))
        else:
            stack[-1][2].append((kind, key))
    return tuple(stack[0][2])


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )


_MISSING = object()


def _resolve(key: str, scope: Any) -> Any:
    for part in key.split("."):
        try:
            scope = scope[part]
        except (TypeError, AttributeError):
            if part.startswith("_"):
                raise KeyError(part) from None
            try:
                scope = getattr(scope, part)
            except (TypeError, AttributeError):
                scope = scope[int(part)]
    return scope


def _lookup(key: str, scopes: list[Any]) -> Any:
    if key == ".":
        return scopes[0]
    for scope in scopes:
        try:
            value = _resolve(key, scope)
        except (AttributeError, KeyError, IndexError, ValueError, TypeError):
            continue
        if value is False or (value == 0 and isinstance(value, int | float)):
            return value
        return value or ""
    return ""


def _render(nodes: Sequence[Node], scopes: list[Any], out: list[str]) -> None:
    if not scopes[0] and len(scopes) != 1:
        return  # a falsy scope (e.g. a 0 or "" list item) renders nothing, as in chevron
    for node in nodes:
        kind = node[0]
        if kind == "literal":
            out.append(node[1])
        elif kind in ("variable", "raw"):
            value = _lookup(node[1], scopes)
            if value is True and node[1] == "." and len(scopes) > 1:
                value = scopes[1]
            text = value if isinstance(value, str) else str(value)
            out.append(_escape(text) if kind == "variable" else text)
        elif kind == "section":
            value = _lookup(node[1], scopes)
            if isinstance(value, Sequence | Iterator) and not isinstance(value, str):
                for item in value:
                    _render(node[2], [item, *scopes], out)
            else:
                _render(node[2], [value, *scopes], out)
        elif kind == "inverted":
            _render(node[2], [not _lookup(node[1], scopes), *scopes], out)
        # partials render as nothing (see the module docstring)


def render(template: str, data: Any) -> str:
    """Render a mustache ``template`` with ``data`` as chevron's ``render`` would."""
    out: list[str] = []
    _render(_parse(template), [data], out)
    return "".join(out)
