""".NET string semantics: how the host's routing compares, measures and trims text.

ASP.NET Core compares route literals, parameter names, constraint keys and HTTP methods with
``StringComparison.OrdinalIgnoreCase``, measures lengths and runs regular expressions on UTF-16
code units, and trims with ``char.IsWhiteSpace``. Python's ``str.upper``, ``len`` and
``str.strip`` each differ from these at the edges, so every module of this package takes them
from here, and each has one definition. The hex digits that .NET's Guid parser and its regex
escapes share live here too.
"""

from __future__ import annotations

from functools import cache

# --- Ordinal, case-insensitive comparison (System.Globalization.OrdinalCasing) -----------

# Code points that .NET's ordinal casing maps outside the BMP: the supplementary-plane
# scripts OrdinalCasing.ToUpperSurrogate knows (lower range start, end, distance to upper).
_SUPPLEMENTARY_UPPER = (
    (0x10428, 0x1044F, 0x28),  # Deseret
    (0x104D8, 0x104FB, 0x28),  # Osage
    (0x10CC0, 0x10CF2, 0x40),  # Old Hungarian
    (0x118C0, 0x118DF, 0x20),  # Warang Citi
    (0x16E60, 0x16E7F, 0x20),  # Medefaidrin
    (0x1E922, 0x1E943, 0x22),  # Adlam
)


@cache
def _ordinal_upper_char(char: str) -> str:
    """One code point upper-cased the way ``OrdinalIgnoreCase`` compares it.

    .NET fills its table from ICU's ``u_toupper`` (the one-to-one "simple" mapping, not the
    full one that turns ``ß`` into ``SS``) and keeps U+0131 and U+017F unmapped. Python's
    ``str.upper`` is the full mapping; where that is longer than one character the simple
    mapping is the title-case form when that is a single character, else the character
    itself (``ß`` stays ``ß``, ``ᾳ`` becomes ``ᾼ``).
    """
    point = ord(char)
    if point in (0x131, 0x17F) or 0xD800 <= point <= 0xDFFF:
        return char
    if point > 0xFFFF:
        for low, high, distance in _SUPPLEMENTARY_UPPER:
            if low <= point <= high:
                return chr(point - distance)
        return char
    upper = char.upper()
    if len(upper) == 1:
        return upper
    title = char.title()
    return title if len(title) == 1 else char


def _fold(text: str) -> str:
    """``text`` with every code point ordinal-upper-cased; equal folds mean the strings are
    equal under ``StringComparison.OrdinalIgnoreCase``, and positions are preserved."""
    if text.isascii():
        # Every request's path is folded segment by segment against each route: the ASCII
        # case, where both mappings touch only a-z, must not go character by character.
        return text.upper()
    return "".join(_ordinal_upper_char(char) for char in text)


def _utf16(text: str) -> str:
    """``text`` as the UTF-16 code units .NET strings hold (a supplementary character
    becomes two surrogates), so lengths and regular expressions see what .NET sees."""
    if text.isascii() or max(text) <= "\uffff":
        return text
    data = text.encode("utf-16-le", "surrogatepass")
    return "".join(chr(int.from_bytes(data[i : i + 2], "little")) for i in range(0, len(data), 2))


# --- .NET character classes ----------------------------------------------------------

# char.IsWhiteSpace, which Trim() uses: \t-\r, space, U+0085, U+00A0 and the separators.
_DOTNET_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _dotnet_trim(text: str) -> str:
    """``string.Trim()``: strips ``char.IsWhiteSpace`` characters, which (unlike Python's
    ``str.isspace``) do not include U+001C to U+001F."""
    start, end = 0, len(text)
    while start < end and text[start] in _DOTNET_WHITESPACE:
        start += 1
    while end > start and text[end - 1] in _DOTNET_WHITESPACE:
        end -= 1
    return text[start:end]


# Hex digits, as .NET's Guid parser and regex escapes (\x, \u) accept them.
_HEX = frozenset("0123456789abcdefABCDEF")
