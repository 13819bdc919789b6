"""How validation messages name attributes and quote values.

Every message ends up in an ErrorComment of the store response, one line per attribute, so
values are quoted escaped and truncated, and attributes are named "(gggg,eeee) Keyword".
"""

from __future__ import annotations

from typing import Any

from pydicom.datadict import keyword_for_tag

# How much of an offending value a message quotes, so one huge value cannot bloat a response.
_SHOWN_CHARS = 64
_SHOWN_BYTES = 32


def show(value: str) -> str:
    """Quote a value for a one-line message: escaped, double-quoted, truncated when long.

    Escaping keeps control characters, quotes and line breaks from splitting or confusing the
    ErrorComment text; truncation keeps a multi-kilobyte value from dominating the response.
    """
    head = value[:_SHOWN_CHARS]
    pieces: list[str] = []
    for char in head:
        if char in '"\\':
            pieces.append("\\" + char)
        elif char.isprintable():
            pieces.append(char)
        elif ord(char) < 0x100:
            pieces.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            pieces.append(f"\\u{ord(char):04x}")
        else:
            pieces.append(f"\\U{ord(char):08x}")
    suffix = "..." if len(value) > _SHOWN_CHARS else ""
    return '"' + "".join(pieces) + '"' + suffix


def show_bytes(value: bytes) -> str:
    """Render undecodable bytes; ``repr`` of bytes is ASCII-only and hence always one line."""
    suffix = "..." if len(value) > _SHOWN_BYTES else ""
    return repr(value[:_SHOWN_BYTES]) + suffix


def tag_keyword(tag: int) -> str:
    """The dictionary keyword, or "" for private tags whose meaning depends on their creator."""
    if (tag >> 16) % 2 == 1:
        return ""
    try:
        return keyword_for_tag(tag)
    except Exception:
        return ""


def tag_label(tag: int) -> str:
    """Render "(gggg,eeee) Keyword", the way every message names the attribute it is about."""
    text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    keyword = tag_keyword(tag)
    return f"{text} {keyword}" if keyword else text


def json_type(value: Any) -> str:
    """How a JSON value's type reads in a message ("a JSON array", "null")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, int | float):
        return "a JSON number"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, list):
        return "a JSON array"
    return "a JSON object"


#: How much of a library's error message a client's message quotes.
_BRIEF_CHARS = 200


def brief(exc: BaseException) -> str:
    """A library's exception as one short line for a client's message: its first line, cut
    short, never the traceback some carry in their text (pydicom's "With tag ... got
    exception" embeds one, which reached clients with the server's file paths in it)."""
    text = str(exc).split("Traceback (most recent call last)", 1)[0]
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = line or type(exc).__name__
    return line if len(line) <= _BRIEF_CHARS else line[:_BRIEF_CHARS] + "..."
