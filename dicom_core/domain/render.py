"""Rendering one frame as a consumer image: JPEG or PNG (PS3.18 8.3.5, 10.4.1.1.3).

The grayscale pipeline is the standard's (PS3.3 C.11, PS3.4 N.2): stored values, then the
Modality LUT (rescale slope/intercept or a Modality LUT Sequence), then the VOI LUT (a window
from the dataset, a VOI LUT Sequence, or when the dataset gives neither, the frame's own
value range), then 8-bit output, inverted for MONOCHROME1. Multi-frame functional groups
(Pixel Value Transformation, Frame VOI LUT) are honoured per frame. Colour frames arrive
already in RGB (the decoder converts YBR and handles the planar configuration); palette
colour goes through the dataset's lookup tables.

Input is a parsed header and a decoded frame; output is image bytes. No I/O.
"""

from __future__ import annotations

import io
import warnings
from typing import Any, Final

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi

from dicom_core.domain.media_types import JPEG, PNG
from dicom_core.domain.pixels import DecodedFrame, PixelDataError
from dicom_core.domain.validation.messages import brief

DEFAULT_QUALITY: Final = 100

_MONOCHROME: Final = frozenset({"MONOCHROME1", "MONOCHROME2"})


def render_frame(
    header: Dataset,
    frame: DecodedFrame,
    *,
    frame_index: int = 0,
    media_type: str = JPEG,
    quality: int = DEFAULT_QUALITY,
) -> bytes:
    """Render ``frame`` (0-based ``frame_index`` of the instance ``header`` describes)."""
    image = to_display(header, frame, frame_index=frame_index)
    return encode_image(image, media_type=media_type, quality=quality)


def to_display(header: Dataset, frame: DecodedFrame, *, frame_index: int = 0) -> np.ndarray:
    """The frame as 8-bit display values: (rows, columns) gray or (rows, columns, 3) RGB."""
    photometric = frame.format.photometric_interpretation
    array = frame.array
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if photometric in _MONOCHROME or (array.ndim == 2 and photometric != "PALETTE COLOR"):
            gray = _grayscale(header, array, frame_index)
            return 255 - gray if photometric == "MONOCHROME1" else gray
        if photometric == "PALETTE COLOR":
            try:
                rgb = apply_color_lut(array, header)
            except Exception as exc:
                raise PixelDataError(
                    f"the palette colour lookup tables are unusable: {brief(exc)}"
                ) from exc
            return _to_8bit(rgb, _lut_bits(rgb))
        if array.ndim == 3 and array.shape[-1] == 3:
            return _to_8bit(array, frame.format.bits_stored)
    raise PixelDataError(f"frames with photometric interpretation {photometric} cannot be rendered")


def encode_image(pixels: np.ndarray, *, media_type: str, quality: int) -> bytes:
    """Encode display values as JPEG (at ``quality``) or PNG (lossless; quality ignored)."""
    mode = "L" if pixels.ndim == 2 else "RGB"
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), mode=mode)
    out = io.BytesIO()
    if media_type == PNG:
        image.save(out, format="PNG", compress_level=3)
    else:
        # Full chroma resolution at high quality: subsampling would smear coloured overlays.
        subsampling = 0 if quality >= 90 else 2
        image.save(out, format="JPEG", quality=quality, subsampling=subsampling)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# Grayscale pipeline


#: Largest stored-value range turned into a lookup table (beyond it: computed per pixel).
_MAX_LUT_ENTRIES: Final = 1 << 20


def _grayscale(header: Dataset, array: np.ndarray, frame_index: int) -> np.ndarray:
    """Integer frames go through a lookup table built over their stored-value range.

    The pipeline is then evaluated once per distinct stored value (4096 for 12-bit CT)
    rather than once per pixel (262,144 for 512 x 512), which makes rendering several
    times faster. The table's domain is the frame's own [min, max], so the value-range
    fallback below sees the same extremes either way.
    """
    if array.dtype.kind in "iu" and array.size:
        low, high = int(array.min()), int(array.max())
        if high - low < _MAX_LUT_ENTRIES:
            domain = np.arange(low, high + 1, dtype=np.int64)
            table = _grayscale_values(header, domain, frame_index)
            return _look_up(array, table, low)
    return _grayscale_values(header, array, frame_index)


#: Pixels looked up at a time: ``np.take`` turns its indices into 8-byte integers, so a whole
#: 16,000 x 16,000 frame at once needed 2 GB beside it (a probe's render peaked at 11 times
#: the frame's decoded size). In blocks, the extra memory is the output and a few MB.
_LOOKUP_BLOCK_PIXELS: Final = 1 << 20


def _look_up(array: np.ndarray, table: np.ndarray, low: int) -> np.ndarray:
    """``table[value - low]`` for every pixel, as uint8, a block of rows at a time."""
    out = np.empty(array.shape, dtype=np.uint8)
    rows = array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(1, -1)
    flat_out = out.reshape(rows.shape)
    step = max(1, _LOOKUP_BLOCK_PIXELS // max(1, rows.shape[1]))
    if array.dtype.kind == "u":
        # Unsigned values index a table that starts at 0: no subtraction, one pass.
        full = np.zeros(int(low) + len(table), dtype=np.uint8)
        full[low:] = table
        for start in range(0, rows.shape[0], step):
            np.take(full, rows[start : start + step], out=flat_out[start : start + step])
        return out
    for start in range(0, rows.shape[0], step):
        offsets = np.subtract(rows[start : start + step], low, dtype=np.int64)
        np.take(table, offsets, out=flat_out[start : start + step])
    return out


def _grayscale_values(header: Dataset, array: np.ndarray, frame_index: int) -> np.ndarray:
    values = _modality(header, array, frame_index)
    lut_output = _voi_lut_sequence(header, values)
    if lut_output is not None:
        low, high = float(np.min(lut_output)), float(np.max(lut_output))
        return _scale(lut_output, low, high)
    window = _window(header, frame_index)
    if window is not None:
        center, width, function = window
        return _apply_window(values, center, width, function)
    return _scale(values, float(np.min(values)), float(np.max(values)))


def _modality(header: Dataset, array: np.ndarray, frame_index: int) -> np.ndarray:
    """Stored values to modality values (Hounsfield units for CT, say)."""
    if "ModalityLUTSequence" in header:
        try:
            return np.asarray(apply_modality_lut(array, header), dtype=np.float32)
        except Exception:
            pass  # a broken LUT: fall back to rescale, then to stored values
    slope = _frame_value(header, frame_index, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _frame_value(
        header, frame_index, "PixelValueTransformationSequence", "RescaleIntercept"
    )
    values = array.astype(np.float32)
    slope_value = _number(slope, None) or 1.0  # a slope of 0 would erase the image
    intercept_value = _number(intercept, None) or 0.0
    if slope_value != 1.0:
        values *= slope_value
    if intercept_value != 0.0:
        values += intercept_value
    return values


def _voi_lut_sequence(header: Dataset, values: np.ndarray) -> np.ndarray | None:
    if "VOILUTSequence" not in header or not header.VOILUTSequence:
        return None
    try:
        return np.asarray(apply_voi(values, header, index=0), dtype=np.float32)
    except Exception:
        return None  # unusable table: a window or the value range still gives an image


def _window(header: Dataset, frame_index: int) -> tuple[float, float, str] | None:
    center = _frame_value(header, frame_index, "FrameVOILUTSequence", "WindowCenter")
    width = _frame_value(header, frame_index, "FrameVOILUTSequence", "WindowWidth")
    function = _frame_value(header, frame_index, "FrameVOILUTSequence", "VOILUTFunction")
    center_value, width_value = _number(center, None), _number(width, None)
    if center_value is None or width_value is None:
        return None
    name = str(function or "LINEAR").strip().upper()
    if width_value < (1.0 if name == "LINEAR" else 0.0) or width_value == 0.0:
        return None
    return center_value, width_value, name


def _apply_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2 and C.11.2.1.3.1 to output range 0..255."""
    if function == "SIGMOID":
        out = 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    elif function == "LINEAR_EXACT":
        out = ((values - center) / width + 0.5) * 255.0
    else:
        out = ((values - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0
    return np.clip(out, 0.0, 255.0).round().astype(np.uint8)


def _scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    out = (values.astype(np.float32) - low) * (255.0 / (high - low))
    return np.asarray(np.clip(out, 0.0, 255.0).round(), dtype=np.uint8)


def _frame_value(header: Dataset, frame_index: int, group: str, keyword: str) -> Any:
    """An attribute from the top level, the frame's functional group, or the shared one.

    Enhanced multi-frame objects (PS3.3 C.7.6.16) move per-frame values into functional group
    macros; classic objects keep them at the top level.
    """
    if keyword in header:
        return header.get(keyword)
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    if per_frame and frame_index < len(per_frame):
        found = _from_group(per_frame[frame_index], group, keyword)
        if found is not None:
            return found
    shared = header.get("SharedFunctionalGroupsSequence")
    if shared:
        return _from_group(shared[0], group, keyword)
    return None


def _from_group(item: Dataset, group: str, keyword: str) -> Any:
    sequence = item.get(group)
    if sequence and keyword in sequence[0]:
        return sequence[0].get(keyword)
    return None


def _number(value: Any, default: float | None) -> float | None:
    """The first value of a possibly multi-valued DS, or ``default`` when missing or bad."""
    if value is None or value == "":
        return default
    if isinstance(value, MultiValue | list | tuple):
        if not value:
            return default
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if np.isfinite(number) else default


# ---------------------------------------------------------------------------------------------
# Colour


def _lut_bits(rgb: np.ndarray) -> int:
    return 8 if rgb.dtype.itemsize == 1 else 16


def _to_8bit(array: np.ndarray, bits: int) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "f":
        return _scale(array, float(np.min(array)), float(np.max(array)))
    shift = max(int(bits) - 8, 0)
    shifted = np.clip(array, 0, None).astype(np.uint32) >> shift
    return np.asarray(shifted.clip(0, 255), dtype=np.uint8)
