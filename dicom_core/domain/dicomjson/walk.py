"""The walk over a dataset: each element to its DICOM JSON attribute object, by the fast path
where it applies and through pydicom where it does not.

Elements still raw go to the raw converters (sequences of defined length to the raw sequence
parser); everything unusual goes through pydicom's own conversion instead, so that the result
does not depend on which path was taken: ambiguous VRs (their VR depends on other elements),
LUT descriptors (pydicom adjusts their first value), deferred values, sequences not laid out
plainly, elements already converted, and any pydicom configuration or hook that changes
decoding.
"""

from __future__ import annotations

import warnings
from typing import Any

import orjson
import pydicom.valuerep
from pydicom import config
from pydicom._dicom_dict import DicomDictionary  # the table pydicom's VR lookup reads first
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.hooks import hooks, raw_element_value, raw_element_vr
from pydicom.tag import BaseTag
from pydicom.valuerep import DSfloat

from dicom_core.domain.charsets import DEFAULT_ENCODINGS, SPECIFIC_CHARACTER_SET, dataset_encodings
from dicom_core.domain.dicomjson.converted import converted_json
from dicom_core.domain.dicomjson.raw_sequences import UNDEFINED_LENGTH, sequence_json
from dicom_core.domain.dicomjson.raw_values import converter_for
from dicom_core.domain.dicomjson.values import (
    DROP_UNCONVERTED,
    JSON_VRS,
    LUT_DESCRIPTOR_TAGS,
    JsonObject,
)


def dataset_json(ds: Dataset) -> dict[str, Any]:
    """The DICOM JSON object of ``ds`` (group 0002, group lengths and binary VRs left out).

    Never raises: a value that cannot be converted leaves its attribute with only its VR.
    pydicom's warnings about malformed values are silenced; malformed data is normal input
    for a store and must not fail it (nor, with warnings as errors, the tests). The walk
    recurses once per sequence level (and orjson writes at most 255 nested containers), so
    callers bound the nesting first with
    :func:`dicom_core.domain.nesting.dataset_nesting_problem`, as ``parse_instance`` does.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _dataset(ds, _fast_path_applies())


def dataset_json_bytes(ds: Dataset) -> bytes:
    """``dataset_json(ds)`` serialised as UTF-8 JSON (orjson writes NaN and infinity as null)."""
    return orjson.dumps(dataset_json(ds))


def _fast_path_applies() -> bool:
    """Whether pydicom is configured as the raw converters assume (its defaults).

    Anything that changes how pydicom decodes values (a RAISE validation mode, date/time or
    numpy conversion, Decimal DS, empty values as None, wrong lengths as UN, element
    callbacks or hooks) sends every element through pydicom, so the output follows the
    configuration as before. (``replace_un_with_known_vr`` is honoured by both paths.)
    """
    return (
        config.settings.reading_validation_mode in (config.WARN, config.IGNORE)
        and not config.convert_wrong_length_to_UN
        and not config.datetime_conversion
        and not config.use_DS_numpy
        and not config.use_IS_numpy
        and not config.use_none_as_empty_text_VR_value
        and pydicom.valuerep.DSclass is DSfloat
        and config.data_element_callback is None
        and hooks.raw_element_vr is raw_element_vr
        and hooks.raw_element_value is raw_element_value
        and not hooks.raw_element_kwargs
    )


def _dataset(ds: Dataset, fast: bool) -> JsonObject:
    """The DICOM JSON object of one dataset or sequence item (warnings already silenced)."""
    out: JsonObject = {}
    encodings = DEFAULT_ENCODINGS
    if fast:
        try:
            encodings = dataset_encodings(ds)
        except Exception:  # let pydicom deal with each element of this one
            fast = False
    # Plain int tags: pydicom's BaseTag compares in Python, which is slow to sort and test.
    for tag, elem in sorted([(int(tag), elem) for tag, elem in ds._dict.items()]):
        if tag >> 16 == 0x0002 or not tag & 0xFFFF:
            continue
        converted: JsonObject | None
        try:
            if isinstance(elem, DataElement):
                converted = _from_element(elem, fast)
            elif fast:
                converted = _from_raw(ds, tag, elem, encodings, fast)
            else:
                converted = _via_pydicom(ds, tag, elem.VR, fast)
        except Exception:  # a defect here must not lose the dataset
            converted = _via_pydicom(ds, tag, elem.VR, fast)
        if converted is not None:
            out[f"{tag:08X}"] = converted
    return out


def _from_raw(
    ds: Dataset, tag: int, raw: RawDataElement, encodings: list[str], fast: bool
) -> JsonObject | None:
    """The attribute object of an element still in raw form, or ``None`` to leave it out."""
    vr = raw.VR
    if vr is None:
        entry = DicomDictionary.get(tag)  # where pydicom's own lookup finds a public tag
        vr = entry[0] if entry is not None else _raw_vr(ds, raw)
    elif vr == "UN":
        vr = _raw_vr(ds, raw)
    if vr in DROP_UNCONVERTED:
        return None
    convert = converter_for(vr)
    value = raw.value
    if convert is None or tag in LUT_DESCRIPTOR_TAGS or value is None:
        # Sequences, ambiguous VRs, LUT descriptors, deferred values (pydicom reads those
        # from the file); a raw sequence of defined length is parsed here if it can be.
        if vr == "SQ" and raw.length == 0:
            return {"vr": "SQ"}
        if vr == "SQ" and value and raw.length != UNDEFINED_LENGTH:
            try:
                return sequence_json(value, raw.is_little_endian, raw.is_implicit_VR, encodings)
            except Exception:  # a layout the parser refuses, or one it did not expect
                pass
        return _via_pydicom(ds, tag, vr, fast)
    if raw.length == 0:
        return {"vr": vr}
    if tag == SPECIFIC_CHARACTER_SET:
        encodings = DEFAULT_ENCODINGS
    return convert(vr, value, raw.is_little_endian, encodings)


def _from_element(elem: DataElement, fast: bool) -> JsonObject | None:
    """The attribute object of a converted element, or ``None`` when it is left out."""
    vr = str(elem.VR)  # pydicom's VR enum, as the plain string the raw path gives
    if vr == "SQ":
        try:
            items = [_dataset(item, fast) for item in elem.value or ()]
        except Exception:  # not a sequence of datasets (built by hand)
            return {"vr": "SQ"}
        return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
    if vr not in JSON_VRS:
        return None
    return converted_json(elem, vr)


def _via_pydicom(ds: Dataset, tag: int, vr: str | None, fast: bool) -> JsonObject | None:
    """Convert one element with pydicom (``ds[tag]``, which also resolves ambiguous VRs).

    If pydicom raises (a wrong value length, an ambiguous VR it cannot resolve, an unusable
    Specific Character Set...), the element keeps only its VR, or is left out when that VR
    is not one JSON can carry.
    """
    try:
        elem = ds[tag]
    except Exception:  # never fail the whole dataset for one element
        # The VR as far as pydicom got: still raw, or converted with its VR corrected
        # before the value failed ("US or SS" that became US, holding 3 bytes).
        partial = ds._dict.get(BaseTag(tag))
        if isinstance(partial, DataElement):
            vr = str(partial.VR)
        elif isinstance(partial, RawDataElement):
            try:
                vr = _raw_vr(ds, partial)
            except Exception:  # no VR to report: leave the element out
                return None
        return {"vr": vr} if vr in JSON_VRS else None
    return _from_element(elem, fast)


def _raw_vr(ds: Dataset, raw: RawDataElement) -> str:
    """The VR pydicom gives a raw element: the explicit one, else its own lookup (implicit
    VR, or UN it replaces by the dictionary VR, private dictionaries keyed by the creator)."""
    vr = raw.VR
    if vr is None or vr == "UN":
        found: dict[str, Any] = {}
        raw_element_vr(raw, found, ds=ds)
        vr = found["VR"]
    return str(vr)
