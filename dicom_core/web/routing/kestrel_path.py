"""The request path as Kestrel hands it to ASP.NET Core routing, rebuilt from ASGI ``raw_path``.

It is not the ASGI ``scope["path"]``. Kestrel percent-decodes the path as UTF-8 but leaves
``%2F`` encoded (a decoded ``/`` would become a separator), leaves invalid sequences as they
were, and then removes dot segments (``PathDecoder``, ``UrlDecoder``, ``PathNormalizer``).
``scope["path"]`` has ``%2F`` decoded to ``/``, so routing on it would split a segment that
the host keeps whole.
"""

from __future__ import annotations


def _unescape(data: bytes, at: int) -> tuple[int, int]:
    """One ``%XX`` at ``at``: its byte and the index after it, or -1 and the index after
    the ``%`` when it is not two hex digits, or is ``%2F`` (kept encoded)."""
    pair = data[at + 1 : at + 3]
    if len(pair) != 2 or any(byte not in b"0123456789abcdefABCDEF" for byte in pair):
        return -1, at + 1
    value = int(pair, 16)
    if value == 0x2F:
        return -1, at + 1
    return value, at + 3


def _decode_escape(data: bytes, at: int) -> tuple[bytes | None, int]:
    """A run of escapes forming one UTF-8 character: its bytes and the index after, or None
    and how far Kestrel scanned (those bytes are then copied as they were)."""
    first, at = _unescape(data, at)
    if first < 0:
        return None, at
    if first == 0:
        raise ValueError("The path contains null characters.")
    if first <= 0x7F:
        return bytes([first]), at
    if first & 0xE0 == 0xC0:
        bits, count, least = first & 0x1F, 2, 0x80
    elif first & 0xF0 == 0xE0:
        bits, count, least = first & 0x0F, 3, 0x800
    elif first & 0xF8 == 0xF0:
        bits, count, least = first & 0x07, 4, 0x10000
    else:
        return None, at
    collected = [first]
    remaining = count - 1
    while remaining:
        if at >= len(data) or data[at] != 0x25:
            return None, at
        following, after = _unescape(data, at)
        if following < 0 or following & 0xC0 != 0x80:
            return None, at
        bits = (bits << 6) | (following & 0x3F)
        remaining -= 1
        if remaining == 1 and 0x360 <= bits <= 0x37F:
            return None, at
        if remaining == 2 and bits >= 0x110:
            return None, at
        collected.append(following)
        at = after
    if bits < least:
        return None, at
    return bytes(collected), at


def _remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 section 5.2.4 for a path starting with ``/``, as Kestrel applies it."""
    output = b""
    rest = path
    while rest:
        if rest.startswith(b"/./"):
            rest = rest[2:]
        elif rest == b"/.":
            rest = b"/"
        elif rest.startswith(b"/../") or rest == b"/..":
            rest = b"/" + rest[4:] if rest.startswith(b"/../") else b"/"
            output = output[: max(output.rfind(b"/"), 0)]
        else:
            cut = rest.find(b"/", 1)
            segment = rest if cut < 0 else rest[:cut]
            output += segment
            rest = rest[len(segment) :]
    return output or b"/"


def request_path(raw_path: bytes | str) -> str:
    """The path ASP.NET Core routes on, from the raw request path (ASGI ``raw_path``).

    Percent-escapes that form valid UTF-8 are decoded, except ``%2F``, which stays as the
    three characters ``%2F`` so it cannot split a segment; invalid escapes stay as written;
    then dot segments are removed (after decoding, so ``%2E%2E`` counts). A NUL, raw or
    escaped, raises ``ValueError`` (Kestrel answers 400), as does a byte outside ASCII.
    """
    data = raw_path.encode() if isinstance(raw_path, str) else bytes(raw_path)
    if not data.startswith(b"/"):
        raise ValueError(f"request path {data!r} must start with '/'")
    if b"\x00" in data or not data.isascii():
        raise ValueError(f"request path {data!r} holds a NUL or a byte outside ASCII")
    if b"%" not in data:
        return _remove_dot_segments(data).decode("ascii")
    decoded = bytearray()
    at = 0
    while at < len(data):
        if data[at] != 0x25:
            decoded.append(data[at])
            at += 1
            continue
        character, after = _decode_escape(data, at)
        decoded += data[at:after] if character is None else character
        at = after
    return _remove_dot_segments(bytes(decoded)).decode("utf-8")
