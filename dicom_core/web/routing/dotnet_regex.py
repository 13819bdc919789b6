"""The ``regex(...)`` constraint's .NET regular expressions, translated to Python's ``re``.

The common syntax is translated (escapes, classes, groups, look-arounds, quantifiers,
``\\w \\d \\s \\b`` and ``\\p{..}`` with .NET's definitions, UTF-16 code units as .NET sees
them). Constructs that cannot be translated faithfully (balancing groups, class subtraction,
conditionals, ``\\G``, inline ``n``/``x`` options, mid-pattern ``(?i)``) raise ``ValueError``,
so a pattern is refused rather than silently matched differently. Case-insensitive matching
follows Python's case folding, which differs from .NET's invariant table only for a few
characters (the Turkish dotted and dotless i, for instance).
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

from dicom_core.web.routing.dotnet_text import _HEX, _utf16

_REGEX_CATEGORIES = frozenset(
    {"L", "M", "N", "P", "S", "Z", "C"}
    | {"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps"}
    | {"Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs"}
    | {"Co", "Cn"}
)
Ranges = tuple[tuple[int, int], ...]


@cache
def _category_ranges(categories: frozenset[str]) -> Ranges:
    """The UTF-16 code units (all a .NET regex ever sees) in the given general categories;
    a one-letter name stands for its whole group."""
    ranges: list[tuple[int, int]] = []
    for point in range(0x10000):
        category = unicodedata.category(chr(point))
        if category in categories or category[0] in categories:
            if ranges and ranges[-1][1] == point - 1:
                ranges[-1] = (ranges[-1][0], point)
            else:
                ranges.append((point, point))
    return tuple(ranges)


def _complement(ranges: Ranges) -> Ranges:
    gaps: list[tuple[int, int]] = []
    start = 0
    for low, high in ranges:
        if low > start:
            gaps.append((start, low - 1))
        start = high + 1
    if start <= 0xFFFF:
        gaps.append((start, 0xFFFF))
    return tuple(gaps)


def _word_ranges() -> Ranges:
    """.NET ``\\w``: letters, non-spacing marks, decimal digits, connector punctuation."""
    return _category_ranges(frozenset({"L", "Mn", "Nd", "Pc"}))


_SPACE_RANGES: Ranges = ((0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0))
_SPACE_RANGES += ((0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F))
_SPACE_RANGES += ((0x205F, 0x205F), (0x3000, 0x3000))


def _class_body(ranges: Ranges) -> str:
    return "".join(
        f"\\u{low:04x}" if low == high else f"\\u{low:04x}-\\u{high:04x}" for low, high in ranges
    )


def _in_class(ranges: Ranges, negate: bool = False) -> str:
    if not ranges:
        return "[\\u0000-\\uffff]" if negate else "(?!)"
    return ("[^" if negate else "[") + _class_body(ranges) + "]"


_SIMPLE_ESCAPES = {"t": 0x09, "n": 0x0A, "v": 0x0B, "f": 0x0C, "r": 0x0D, "a": 0x07, "e": 0x1B}


class _RegexTranslator:
    """Rewrites a .NET pattern as a Python pattern with the same meaning on UTF-16 code
    units, or raises ``ValueError`` for what it cannot rewrite faithfully."""

    def __init__(self, pattern: str) -> None:
        self.source = _utf16(pattern)
        self.at = 0
        self.out: list[str] = []
        self.named = False
        self.numbered_references = False

    def fail(self, why: str) -> ValueError:
        return ValueError(f"regex constraint {self.source!r}: {why}")

    def peek(self, offset: int = 0) -> str:
        index = self.at + offset
        return self.source[index] if index < len(self.source) else ""

    def translate(self) -> str:
        while self.at < len(self.source):
            self.token()
        if self.named and self.numbered_references:
            raise self.fail("numbered back-references with named groups are numbered differently")
        return "".join(self.out)

    def token(self) -> None:
        char = self.peek()
        if char == "\\":
            self.out.append(self.escape())
        elif char == "[":
            self.out.append(self.char_class())
        elif char == "(":
            self.group()
        elif char in "*+?":
            self.at += 1
            self.out.append(char)
            self.after_quantifier()
        elif char == "{":
            bound = re.match(r"\{[0-9]+(?:,[0-9]*)?\}", self.source[self.at :])
            if bound is None:
                self.at += 1
                self.out.append("\\{")
            else:
                self.at += len(bound.group(0))
                self.out.append(bound.group(0))
                self.after_quantifier()
        elif char in "^$.|)":
            self.at += 1
            self.out.append(char)
        else:
            self.at += 1
            self.out.append(_literal(ord(char)))

    def after_quantifier(self) -> None:
        """A lazy ``?`` may follow; any other quantifier is .NET's "nested quantifier"
        error (Python would read ``*+`` as possessive instead)."""
        if self.peek() == "?":
            self.at += 1
            self.out.append("?")
        following = self.peek()
        if following in ("*", "+", "?") or (
            following == "{" and re.match(r"\{[0-9]+(?:,[0-9]*)?\}", self.source[self.at :])
        ):
            raise self.fail("nested quantifier")

    def group(self) -> None:
        rest = self.source[self.at :]
        if not rest.startswith("(?"):
            self.at += 1
            self.out.append("(")
            return
        for opener in ("(?:", "(?=", "(?!", "(?>", "(?<=", "(?<!"):
            if rest.startswith(opener):
                self.at += len(opener)
                self.out.append(opener)
                return
        if rest.startswith("(?#"):
            end = rest.find(")")
            if end < 0:
                raise self.fail("unterminated (?#...) comment")
            self.at += end + 1
            return
        named = re.match(r"\(\?(?:<([^>]*)>|'([^']*)')", rest)
        if named is not None:
            name = named.group(1) if named.group(1) is not None else named.group(2)
            if "-" in name:
                raise self.fail("balancing groups have no Python equivalent")
            if not name.isidentifier():
                raise self.fail(f"group name {name!r} cannot be carried over")
            self.named = True
            self.at += len(named.group(0))
            self.out.append(f"(?P<{name}>")
            return
        options = re.match(r"\(\?([imnsx]*)(?:-([imnsx]*))?([:)])", rest)
        if options is None:
            raise self.fail(f"unsupported group construct at {rest[:6]!r}")
        on, off, closer = options.group(1), options.group(2) or "", options.group(3)
        if set(on + off) & set("nx"):
            raise self.fail("the n and x inline options have no faithful Python equivalent")
        if closer == ")" and (self.out or off):
            raise self.fail("inline options are only supported at the start, or as (?i:...)")
        self.at += len(options.group(0))
        self.out.append(f"(?{on}-{off}:" if off else f"(?{on}{closer}")

    def escape(self) -> str:
        """An escape outside a character class."""
        letter = self.peek(1)
        if letter in ("w", "W", "s", "S", "d", "D", "p", "P"):
            ranges, negate = self.class_escape()
            return _in_class(ranges, negate)
        if letter in ("b", "B"):
            self.at += 2
            word = _class_body(_word_ranges()) + "\\u200c\\u200d"
            inside, outside = f"(?<=[{word}])", f"(?<![{word}])"
            ahead, not_ahead = f"(?=[{word}])", f"(?![{word}])"
            if letter == "b":
                return f"(?:{inside}{not_ahead}|{outside}{ahead})"
            return f"(?:{inside}{ahead}|{outside}{not_ahead})"
        if letter == "A":
            self.at += 2
            return "\\A"
        if letter == "z":
            self.at += 2
            return "\\Z"
        if letter == "Z":
            self.at += 2
            return "(?=\\n?\\Z)"
        if letter == "k":
            reference = re.match(r"\\k(?:<([^>]*)>|'([^']*)')", self.source[self.at :])
            if reference is None:
                raise self.fail("malformed \\k reference")
            self.at += len(reference.group(0))
            name = reference.group(1) if reference.group(1) is not None else reference.group(2)
            if not name.isidentifier():
                raise self.fail(f"reference to group {name!r} cannot be carried over")
            return f"(?P={name})"
        if letter in "123456789" and letter:
            if self.peek(2).isdigit():
                raise self.fail("multi-digit back-references are ambiguous with octal")
            self.at += 2
            self.numbered_references = True
            return f"(?:\\{letter})"
        return _literal(self.char_escape())

    def class_escape(self) -> tuple[Ranges, bool]:
        """``\\w \\d \\s \\p{X}`` and their negations, as code-unit ranges."""
        letter = self.peek(1)
        self.at += 2
        negate = letter.isupper()
        kind = letter.lower()
        if kind == "w":
            return _word_ranges(), negate
        if kind == "d":
            return _category_ranges(frozenset({"Nd"})), negate
        if kind == "s":
            return _SPACE_RANGES, negate
        named = re.match(r"\{([A-Za-z]+)\}", self.source[self.at :])
        if named is None or named.group(1) not in _REGEX_CATEGORIES:
            raise self.fail("only general categories such as \\p{Lu} are supported")
        self.at += len(named.group(0))
        return _category_ranges(frozenset({named.group(1)})), negate

    def char_escape(self) -> int:
        """An escape standing for one code unit; anything else .NET would refuse."""
        letter = self.peek(1)
        if letter == "":
            raise self.fail("illegal \\ at end of pattern")
        if letter in _SIMPLE_ESCAPES:
            self.at += 2
            return _SIMPLE_ESCAPES[letter]
        if letter in ("x", "u"):
            width = 2 if letter == "x" else 4
            digits = self.source[self.at + 2 : self.at + 2 + width]
            if len(digits) != width or any(char not in _HEX for char in digits):
                raise self.fail(f"\\{letter} needs exactly {width} hex digits")
            self.at += 2 + width
            return int(digits, 16)
        if letter == "c":
            control = self.peek(2)
            if not (control.isascii() and control.isalpha()):
                raise self.fail("\\c needs a letter")
            self.at += 3
            return ord(control.upper()) - 0x40
        if letter == "0":
            octal = re.match(r"0[0-7]{0,2}", self.source[self.at + 1 :])
            assert octal is not None
            self.at += 1 + len(octal.group(0))
            return int(octal.group(0), 8)
        if _is_dotnet_word(letter):
            raise self.fail(f"unrecognized escape \\{letter}")
        self.at += 2
        return ord(letter)

    def char_class(self) -> str:
        """``[...]``: ranges and escapes, emitted as escaped code units so Python reads no
        set operation into them."""
        self.at += 1
        negate = self.peek() == "^"
        if negate:
            self.at += 1
        pieces: list[str] = []
        first = True
        while True:
            char = self.peek()
            if char == "":
                raise self.fail("unterminated [] set")
            if char == "]" and not first:
                self.at += 1
                break
            if char == "-" and self.peek(1) == "[":
                raise self.fail("character class subtraction has no Python equivalent")
            first = False
            atom = self.class_atom()
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                if self.peek(1) == "[":
                    raise self.fail("character class subtraction has no Python equivalent")
                if isinstance(atom, tuple):
                    raise self.fail("a class escape cannot start a range")
                self.at += 1
                high = self.class_atom()
                if isinstance(high, tuple):
                    raise self.fail("a class escape cannot end a range")
                if high < atom:
                    raise self.fail("range in reverse order")
                pieces.append(_class_body(((atom, high),)))
            elif isinstance(atom, tuple):
                ranges, negated = atom
                pieces.append(_class_body(_complement(ranges) if negated else ranges))
            else:
                pieces.append(_class_body(((atom, atom),)))
        body = "".join(pieces)
        if not body:
            return "[\\u0000-\\uffff]" if negate else "(?!)"
        return ("[^" if negate else "[") + body + "]"

    def class_atom(self) -> int | tuple[Ranges, bool]:
        char = self.peek()
        if char == "[" and self.peek(1) == ":":
            raise self.fail("[: inside a class has a .NET-specific meaning")
        if char != "\\":
            self.at += 1
            return ord(char)
        letter = self.peek(1)
        if letter in ("w", "W", "s", "S", "d", "D", "p", "P"):
            return self.class_escape()
        if letter == "b":
            self.at += 2
            return 0x08
        if letter in "123456789" and letter:
            raise self.fail("back-references inside a class are not supported")
        return self.char_escape()


def _is_dotnet_word(char: str) -> bool:
    """Whether .NET's regex parser reads ``\\char`` as an unknown escape (an error) rather
    than the character: the word characters of ``\\b`` (``\\w`` plus the two joiners)."""
    category = unicodedata.category(char)
    return category[0] == "L" or category in ("Mn", "Nd", "Pc") or char in "\u200c\u200d"


def _literal(point: int) -> str:
    """One code unit as a pattern that matches exactly it."""
    char = chr(point)
    if char.isascii() and (char.isalnum() or char == "_"):
        return char
    return f"\\u{point:04x}"


@cache
def _compile_dotnet_regex(pattern: str) -> re.Pattern[str]:
    """A .NET pattern as an equivalent compiled Python pattern (case-insensitive, as
    ``RegexRouteConstraint`` always is), or ``ValueError`` naming what .NET syntax failed."""
    translated = _RegexTranslator(pattern).translate()
    try:
        return re.compile(translated, re.IGNORECASE)
    except re.error as error:
        raise ValueError(f"regex constraint {pattern!r} is not valid: {error}") from error
