"""The fast DICOM JSON converter against pydicom's own ``DataElement.to_json_dict``.

The reference below is the converter the module used to be (pydicom per element, same
filtering), with the module's deliberate departures applied on top, each marked with the
PS3.18 rule it follows. Every pydicom test file is compared, read fresh (raw elements, the
fast path), fully converted by pydicom beforehand (the DataElement path), and half and half;
generated values of every VR are compared too.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydicom import config, dcmread
from pydicom._dicom_dict import DicomDictionary
from pydicom.charset import decode_bytes, default_encoding
from pydicom.data import get_charset_files, get_testdata_file, get_testdata_files
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.hooks import raw_element_vr
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag
from pydicom.uid import UID, ExplicitVRLittleEndian
from pydicom.valuerep import TEXT_VR_DELIMS

from dicom_core.domain.dicomjson import BINARY_VRS, dataset_json, dataset_json_bytes

# ---------------------------------------------------------------------------------------------
# Reference converter

JSON_VRS = frozenset(
    {
        "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH",
        "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UR", "US", "UT", "UV",
    }
)  # fmt: skip
INT_VRS = frozenset({"IS", "SL", "SS", "SV", "UL", "US", "UV"})
PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


def _element_vr(ds: Dataset, tag: BaseTag) -> str | None:
    """The VR pydicom gives a raw element (used when converting its value raised)."""
    raw = ds._dict[tag]
    if isinstance(raw, DataElement):
        return str(raw.VR)
    found: dict[str, Any] = {}
    raw_element_vr(raw, found, ds=ds)
    return found["VR"]  # type: ignore[no-any-return]


def _numbers_with_empty_values(elem: DataElement) -> list[Any] | None:
    """F.2.5: IS/DS/PN values where pydicom failed only because a value is empty."""
    values = list(elem.value) if elem.VM > 1 else [elem.value]
    try:
        if elem.VR == "PN":
            return [dict(zip(PN_GROUPS, name.components, strict=False)) for name in values]
        number = int if elem.VR == "IS" else float
        return [
            None if item is None or (isinstance(item, str) and not item.strip()) else number(item)
            for item in values
        ]
    except Exception:
        return None


def _reference_element(elem: DataElement) -> dict[str, Any] | None:
    vr = elem.VR
    if vr in BINARY_VRS:
        return None
    if vr == "SQ":
        if not all(isinstance(item, Dataset) for item in elem.value or []):
            return {"vr": "SQ"}  # pydicom could not parse the items and kept text instead
        items = [reference_dataset_json(item) for item in elem.value or []]
        return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
    if vr not in JSON_VRS:
        return None  # F.2.3: a VR still ambiguous ("US or SS or OW") is no JSON vr
    try:
        obj = elem.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=1 << 62)
    except Exception:
        obj = {"vr": vr}
    if "Value" not in obj and vr in ("IS", "DS", "PN") and not elem.is_empty:
        values = _numbers_with_empty_values(elem)
        if values is not None:
            obj["Value"] = values
    if "Value" not in obj:
        return obj
    values = obj["Value"]
    if vr == "PN":
        # F.2.2: only non-empty component groups; F.2.5: an empty name is null.
        values = [{k: t for k, t in (v or {}).items() if t} or None for v in values]
    elif vr in INT_VRS:
        if any(v is not None and not -(2**63) <= v < 2**64 for v in values):
            return {"vr": vr}  # beyond what a JSON number can carry here
    elif vr not in ("AT", "DS", "FL", "FD"):
        values = [None if v == "" else v for v in values]  # F.2.5: empty value is null
    if len(values) == 1 and values[0] is None:
        return {"vr": vr}
    return {"vr": vr, "Value": values}


# Text VRs whose trailing NULs the module keeps ("Retrieved metadata includes the null
# character"): after the whole value, or after each value for LO, SH and UC. A value made of
# padding only (NULs and spaces, once decoded) is still an empty value.
NUL_KEPT_WHOLE = frozenset({"AS", "CS", "DA", "DT", "TM", "PN", "LT", "ST", "UT"})
NUL_KEPT_EACH = frozenset({"LO", "SH", "UC"})
# Text VRs read through the declared character set.
CHARSET_DECODED = frozenset({"PN", "LO", "SH", "UC", "LT", "ST", "UT"})
# Characters pydicom does not strip, one of which stands in for every NUL: the first that the
# value itself does not contain, so a real control character is never taken for a NUL.
NUL_MARKS = [chr(code) for code in range(0x01, 0x20) if chr(code) not in "\t\n\f\r\x1b"]


def _is_padding(text: str) -> bool:
    return not text.strip("\x00 ")


def _decoded_text(ds: Dataset, vr: str, value: bytes) -> str:
    """The text of a raw value as pydicom decodes it, escape sequences and all.

    Which ISO 2022 escape sequences decode to nothing depends on the character set: pydicom
    drops those of the declared code extensions (and ESC ( B) and keeps any other as text.
    So whether a NUL ends the text is decided after decoding, by pydicom, never by looking
    at the bytes.
    """
    if vr not in CHARSET_DECODED:
        return value.decode(default_encoding)
    charset = ds.original_character_set or ds._character_set  # as Dataset.__getitem__ does
    encodings = [charset] if isinstance(charset, str) else list(charset)
    return decode_bytes(value, encodings, TEXT_VR_DELIMS)


def _keep_nuls_in_raw(ds: Dataset, tag: BaseTag) -> str | None:
    """Make pydicom keep the NULs of a raw text element; the mark that stands in for them.

    Every NUL is replaced by the mark, so pydicom strips only the spaces after the last one,
    as the module does; the mark survives decoding in every codec tested here (an ASCII
    control character, never part of a multibyte character). A value that is padding only
    once decoded is left to pydicom (for PN, which strips the bytes before decoding, that
    need not be an empty value).
    """
    raw = ds._dict[tag]
    if not isinstance(raw, RawDataElement) or not isinstance(raw.value, bytes):
        return None
    if b"\x00" not in raw.value:
        return None
    vr = _element_vr(ds, tag)
    if vr not in NUL_KEPT_WHOLE and vr not in NUL_KEPT_EACH:
        return None
    if vr in NUL_KEPT_WHOLE and _is_padding(_decoded_text(ds, vr, raw.value)):
        return None  # no NUL follows text: pydicom's own reading
    mark = next((m for m in NUL_MARKS if m.encode() not in raw.value), None)
    if mark is None:
        return None  # every candidate occurs in the value: leave it to pydicom
    marked = raw.value.replace(b"\x00", mark.encode())
    ds._dict[tag] = raw._replace(value=marked, length=len(marked))
    return mark


def _unmark(obj: Any, mark: str) -> Any:
    if isinstance(obj, str):
        return obj.replace(mark, "\x00")
    if isinstance(obj, list):
        return [_unmark(item, mark) for item in obj]
    if isinstance(obj, dict):
        return {key: _unmark(value, mark) for key, value in obj.items()}
    return obj


def _unmark_element(obj: dict[str, Any], mark: str) -> dict[str, Any]:
    """The NULs back in a converted element; of LO, SH and UC, values of padding only empty."""
    obj = _unmark(obj, mark)
    if obj["vr"] in NUL_KEPT_EACH and "Value" in obj:
        values = [None if v is None or _is_padding(v) else v for v in obj["Value"]]
        obj = {"vr": obj["vr"]} if values == [None] else {"vr": obj["vr"], "Value": values}
    return obj


def reference_dataset_json(ds: Dataset) -> dict[str, Any]:
    """pydicom's ``to_json_dict`` per element, same filtering as the module."""
    out: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tag in sorted(ds._dict):
            if tag.group == 0x0002 or tag.element == 0:
                continue
            marked = _keep_nuls_in_raw(ds, tag)
            try:
                elem = ds[tag]
            except Exception:
                # pydicom raised here (so did the old converter); now the element is kept
                # with its VR when that is one JSON can carry.
                vr = _element_vr(ds, tag)
                if vr in JSON_VRS:
                    out[f"{tag:08X}"] = {"vr": vr}
                continue
            converted = _reference_element(elem)
            if converted is not None:
                out[f"{tag:08X}"] = _unmark_element(converted, marked) if marked else converted
    return out


def same(a: Any, b: Any) -> bool:
    """Equality that also holds for NaN, and tells 1 from 1.0 and True from 1."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if type(a) is not type(b) and not (isinstance(a, str) and isinstance(b, str)):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def assert_matches_reference(make: Any) -> dict[str, Any]:
    """Convert two independent copies (pydicom converts in place) and compare."""
    fast, ref = make(), make()
    got = dataset_json(fast)
    want = reference_dataset_json(ref)
    assert same(got, want), _first_difference(got, want)
    assert dataset_json_bytes(make()) == orjson.dumps(want)
    return got


def _first_difference(got: Any, want: Any, path: str = "") -> str:
    if isinstance(got, dict) and isinstance(want, dict):
        for key in sorted(set(got) | set(want)):
            if key not in got or key not in want or not same(got[key], want[key]):
                return _first_difference(got.get(key), want.get(key), f"{path}/{key}")
        return f"{path}: key order {list(got)} != {list(want)}"
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        for i, (x, y) in enumerate(zip(got, want, strict=True)):
            if not same(x, y):
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path}: got {got!r}, want {want!r}"


# ---------------------------------------------------------------------------------------------
# Every pydicom test file

SKIPPED_PREFIXES = ("HTJ2K", "JLSL_", "JLSN_", "liver_nonbyte_aligned", "parametric_map_")


def _corpus() -> list[Path]:
    files = [Path(p) for p in [*get_testdata_files(), *get_charset_files()]]
    return sorted(
        {p for p in files if p.is_file() and not p.name.startswith(SKIPPED_PREFIXES)},
        key=lambda p: (p.name, str(p)),
    )


def _readable(path: Path) -> bytes | None:
    data = path.read_bytes()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcmread(io.BytesIO(data), stop_before_pixels=True)
    except Exception:
        return None
    return data


CORPUS = [(p, data) for p in _corpus() if (data := _readable(p)) is not None]


def _testdata(name: str) -> bytes:
    path = get_testdata_file(name)
    assert isinstance(path, str), name
    return Path(path).read_bytes()


def _read(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(io.BytesIO(data), stop_before_pixels=True)


def _convert_all(ds: Dataset, every: int = 1) -> Dataset:
    """Let pydicom convert every ``every``-th element (at every depth) beforehand."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, tag in enumerate(sorted(ds._dict)):
            try:
                elem = ds[tag] if i % every == 0 or ds._dict[tag].VR == "SQ" else None
            except Exception:
                continue
            if elem is not None and elem.VR == "SQ":
                for item in elem.value:
                    _convert_all(item, every)
    return ds


def test_corpus_is_large() -> None:
    assert len(CORPUS) > 200


@pytest.mark.parametrize(("path", "data"), CORPUS, ids=[p.name for p, _ in CORPUS])
def test_corpus_file_matches_reference(path: Path, data: bytes) -> None:
    assert_matches_reference(lambda: _read(data))


@pytest.mark.parametrize(("path", "data"), CORPUS, ids=[p.name for p, _ in CORPUS])
def test_corpus_file_converted_beforehand_matches_reference(path: Path, data: bytes) -> None:
    assert_matches_reference(lambda: _convert_all(_read(data)))
    assert_matches_reference(lambda: _convert_all(_read(data), every=3))


def test_conversion_is_repeatable_and_sorted() -> None:
    ds = _read(_testdata("CT_small.dcm"))
    first = dataset_json_bytes(ds)
    assert dataset_json_bytes(ds) == first  # second call: elements now converted by pydicom
    keys = list(orjson.loads(first))
    assert keys == sorted(keys)
    assert not any(k.startswith("0002") or k.endswith("0000") for k in keys)


# ---------------------------------------------------------------------------------------------
# Datasets built from raw bytes


def raw_dataset(
    elements: Sequence[tuple[int, str | None, bytes]],
    *,
    little: bool = True,
    charset: str | list[str] | None = None,
) -> Dataset:
    """A dataset as ``dcmread`` leaves it: raw elements (implicit VR where the VR is None)."""
    ds = Dataset()
    offset = 0
    for tag, vr, value in elements:
        ds._dict[BaseTag(tag)] = RawDataElement(
            BaseTag(tag), vr, len(value), value, offset, vr is None, little
        )
        offset += 8 + len(value)
    ds.set_original_encoding(False, little, charset)
    return ds


def check(elements: Sequence[tuple[int, str | None, bytes]], **kwargs: Any) -> dict[str, Any]:
    return assert_matches_reference(lambda: raw_dataset(elements, **kwargs))


def test_person_name_with_three_groups() -> None:
    value = "Yamada^Tarou=山田^太郎=やまだ^たろう".encode()
    got = check([(0x00080005, "CS", b"ISO_IR 192"), (0x00100010, "PN", value)])
    assert got["00100010"] == {
        "vr": "PN",
        "Value": [
            {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
        ],
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"Doe^John", [{"Alphabetic": "Doe^John"}]),
        (b"Doe^John=", [{"Alphabetic": "Doe^John"}]),
        (b"Doe^John \x00", [{"Alphabetic": "Doe^John \x00"}]),  # a NUL is kept
        (b"A\\B^C ", [{"Alphabetic": "A"}, {"Alphabetic": "B^C"}]),
        # F.2.2: pydicom wrote "Alphabetic": "" here.
        (b"=Ideo", [{"Ideographic": "Ideo"}]),
        (b"==Phon", [{"Phonetic": "Phon"}]),
        (b"A==C=D", [{"Alphabetic": "A", "Phonetic": "C"}]),
        # F.2.5: pydicom failed on the empty value and kept no value at all.
        (b"A\\\\B", [{"Alphabetic": "A"}, None, {"Alphabetic": "B"}]),
        (b"A\\==", [{"Alphabetic": "A"}, None]),
        (b"==", None),
        (b"  ", None),
    ],
)
def test_person_name_groups(raw: bytes, expected: list[Any] | None) -> None:
    got = check([(0x00100010, "PN", raw)])["00100010"]
    assert got == ({"vr": "PN", "Value": expected} if expected else {"vr": "PN"})


@pytest.mark.parametrize(
    ("vr", "raw", "expected"),
    [
        ("IS", b"1\\-2\\+3 ", [1, -2, 3]),
        ("IS", b" 5 ", [5]),
        ("IS", b"-0", [0]),
        ("IS", b"1.0", [1]),
        ("IS", b"1e3", [1000]),
        ("IS", b"1.5", [1]),  # pydicom keeps 1.5 as ISfloat and int() truncates it
        ("IS", b"12345678901234567891", [12345678901234567168]),  # pydicom goes via float
        ("IS", b"abc", None),
        ("IS", b"0x10", None),
        ("IS", b"inf", None),  # pydicom raised OverflowError
        ("IS", b"1" * 30, None),  # outside JSON's integer range
        ("IS", b"5\x00\\6", [5, 6]),  # fails as IS, pydicom's SH retry reads it
        ("IS", b"1\\\\3", [1, None, 3]),  # F.2.5; pydicom dropped all values
        ("IS", b"1\\ \\3", [1, None, 3]),
        ("IS", b"\\", [None, None]),
        ("IS", b"  ", None),
        # The SH retry drops ESC ( B and leaves a blank value; found by Hypothesis.
        ("IS", b"\t\x1b(B\\", [None, None]),
        ("IS", b"7\\\t\x1b(B", [7, None]),
        ("DS", b"1.5\\-2.25e1\\3 ", [1.5, -22.5, 3.0]),
        ("DS", b"1.0", [1.0]),
        ("DS", b"-0", [-0.0]),
        ("DS", b" 5 ", [5.0]),
        ("DS", b"5\x00", [5.0]),
        ("DS", b"1.5.3", None),
        ("DS", b"abc\\1", None),
        ("DS", b"1.5\x00\\2", [1.5, 2.0]),  # SH retry
        ("DS", b"1\\\\3", [1.0, None, 3.0]),  # F.2.5
        ("DS", b"\t\x1b(B\\", [None, None]),
        ("DS", b"", None),
    ],
)
def test_numeric_strings(vr: str, raw: bytes, expected: list[Any] | None) -> None:
    got = check([(0x00181050 if vr == "DS" else 0x00200013, vr, raw)])
    value = next(iter(got.values()))
    assert value == ({"vr": vr, "Value": expected} if expected is not None else {"vr": vr})
    if expected:
        assert [type(v) for v in value["Value"]] == [type(v) for v in expected]


def test_nan_and_infinity_decimal_strings_become_null_in_bytes() -> None:
    ds = raw_dataset([(0x00181050, "DS", b"nan\\inf\\-inf\\1")])
    check([(0x00181050, "DS", b"nan\\inf\\-inf\\1")])
    assert orjson.loads(dataset_json_bytes(ds))["00181050"]["Value"] == [None, None, None, 1.0]


def test_attribute_tags() -> None:
    got = check([(0x00209165, "AT", b"\x28\x00\x10\x00\x20\x00\x32\x00")])
    assert got["00209165"] == {"vr": "AT", "Value": ["00280010", "00200032"]}
    got = check([(0x00209165, "AT", b"\x00\x28\x00\x10")], little=False)
    assert got["00209165"] == {"vr": "AT", "Value": ["00280010"]}
    for length in range(1, 14):
        check([(0x00209165, "AT", bytes(range(length)))])


def test_binary_numbers() -> None:
    got = check(
        [
            (0x00280010, "US", b"\x00\x02"),
            (0x00280011, "US", b"\x00\x02\x01\x00"),
            (0x00189219, "SS", b"\xff\xff"),
            (0x00186020, "SL", b"\xfe\xff\xff\xff"),
            (0x00189327, "FD", b"\x00\x00\x00\x00\x00\x00\xf8\x3f"),
            (0x00189328, "FL", b"\x00\x00\xc0\x3f\x9a\x99\x99\x3e"),
            (0x00720078, "UL", b"\xff\xff\xff\xff"),
            (0x0040A172, "UV", b"\xff" * 8),
            (0x0040A171, "SV", b"\xff" * 8),
            (0x00280012, "US", b"\x01\x00\x02"),  # length not a multiple: pydicom raised
        ]
    )
    assert got["00280010"] == {"vr": "US", "Value": [512]}
    assert got["00280011"] == {"vr": "US", "Value": [512, 1]}
    assert got["00189219"]["Value"] == [-1]
    assert got["00186020"]["Value"] == [-2]
    assert got["00189327"]["Value"] == [1.5]
    assert got["00189328"]["Value"] == [1.5, 0.30000001192092896]
    assert got["00720078"]["Value"] == [2**32 - 1]
    assert got["0040A172"]["Value"] == [2**64 - 1]
    assert got["0040A171"]["Value"] == [-1]
    assert got["00280012"] == {"vr": "US"}
    big = check([(0x00280010, "US", b"\x02\x00")], little=False)
    assert big["00280010"]["Value"] == [512]


@pytest.mark.parametrize(
    ("vr", "raw", "expected"),
    [
        ("CS", b"ORIGINAL\\PRIMARY\\AXIAL ", ["ORIGINAL", "PRIMARY", "AXIAL"]),
        ("CS", b" LEADING ", [" LEADING"]),
        ("CS", b"A\\\\B", ["A", None, "B"]),  # F.2.5; pydicom wrote ""
        ("CS", b"\\", [None, None]),
        ("UI", b"1.2.840.10008.1.2\x00", ["1.2.840.10008.1.2"]),
        ("UI", b"1.2\\3.4\x00", ["1.2", "3.4"]),
        ("AE", b" STORESCP \\ X", ["STORESCP", "X"]),
        ("DA", b"20240102", ["20240102"]),
        ("TM", b"101010.5 ", ["101010.5"]),
        ("DT", b"20240102101010\x00", ["20240102101010\x00"]),
        ("LO", b"One \\Two\x00", ["One", "Two\x00"]),
        ("SH", b"\x00\x00", None),
        ("LT", b"a\\b \x00", ["a\\b \x00"]),
        ("ST", b"  leading kept", ["  leading kept"]),
        ("UT", b"text\r\nmore  ", ["text\r\nmore"]),
        ("UR", b"http://x/y ", ["http://x/y"]),
        ("UC", b"a\\b", ["a", "b"]),
        ("AS", b"042Y", ["042Y"]),
    ],
)
def test_strings_and_padding(vr: str, raw: bytes, expected: list[Any] | None) -> None:
    got = next(iter(check([(0x00080008, vr, raw)]).values()))
    assert got == ({"vr": vr, "Value": expected} if expected else {"vr": vr})


def test_empty_values_have_no_value_key() -> None:
    elements = [(0x00100010 + i, vr, b"") for i, vr in enumerate(sorted(JSON_VRS - {"SQ"}))]
    got = check(elements)
    assert all(obj == {"vr": obj["vr"]} for obj in got.values())
    assert len(got) == len(elements)


def test_group_0002_group_lengths_and_binary_vrs_left_out() -> None:
    got = check(
        [
            (0x00020010, "UI", b"1.2.840.10008.1.2.1\x00"),
            (0x00080000, "UL", b"\x04\x00\x00\x00"),
            (0x00090000, None, b"\x04\x00\x00\x00"),
            (0x00100010, "PN", b"Doe"),
            (0x00420011, "OB", b"\x01\x02"),
            (0x00660023, "OF", b"\x00" * 4),
            (0x00660040, "OL", b"\x00" * 4),
            (0x00701A07, "OD", b"\x00" * 8),
            (0x00720082, "OV", b"\x00" * 8),
            (0x54000110, "OW", b"\x00\x00"),
            (0x00291010, "UN", b"\x00\x00"),
            (0x7FE00010, None, b"\x00\x00"),  # implicit VR: "OB or OW"
        ]
    )
    assert got == {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe"}]}}


def _sequence_bytes(*items: bytes, little: bool = True, undefined: bool = False) -> bytes:
    """Sequence items, of defined length or ended by an item delimiter."""
    order: Literal["little", "big"] = "little" if little else "big"

    def header(tag: int, length: int) -> bytes:
        return (
            (tag >> 16).to_bytes(2, order)
            + (tag & 0xFFFF).to_bytes(2, order)
            + length.to_bytes(4, order)
        )

    if undefined:
        return b"".join(header(0xFFFEE000, 0xFFFFFFFF) + i + header(0xFFFEE00D, 0) for i in items)
    return b"".join(header(0xFFFEE000, len(i)) + i for i in items)


def _implicit(tag: int, value: bytes) -> bytes:
    """An implicit VR little endian element."""
    return (
        (tag >> 16).to_bytes(2, "little")
        + (tag & 0xFFFF).to_bytes(2, "little")
        + len(value).to_bytes(4, "little")
        + value
    )


def _explicit(tag: int, vr: str, value: bytes, little: bool = True) -> bytes:
    """An explicit VR element (4-byte length for the VRs that have one)."""
    order: Literal["little", "big"] = "little" if little else "big"
    head = (tag >> 16).to_bytes(2, order) + (tag & 0xFFFF).to_bytes(2, order) + vr.encode()
    if vr in LONG_LENGTH_VRS:
        return head + b"\x00\x00" + len(value).to_bytes(4, order) + value
    return head + len(value).to_bytes(2, order) + value


LONG_LENGTH_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def test_nested_sequences_drop_binary_and_keep_empty_ones() -> None:
    inner = _implicit(0x00081150, b"1.2.3\x00") + _implicit(0x00420011, b"\x01\x02\x03\x04")
    item = (
        _implicit(0x00081150, b"1.2\x00")
        + _implicit(0x00081199, _sequence_bytes(inner, b""))
        + _implicit(0x00082112, b"")  # empty sequence
        + _implicit(0x00282000, b"\x00\x01")  # ICC Profile, OB, in the item
    )
    got = check([(0x00081140, None, _sequence_bytes(item)), (0x00081250, None, b"")])
    assert got == {
        "00081140": {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": {"vr": "UI", "Value": ["1.2"]},
                    "00081199": {
                        "vr": "SQ",
                        "Value": [{"00081150": {"vr": "UI", "Value": ["1.2.3"]}}, {}],
                    },
                    "00082112": {"vr": "SQ"},
                }
            ],
        },
        "00081250": {"vr": "SQ"},
    }


def test_built_dataset_with_sequences() -> None:
    def make() -> Dataset:
        ds = Dataset()
        ds.PatientName = "Doe^Jane"
        ds.ImageType = ["ORIGINAL", "", "AXIAL"]
        ds.add_new(0x00181050, "DS", ["1.5", "2"])
        item = Dataset()
        item.add_new(0x00420011, "OB", b"\x00\x01")
        item.ReferencedSOPInstanceUID = "1.2.3"
        ds.ReferencedImageSequence = DicomSequence([item, Dataset()])
        ds.ReferencedStudySequence = DicomSequence([])
        return ds

    got = assert_matches_reference(make)
    assert got["00081140"] == {
        "vr": "SQ",
        "Value": [{"00081155": {"vr": "UI", "Value": ["1.2.3"]}}, {}],
    }
    assert got["00081110"] == {"vr": "SQ"}
    assert got["00080008"]["Value"] == ["ORIGINAL", None, "AXIAL"]


def test_private_tags() -> None:
    siemens = b"SIEMENS CSA HEADER"
    got = check(
        [
            (0x00290010, None, siemens),
            (0x00291008, None, b"IMAGE NUM 4 "),  # CS in pydicom's private dictionary
            (0x00291010, None, b"\x01\x02\x03\x04"),  # OB there: dropped
            (0x00291099, None, b"??"),  # unknown: UN, dropped
            (0x00090010, "LO", b"ACME 1.0"),
            (0x00091001, "LO", b"private text "),
            (0x00091002, "UN", b"\x01\x02"),
            (0x00111010, None, b"no creator"),
        ]
    )
    assert got["00290010"] == {"vr": "LO", "Value": ["SIEMENS CSA HEADER"]}
    assert got["00291008"] == {"vr": "CS", "Value": ["IMAGE NUM 4"]}
    assert got["00091001"] == {"vr": "LO", "Value": ["private text"]}
    assert {"00291010", "00291099", "00091002", "00111010"}.isdisjoint(got)


def test_explicit_un_of_a_known_tag_is_converted_with_the_dictionary_vr() -> None:
    got = check([(0x00100010, "UN", b"Doe^John"), (0x00280010, "UN", b"\x00\x02")])
    assert got["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]}
    assert got["00280010"] == {"vr": "US", "Value": [512]}


def test_ambiguous_vrs_are_resolved_by_pydicom() -> None:
    got = check(
        [
            (0x00280103, None, b"\x01\x00"),  # PixelRepresentation 1: signed
            (0x00280106, None, b"\xff\xff"),  # SmallestImagePixelValue, "US or SS"
            (0x00281101, None, b"\x00\x00\x00\x00\x10\x00"),  # LUT descriptor "US or SS"
            (0x00281200, None, b"\x01\x00"),  # Gray LUT Data "US or SS or OW": dropped
        ]
    )
    assert got["00280106"] == {"vr": "SS", "Value": [-1]}
    assert got["00281101"] == {"vr": "SS", "Value": [0, 0, 16]}
    assert "00281200" not in got


def test_lut_data_resolved_to_us_is_kept() -> None:
    lut = (0x00283010, None, _sequence_bytes(
        _implicit(0x00283002, b"\x01\x00\x00\x00\x10\x00")  # 1 entry: US, else OW
        + _implicit(0x00283006, b"\x07\x00")
    ))  # fmt: skip
    got = check([lut])
    assert got["00283010"]["Value"][0]["00283006"] == {"vr": "US", "Value": [7]}
    got = check([(0x00283006, None, b"\x01\x00")])  # no descriptor: pydicom raised
    assert got == {}


@pytest.mark.parametrize("name", ["chrH31.dcm", "chrX1.dcm", "chrArab.dcm", "chrSQEncoding.dcm"])
def test_specific_character_sets(name: str) -> None:
    matches = [p for p in get_charset_files() if Path(p).name == name]
    if not matches:
        pytest.skip(f"{name} not installed")
    data = Path(matches[0]).read_bytes()
    got = assert_matches_reference(lambda: _read(data))
    names = [
        obj
        for obj in _walk(got)
        if obj.get("vr") == "PN" and "Value" in obj
        for obj in obj["Value"]
        if obj
    ]
    assert names
    assert any(any(ord(c) > 127 for c in "".join(n.values())) for n in names)


def _walk(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for attribute in obj.values():
        yield attribute
        if attribute["vr"] == "SQ":
            for item in attribute.get("Value", []):
                yield from _walk(item)


def test_japanese_iso2022_person_name() -> None:
    matches = [p for p in get_charset_files() if Path(p).name == "chrH31.dcm"]
    if not matches:
        pytest.skip("chrH31.dcm not installed")
    got = dataset_json(_read(Path(matches[0]).read_bytes()))
    assert got["00100010"]["Value"] == [
        {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
    ]


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("ISO_IR 100", "Müller^Jürgen"),
        ("ISO_IR 192", "Ελληνικά\\文字"),
        ("ISO_IR 144", "Люкceмбypг"),
        ("GB18030", "王^小东"),
        ("ISO_IR 13", "ﾔﾏﾀﾞ^ﾀﾛｳ"),
    ],
)
def test_text_in_the_datasets_character_set(charset: str, text: str) -> None:
    from pydicom.charset import convert_encodings

    encoding = convert_encodings([charset])[0]
    elements: list[tuple[int, str | None, bytes]] = [(0x00080005, "CS", charset.encode())]
    for tag, vr in [(0x00081030, "LO"), (0x00100010, "PN"), (0x00104000, "LT")]:
        elements.append((tag, vr, text.encode(encoding) + b" "))
    got = check(elements, charset=convert_encodings([charset]))
    assert got["00081030"]["Value"] == text.split("\\")


def test_undecodable_text_uses_replacement_characters_like_pydicom() -> None:
    check([(0x00080005, "CS", b"ISO_IR 192"), (0x00100010, "PN", b"Bad\xff\xfe^Name")])
    check([(0x00080005, "CS", b"ISO_IR 192"), (0x00081030, "LO", b"\xc3")])
    check([(0x00080005, "CS", b"NOT A CHARSET"), (0x00081030, "LO", b"\xe9t\xe9")])


def test_trailing_nul_padding_is_kept_except_in_uids_and_numbers() -> None:
    # "Retrieved metadata includes the null character when the attribute was padded with
    # nulls and stored as is" (conformance statement); UI pads with NUL by definition.
    got = check(
        [
            (0x00080016, "UI", b"1.2.3\x00"),
            (0x00080060, "CS", b"CT\x00\x00"),
            (0x00081030, "LO", b"Study\x00"),
            (0x00100010, "PN", b"Doe\x00"),
            (0x00200013, "IS", b"7\x00"),
            (0x00181050, "DS", b"2.5\x00"),
            (0x00081080, "LO", b"A\x00\\B\x00"),
            (0x00180015, "CS", b"\x00HEAD"),  # a leading NUL is kept, as pydicom keeps it
        ]
    )
    assert got["00080016"]["Value"] == ["1.2.3"]
    assert got["00080060"]["Value"] == ["CT\x00\x00"]
    assert got["00081030"]["Value"] == ["Study\x00"]
    assert got["00100010"]["Value"] == [{"Alphabetic": "Doe\x00"}]
    assert got["00200013"]["Value"] == [7]
    assert got["00181050"]["Value"] == [2.5]
    assert got["00081080"]["Value"] == ["A\x00", "B\x00"]
    assert got["00180015"]["Value"] == ["\x00HEAD"]


JAPANESE = ["shift_jis", "iso2022_jp"]


@pytest.mark.parametrize(
    ("vr", "value", "charset", "expected"),
    [
        # pydicom keeps an escape sequence it does not know as text (with a warning), so the
        # NUL after it follows text and is kept; the first was found by Hypothesis.
        ("LO", b"\x1b 0\x00", None, ["\x1b 0\x00"]),
        ("LO", b"\x1b$B\x00", None, ["\x1b$B\x00"]),  # JIS X 0208 not declared
        ("SH", b"\x1b 0\x00\\x", None, ["\x1b 0\x00", "x"]),
        ("LT", b"\x1b 0\x00 ", None, ["\x1b 0\x00"]),
        ("PN", b"\x1b 0\x00", None, [{"Alphabetic": "\x1b 0\x00"}]),
        # An escape sequence of a declared code extension decodes to nothing: padding only.
        ("LO", b"\x1b$B\x00", JAPANESE, None),
        ("LO", b"\x1b(B\x00 ", None, None),
        ("PN", b"\x1b$B\x00", JAPANESE, None),
        ("PN", b"\x1b(B\x00", None, None),
        ("UT", b" \x1b$B\x00\x1b(B", JAPANESE, None),
        # Text, then a NUL, then an escape sequence that decodes to nothing: a trailing NUL.
        ("LO", b"a\x00\x1b(B", None, ["a\x00"]),
        ("PN", b"Doe\x00\x1b(B", None, [{"Alphabetic": "Doe\x00"}]),
    ],
)
def test_nul_after_an_escape_sequence_is_kept_only_after_text(
    vr: str, value: bytes, charset: list[str] | None, expected: list[Any] | None
) -> None:
    tag = GENERATED_TAGS[vr]
    got = check([(tag, vr, value)], charset=charset)
    assert got[f"{tag:08X}"].get("Value") == expected


def test_big_endian_file_round_trip() -> None:
    data = _testdata("MR_small_bigendian.dcm")
    got = assert_matches_reference(lambda: _read(data))
    little = dataset_json(_read(_testdata("MR_small.dcm")))
    assert got["00280010"] == little["00280010"]


def test_deferred_values_are_read_by_pydicom(tmp_path: Path) -> None:
    path = tmp_path / "deferred.dcm"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    ds.file_meta.MediaStorageSOPInstanceUID = UID("1.2.3.4")
    ds.PatientName = "Doe^John"
    ds.ImageComments = "x" * 200
    ds.save_as(path, enforce_file_format=True)

    def make() -> Dataset:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dcmread(path, defer_size=16)

    got = assert_matches_reference(make)
    assert got["00204000"]["Value"] == ["x" * 200]


@pytest.mark.parametrize(
    "change",
    [
        ("datetime_conversion", True),
        ("use_none_as_empty_text_VR_value", True),
    ],
)
def test_other_pydicom_configuration_goes_through_pydicom(
    change: tuple[str, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _testdata("CT_small.dcm")
    default = dataset_json(_read(data))
    monkeypatch.setattr(config, change[0], change[1])
    assert dataset_json(_read(data)) == default


TRICKY_ELEMENTS: list[tuple[int, str | None, bytes]] = [
    (0x00200013, "IS", b"1.5\\x"),
    (0x00181050, "DS", b"1.5\x00\\2"),
    (0x00080018, "UI", b"1.2 \x00"),
    (0x00100010, "UN", b"Doe^John"),
    (0x00280010, "US", b"\x01\x02\x03"),
    (0x00090010, None, b"ACME"),
    (0x00091001, "UN", b"\x01\x02"),
    (0x00081032, None, _sequence_bytes(_implicit(0x00291010, b"x") + _implicit(0x00100010, b"A"))),
]


@pytest.mark.parametrize(
    "change",
    [
        (config.settings, "reading_validation_mode", config.IGNORE),
        (config, "replace_un_with_known_vr", False),
        (config, "convert_wrong_length_to_UN", True),
    ],
    ids=["IGNORE", "keep UN", "wrong length as UN"],
)
def test_configuration_followed_like_pydicom(
    change: tuple[Any, str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(*change)
    check(TRICKY_ELEMENTS)
    check(TRICKY_ELEMENTS, little=False)
    assert_matches_reference(lambda: _read(_testdata("CT_small.dcm")))
    assert_matches_reference(lambda: _read(_testdata("rtplan.dcm")))


def test_raise_validation_mode_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config.settings, "reading_validation_mode", config.RAISE)
    ds = raw_dataset([(0x00200013, "IS", b"abc"), (0x00100010, "PN", b"Doe")])
    got = dataset_json(ds)
    assert got["00200013"] == {"vr": "IS"}
    assert got["00100010"]["Value"] == [{"Alphabetic": "Doe"}]


def test_latin1_is_pydicoms_default_encoding() -> None:
    from pydicom.charset import default_encoding

    every_byte = bytes(range(256))
    assert every_byte.decode("latin-1") == every_byte.decode(default_encoding)


@pytest.fixture
def pydicom_must_not_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if a sequence falls back to pydicom's parsing (the slow path)."""
    import dicom_core.domain.dicomjson.walk as module

    def refuse(*args: Any) -> None:
        raise AssertionError("fell back to pydicom")

    monkeypatch.setattr(module, "_via_pydicom", refuse)


@pytest.fixture
def pydicom_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The tags the module hands to pydicom's own conversion."""
    import dicom_core.domain.dicomjson.walk as module

    calls: list[int] = []
    convert = module._via_pydicom

    def spy(ds: Dataset, tag: int, *args: Any) -> Any:
        calls.append(int(tag))
        return convert(ds, tag, *args)

    monkeypatch.setattr(module, "_via_pydicom", spy)
    return calls


def _plain_item(little: bool = True, implicit: bool = False) -> bytes:
    if implicit:
        return (
            _implicit(0x00080100, b"T-D1100 ")
            + _implicit(0x00080102, b"SRT ")
            + _implicit(0x00080104, b"Head\\Neck")
            + _implicit(0x00200013, b"12")
            + _implicit(0x00280010, b"\x00\x02")
        )
    return (
        _explicit(0x00080100, "SH", b"T-D1100 ", little)
        + _explicit(0x00080102, "SH", b"SRT ", little)
        + _explicit(0x00080104, "LO", b"Head\\Neck", little)
        + _explicit(0x00080119, "UC", b"long code", little)
        + _explicit(0x00200013, "IS", b"12", little)
        + _explicit(0x00280010, "US", b"\x00\x02" if little else b"\x02\x00", little)
        + _explicit(0x00282000, "OB", b"\x00\x01", little)
    )


PLAIN_ITEM_JSON = {
    "00080100": {"vr": "SH", "Value": ["T-D1100"]},
    "00080102": {"vr": "SH", "Value": ["SRT"]},
    "00080104": {"vr": "LO", "Value": ["Head", "Neck"]},
    "00200013": {"vr": "IS", "Value": [12]},
    "00280010": {"vr": "US", "Value": [512]},
}


@pytest.mark.usefixtures("pydicom_must_not_parse")
@pytest.mark.parametrize("little", [True, False])
@pytest.mark.parametrize("undefined", [False, True])
def test_raw_explicit_sequences_are_parsed_here(little: bool, undefined: bool) -> None:
    nested = _explicit(
        0x00400260, "SQ", _sequence_bytes(_plain_item(little), little=little), little
    )
    item = _plain_item(little) + nested
    value = _sequence_bytes(item, b"", little=little, undefined=undefined)
    got = check([(0x00081032, "SQ", value), (0x00082218, "SQ", b"")], little=little)
    explicit_item = {**PLAIN_ITEM_JSON, "00080119": {"vr": "UC", "Value": ["long code"]}}
    assert got["00081032"] == {
        "vr": "SQ",
        "Value": [
            {**explicit_item, "00400260": {"vr": "SQ", "Value": [explicit_item]}},
            {},
        ],
    }
    assert got["00082218"] == {"vr": "SQ"}


@pytest.mark.usefixtures("pydicom_must_not_parse")
@pytest.mark.parametrize("undefined", [False, True])
def test_raw_implicit_sequences_are_parsed_here(undefined: bool) -> None:
    nested = _implicit(0x00400260, _sequence_bytes(_plain_item(implicit=True)))
    value = _sequence_bytes(_plain_item(implicit=True) + nested, undefined=undefined)
    got = check([(0x00081032, None, value)])
    assert got["00081032"] == {
        "vr": "SQ",
        "Value": [{**PLAIN_ITEM_JSON, "00400260": {"vr": "SQ", "Value": [PLAIN_ITEM_JSON]}}],
    }


@pytest.mark.usefixtures("pydicom_must_not_parse")
def test_sequence_delimiter_ends_a_raw_sequence() -> None:
    value = _sequence_bytes(_plain_item(implicit=True)) + b"\xfe\xff\xdd\xe0" + bytes(4) + b"junk"
    assert check([(0x00081032, None, value)])["00081032"]["Value"] == [PLAIN_ITEM_JSON]


@pytest.mark.usefixtures("pydicom_must_not_parse")
def test_private_tags_and_character_set_in_raw_items() -> None:
    item = (
        _implicit(0x00080005, b"ISO_IR 192")
        + _implicit(0x00100010, "Müller^Jürgen".encode())
        + _implicit(0x00290010, b"SIEMENS CSA HEADER")
        + _implicit(0x00291008, b"IMAGE NUM 4 ")
        + _implicit(0x00291010, b"\x01\x02")  # OB in the private dictionary
        + _implicit(0x00291110, b"no creator")
        + _implicit(0x00431010, b"no creator either")
    )
    got = check([(0x00081032, None, _sequence_bytes(item))], charset=["latin_1"])
    assert got["00081032"]["Value"] == [
        {
            "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller^Jürgen"}]},
            "00290010": {"vr": "LO", "Value": ["SIEMENS CSA HEADER"]},
            "00291008": {"vr": "CS", "Value": ["IMAGE NUM 4"]},
        }
    ]


@pytest.mark.parametrize(
    "value",
    [
        _sequence_bytes(_implicit(0x00280106, b"\xff\xff")),  # "US or SS": needs the dataset
        _sequence_bytes(_implicit(0x00281101, b"\x00\x00\x00\x00\x10\x00")),  # LUT descriptor
        _sequence_bytes(_implicit(0x00080100, b"T-D1100 "))[:-2],  # truncated
        b"\xfe\xff\x00\xe0\x04\x00\x00\x00" + _implicit(0x00080100, b"T-D1100 "),  # overlong
        b"\x08\x00\x00\x01\x04\x00\x00\x00abcd",  # not an item
        _sequence_bytes(_implicit(0x00400260, b"\xff" * 4)[:4] + b"\xff\xff\xff\xff"),  # undefined
        _sequence_bytes(_implicit(0x00290010, b"A\\B") + _implicit(0x00291008, b"X")),
        _sequence_bytes(_implicit(0x00080005, b"\x00\x01") + _implicit(0x00100010, b"A")),
        _sequence_bytes(b"\xfe\xff\x0d\xe0" + bytes(4)),  # item end in a defined-length item
    ],
)
def test_raw_sequences_not_parsed_here_go_to_pydicom(
    value: bytes, pydicom_calls: list[int]
) -> None:
    check([(0x00081032, None, value), (0x00100010, "PN", b"Doe")])
    assert 0x00081032 in pydicom_calls


def test_explicit_item_that_looks_implicit_goes_to_pydicom(pydicom_calls: list[int]) -> None:
    value = _sequence_bytes(_implicit(0x00080100, b"T-D1100 "))  # explicit VR expected
    check([(0x00081032, "SQ", value)])
    assert 0x00081032 in pydicom_calls


# ---------------------------------------------------------------------------------------------
# Generated values of every VR

TEXT_BYTES = st.binary(max_size=24) | st.lists(
    st.sampled_from(
        [
            b"1",
            b"0",
            b"9",
            b".",
            b"-",
            b"+",
            b"e",
            b"E",
            b" ",
            b"\x00",
            b"\\",
            b"=",
            b"^",
            b"a",
            b"Z",
            b"\xe9",
            b"\xc3\xa9",
            b"\x1b$B",
            b"\x1b(B",
            b"inf",
            b"nan",
            b"_",
            b"\t",
        ]
    ),  # fmt: skip
    max_size=12,
).map(b"".join)
# ISO 2022 escape sequences among padding and a little text. Those of a declared code
# extension (and ESC ( B) decode to nothing, any other is text to pydicom, so whether a NUL
# after one is trailing padding or kept depends on the character set.
ESCAPES_AND_PADDING = st.lists(
    st.sampled_from(
        [
            b"\x1b$B",
            b"\x1b(B",
            b"\x1b(J",
            b"\x1b-F",
            b"\x1b$)C",
            b"\x1b$)A",
            b"\x1b 0",
            b"\x1b",
            b"\x00",
            b" ",
            b"a",
            b"!",
            b"\\",
            b"=",
        ]
    ),  # fmt: skip
    max_size=8,
).map(b"".join)
CHARSETS = [
    None, ["iso8859"], ["utf_8"], ["iso_ir_126"], ["shift_jis", "iso2022_jp"], ["gb18030"],
    ["iso8859", "iso_ir_126"], ["iso8859", "euc_kr"], ["iso8859", "iso_ir_58"],
]  # fmt: skip
GENERATED_TAGS = {
    "AE": 0x00080054, "AS": 0x00101010, "AT": 0x00209165, "CS": 0x00080060, "DA": 0x00080020,
    "DS": 0x00181050, "DT": 0x0008002A, "FD": 0x00189327, "FL": 0x00189328, "IS": 0x00200013,
    "LO": 0x00081030, "LT": 0x00104000, "PN": 0x00100010, "SH": 0x00080050, "SL": 0x00186020,
    "SS": 0x00189219, "ST": 0x00080081, "SV": 0x0040A171, "TM": 0x00080030, "UC": 0x00080119,
    "UI": 0x00080018, "UL": 0x00720078, "UR": 0x0008010E, "US": 0x00280010, "UT": 0x00400280,
    "UV": 0x0040A172,
}  # fmt: skip


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Found by Hypothesis: an escape sequence then a NUL is no character then padding, so no
# value (the reference once counted the escape as text and kept the NUL).
@example(
    vr="LO", value=b"\x1b$B\x00", implicit=False, little=False, charset=["shift_jis", "iso2022_jp"]
)
# Found by Hypothesis: ESC SP 0 is no escape sequence pydicom knows, so it is text and the NUL
# after it is kept (the reference once counted every escape sequence as nothing).
@example(vr="LO", value=b"\x1b 0\x00", implicit=False, little=False, charset=None)
# Found by Hypothesis: pydicom strips a PN's bytes before decoding, so a space before an escape
# sequence stays; the converter keeps pydicom's reading of values that are padding only.
@example(vr="PN", value=b" \x1b(B", implicit=False, little=False, charset=None)
@given(
    vr=st.sampled_from(sorted(GENERATED_TAGS)),
    value=TEXT_BYTES | ESCAPES_AND_PADDING,
    implicit=st.booleans(),
    little=st.booleans(),
    charset=st.sampled_from(CHARSETS),
)
def test_generated_values_match_reference(
    vr: str, value: bytes, implicit: bool, little: bool, charset: list[str] | None
) -> None:
    elements = [(GENERATED_TAGS[vr], None if implicit else vr, value)]
    check(elements, little=little, charset=charset)
    assert_matches_reference(lambda: _convert_all(raw_dataset(elements, charset=charset)))


# Nested raw sequences in every encoding, with private tags, creators and item character sets.
# PixelRepresentation (0028,0103) is left out: pydicom reads it to resolve "US or SS" VRs in
# the items around it, and a malformed one (say 1 byte, big endian) makes the reference lose
# the items of a sibling sequence, while the module keeps what the bytes hold. Found by this
# test; the oracle, not the module, is wrong there. Valid values are covered by the files tests.
PUBLIC_TAGS = sorted(
    tag
    for tag, entry in DicomDictionary.items()
    if entry[0] != "SQ" and tag >> 16 != 0xFFFE and tag != 0x00280103
)[::7]
SEQUENCE_TAGS = sorted(tag for tag, entry in DicomDictionary.items() if entry[0] == "SQ")[::9]
PRIVATE_TAGS = [
    0x00090010, 0x00091001, 0x00290010, 0x00290011, 0x00291008, 0x00291010, 0x00291108,
    0x00430010, 0x00431001, 0x00190010, 0x0019100C, 0x00110005, 0x00110510,
]  # fmt: skip
CREATORS = [b"SIEMENS CSA HEADER", b"GEMS_PARM_01", b"SIEMENS MR HEADER", b"", b"A\\B", b"X "]
ITEM_CHARSETS = [b"ISO_IR 192", b"ISO_IR 100", b"", b"\\ISO 2022 IR 87", b"GB18030 "]
LEAVES = st.one_of(
    st.tuples(st.sampled_from(PUBLIC_TAGS), TEXT_BYTES),
    st.tuples(st.sampled_from(PRIVATE_TAGS), TEXT_BYTES | st.sampled_from(CREATORS)),
    st.tuples(st.just(0x00080005), st.sampled_from(ITEM_CHARSETS)),
)
ITEMS = st.recursive(
    st.lists(LEAVES, max_size=4),
    lambda items: st.lists(
        LEAVES | st.tuples(st.sampled_from(SEQUENCE_TAGS), st.lists(items, max_size=2)),
        max_size=4,
    ),
    max_leaves=12,
)


def _dictionary_vr(tag: int) -> str:
    entry = DicomDictionary.get(tag)
    return entry[0] if entry and len(entry[0]) == 2 else "UN"


def _encode_item(
    elements: list[tuple[int, Any]], little: bool, implicit: bool, undefined: bool
) -> bytes:
    encoded: dict[int, bytes] = {}
    for tag, value in elements:
        if isinstance(value, list):
            body = _sequence_bytes(
                *(_encode_item(item, little, implicit, undefined) for item in value),
                little=little,
                undefined=undefined,
            )
            vr = "SQ"
        else:
            body, vr = value, _dictionary_vr(tag)
        encoded[tag] = _implicit(tag, body) if implicit else _explicit(tag, vr, body, little)
    return b"".join(encoded[tag] for tag in sorted(encoded))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sequences=st.lists(
        st.tuples(st.sampled_from(SEQUENCE_TAGS), st.lists(ITEMS, max_size=3)), max_size=3
    ),
    little=st.booleans(),
    implicit=st.booleans(),
    undefined=st.booleans(),
    charset=st.sampled_from(CHARSETS),
    converted_beforehand=st.booleans(),
)
def test_generated_sequences_match_reference(
    sequences: list[tuple[int, list[list[tuple[int, Any]]]]],
    little: bool,
    implicit: bool,
    undefined: bool,
    charset: list[str] | None,
    converted_beforehand: bool,
) -> None:
    little = little or not implicit  # implicit VR is little endian
    elements: dict[int, tuple[int, str | None, bytes]] = {}
    for tag, items in sequences:
        value = _sequence_bytes(
            *(_encode_item(item, little, implicit, undefined) for item in items),
            little=little,
            undefined=undefined,
        )
        elements[tag] = (tag, None if implicit else "SQ", value)
    listed = list(elements.values())

    def make() -> Dataset:
        ds = raw_dataset(listed, little=little, charset=charset)
        return _convert_all(ds, every=2) if converted_beforehand else ds

    assert_matches_reference(make)
