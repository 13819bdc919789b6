"""Pixel codecs benchmark: the pylibjpeg plugins against imagecodecs, one and two threads.

Usage::

    python benchmarks/codecs.py [--rounds 5] [--frames 20] [--only SUBSTRING]

What it measures, per transfer syntax, for the old codec (pylibjpeg's plugins, which pydicom
used before ``dicom_core/domain/codecs.py``) and the new one (imagecodecs):

* frames/s on one thread, and on two threads decoding at once. Two threads at about twice
  the one-thread rate mean the codec releases the GIL (this machine has two cores): the
  service's ``asyncio.to_thread`` calls then use both cores, no process pool needed. As a
  shared machine rarely leaves both cores free, two more readings go with it: the CPU
  seconds per second of the two-thread run ("cores": at most 1 when the threads take
  turns, up to 2 when they run at once and the machine has a core to spare), and, needing
  no free core, how much of the time a pure-Python thread is kept from the GIL ("GIL %";
  scheduling delay on a busy machine adds some to it).
* The same for whole transcodes through ``dicom_core.domain.pixels.transcode_frame`` (what a
  WADO-RS frame request costs), with the imagecodecs preference switched off for "old".

Frames are what a server meets: a 512 x 512 CT slice with 12 bits stored (the phantom of
``benchmarks/corpus.py``), encoded as each syntax; pydicom's ``bad_sequence.dcm`` (a real
512 x 512 JPEG lossless CT); its ``693_J2KI.dcm`` (lossy JPEG 2000 CT); a 640 x 480 RGB
ultrasound frame as JPEG baseline (``color3d_jpeg_baseline.dcm``). Every result is checked:
lossless results must equal the source pixels, lossy ones the old decoder's output (JPEG
baseline is only compared within a tolerance, and printed with its largest difference:
imagecodecs is not used for it because it differs). Only correct results count. Old and new
alternate within each round and the figure is the median of the rounds. The machine is
shared, so read the old and new figures side by side; the script never asserts on time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pydicom
from pydicom import uid
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.encoders.base import get_encoder

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
from benchmarks.corpus import _PixelSource  # noqa: E402
from dicom_core.domain import codecs, pixels  # noqa: E402
from dicom_core.domain.pixels import PixelFormat  # noqa: E402

OLD = "pylibjpeg"
NEW = codecs.PLUGIN
#: JPEG baseline: the largest difference (grey levels) still counted as the same image.
BASELINE_TOLERANCE = 8


def no_setup(_variant: str) -> AbstractContextManager[None]:
    return nullcontext()


@dataclass
class Case:
    """One thing to time: ``run(variant)`` does it once; ``check`` says if a result is right;
    ``setup(variant)`` is entered around each timed batch (once, not per thread)."""

    name: str
    run: Callable[[str], Any]
    check: Callable[[Any], bool]
    note: str = ""
    setup: Callable[[str], AbstractContextManager[None]] = no_setup


# --------------------------------------------------------------------------- frames


def ct_image() -> np.ndarray:
    """A 512 x 512 CT slice, 12 bits stored (corpus.py's phantom with its noise)."""
    return np.frombuffer(_PixelSource(512, 512, seed=0).frame(3), "<u2").reshape(512, 512)


CT_FORMAT = PixelFormat(
    rows=512,
    columns=512,
    samples_per_pixel=1,
    bits_allocated=16,
    bits_stored=12,
    pixel_representation=0,
    photometric_interpretation="MONOCHROME2",
)


def file_frame(name: str) -> tuple[bytes, PixelFormat, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = get_testdata_file(name)
        assert isinstance(path, str), f"pydicom's test file {name} is missing"
        ds = pydicom.dcmread(path)
    fmt = PixelFormat.from_dataset(ds)
    assert fmt is not None
    frame = next(generate_frames(ds.PixelData, number_of_frames=fmt.number_of_frames))
    return frame, fmt, str(ds.file_meta.TransferSyntaxUID)


def pydicom_decode(frame: bytes, syntax: str, fmt: PixelFormat) -> Callable[[str], np.ndarray]:
    """Decode through pydicom with a named plugin, as ``pixels.decode_frame`` does."""
    source = encapsulate([frame])
    options = {**fmt.decoder_options(), "as_rgb": True}

    def run(plugin: str) -> np.ndarray:
        array, _ = get_decoder(syntax).as_array(source, index=0, decoding_plugin=plugin, **options)
        return array

    return run


def equals(expected: np.ndarray) -> Callable[[Any], bool]:
    return lambda array: bool(array.shape == expected.shape and np.array_equal(array, expected))


@contextmanager
def preference(variant: str) -> Iterator[None]:
    """For "old", pixels.py decodes and encodes as before codecs.py: pydicom's plugin order.

    Entered once around each timed batch, never per thread: two threads swapping module
    attributes would leave the wrong ones behind.
    """
    if variant == NEW:
        yield
        return
    saved = codecs.preferred_decoder, codecs.preferred_encoder
    codecs.preferred_decoder = lambda *_args, **_kwargs: ""
    codecs.preferred_encoder = lambda *_args, **_kwargs: ""
    try:
        yield
    finally:
        codecs.preferred_decoder, codecs.preferred_encoder = saved


def cases() -> list[Case]:
    ct = ct_image()
    found: list[Case] = []

    def decode_case(name: str, frame: bytes, syntax: str, fmt: PixelFormat, ref: Any) -> None:
        found.append(Case(name, pydicom_decode(frame, syntax, fmt), equals(ref)))

    sv1 = bytes(imagecodecs.jpeg8_encode(ct, lossless=True, predictor=1, bitspersample=12))
    decode_case("JPEG lossless SV1, CT 512x512", sv1, uid.JPEGLosslessSV1, CT_FORMAT, ct)
    frame, fmt, syntax = file_frame("bad_sequence.dcm")
    real = pydicom_decode(frame, syntax, fmt)(OLD)
    decode_case("JPEG lossless SV1, bad_sequence.dcm", frame, syntax, fmt, real)
    p14 = bytes(imagecodecs.jpeg8_encode(ct, lossless=True, predictor=6, bitspersample=12))
    decode_case("JPEG lossless P14 (SV6), CT 512x512", p14, uid.JPEGLossless, CT_FORMAT, ct)
    jls = bytes(imagecodecs.jpegls_encode(ct))
    decode_case("JPEG-LS lossless, CT 512x512", jls, uid.JPEGLSLossless, CT_FORMAT, ct)
    j2k = get_encoder(uid.JPEG2000Lossless).encode(
        ct, encoding_plugin=OLD, **CT_FORMAT.decoder_options()
    )
    decode_case("JPEG 2000 lossless, CT 512x512", j2k, uid.JPEG2000Lossless, CT_FORMAT, ct)
    frame, fmt, syntax = file_frame("693_J2KI.dcm")
    lossy = pydicom_decode(frame, syntax, fmt)(OLD)
    decode_case("JPEG 2000 lossy, 693_J2KI.dcm", frame, syntax, fmt, lossy)

    # JPEG baseline: the old plugin through pydicom; imagecodecs directly (not registered).
    frame, fmt, syntax = file_frame("color3d_jpeg_baseline.dcm")
    old_baseline = pydicom_decode(frame, syntax, fmt)
    reference = old_baseline(OLD)

    def baseline(variant: str) -> np.ndarray:
        if variant == OLD:
            return old_baseline(OLD)
        return imagecodecs.jpeg8_decode(frame, colorspace="YCBCR", outcolorspace="RGB")

    def close(array: Any) -> bool:
        if array.shape != reference.shape:
            return False
        return int(np.abs(array.astype(np.int16) - reference).max()) <= BASELINE_TOLERANCE

    largest = int(np.abs(baseline(NEW).astype(np.int16) - reference).max())
    found.append(
        Case(
            "JPEG baseline, RGB 640x480 (422)",
            baseline,
            close,
            f"new differs by up to {largest}; not used",
        )
    )

    # JPEG 2000 lossless encoding: the codestream must decode to the source.
    # pylibjpeg-openjpeg crashes the process when two threads encode at once, so the old
    # encoder runs under a lock, as pixels.py now runs it.
    options = CT_FORMAT.decoder_options()
    one_at_a_time = threading.Lock()

    def encode(variant: str) -> bytes:
        with one_at_a_time if variant == OLD else nullcontext():
            return bytes(
                get_encoder(uid.JPEG2000Lossless).encode(ct, encoding_plugin=variant, **options)
            )

    found.append(
        Case(
            "JPEG 2000 lossless encode, CT 512x512",
            encode,
            lambda data: bool(np.array_equal(imagecodecs.jpeg2k_decode(data), ct)),
            "old: locked, it is not thread-safe",
        )
    )

    # Whole transcodes, as a WADO-RS frame request runs them.
    native = ct.astype("<u2").tobytes()
    for label, data, source, target in (
        (
            "transcode SV1 -> Explicit VR LE",
            sv1,
            uid.JPEGLosslessSV1,
            pixels.EXPLICIT_VR_LITTLE_ENDIAN,
        ),
        (
            "transcode J2K -> Explicit VR LE",
            j2k,
            uid.JPEG2000Lossless,
            pixels.EXPLICIT_VR_LITTLE_ENDIAN,
        ),
        ("transcode SV1 -> J2K lossless", sv1, uid.JPEGLosslessSV1, pixels.JPEG_2000_LOSSLESS),
    ):

        def transcode(
            _variant: str, data: bytes = data, source: str = source, target: str = target
        ) -> bytes:
            return pixels.transcode_frame(data, source, target, CT_FORMAT).data

        if target == pixels.EXPLICIT_VR_LITTLE_ENDIAN:
            check: Callable[[Any], bool] = lambda out: out == native  # noqa: E731
        else:
            check = lambda out: bool(np.array_equal(imagecodecs.jpeg2k_decode(out), ct))  # noqa: E731
        found.append(Case(label, transcode, check, setup=preference))
    return found


# --------------------------------------------------------------------------- timing


def rate(case: Case, variant: str, frames: int, threads: int) -> tuple[float, float]:
    """Correct results per second, and the cores busy meanwhile (process CPU s / wall s),
    with ``threads`` threads doing ``frames`` runs each.

    Cores busy near 2 with two threads means the two ran at once (the codec released the
    GIL); near 1, they took turns. Unlike the rate, that reading holds on a loaded machine.
    """
    results: list[list[Any]] = [[] for _ in range(threads)]

    def work(into: list[Any]) -> None:
        for _ in range(frames):
            into.append(case.run(variant))

    workers = [threading.Thread(target=work, args=(into,)) for into in results]
    with case.setup(variant):
        start, cpu = time.perf_counter(), time.process_time()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed, busy = time.perf_counter() - start, time.process_time() - cpu
    correct = sum(1 for into in results for result in into if case.check(result))
    return correct / elapsed, busy / elapsed


def gil_held_share(case: Case, variant: str, frames: int) -> float:
    """Share of the time (%) a pure-Python thread could not get the GIL while ``case`` ran.

    A probe thread sleeps 0.5 ms at a time (sleeping releases the GIL) and adds up how late
    it gets the GIL back. While a codec holds the GIL, the probe waits for the rest of the
    call; while it runs without it, the probe runs at once. Unlike throughput, this does not
    depend on a second core being free.
    """
    nap = 0.0005
    late = 0.0
    done = threading.Event()

    def probe() -> None:
        nonlocal late
        while not done.is_set():
            start = time.perf_counter()
            time.sleep(nap)
            late += max(time.perf_counter() - start - nap, 0.0)

    prober = threading.Thread(target=probe)
    with case.setup(variant):
        start = time.perf_counter()
        prober.start()
        for _ in range(frames):
            case.run(variant)
        done.set()
        prober.join()
        elapsed = time.perf_counter() - start
    return 100 * late / elapsed


COLUMNS = ("old 1t", "old 2t", "cores", "GIL %", "new 1t", "new 2t", "cores", "GIL %", "new/old")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (median)")
    parser.add_argument("--frames", type=int, default=20, help="frames per thread and round")
    parser.add_argument("--only", default="", help="run only cases whose name contains this")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    print(f"imagecodecs {imagecodecs.__version__}, pydicom {pydicom.__version__}, {os.cpu_count()}")
    print(f"CPUs. Correct frames/s, median of {args.rounds} rounds of {args.frames} frames per")
    print("thread; 'cores' = CPU seconds per second while two threads ran (2 = both at once);")
    print("'GIL %' = share of the time another Python thread was kept from the GIL (near 100")
    print("when the codec holds it, low when not); new/old compares the 2-thread rates.")
    header = f"{'case':40s}" + "".join(f"{name:>9s}" for name in COLUMNS)
    print(header)
    print("-" * len(header))
    for case in cases():
        if args.only and args.only.lower() not in case.name.lower():
            continue
        rates: dict[tuple[str, int], list[float]] = {}
        cores: dict[str, list[float]] = {}
        for variant in (OLD, NEW):  # warm-up: first calls load libraries and tables
            with case.setup(variant):
                case.run(variant)
        for _ in range(args.rounds):
            for threads in (1, 2):
                for variant in (OLD, NEW):
                    frames_per_second, busy = rate(case, variant, args.frames, threads)
                    rates.setdefault((variant, threads), []).append(frames_per_second)
                    if threads == 2:
                        cores.setdefault(variant, []).append(busy)
        held = {variant: gil_held_share(case, variant, args.frames) for variant in (OLD, NEW)}
        med = {key: statistics.median(values) for key, values in rates.items()}
        old1, old2, new1, new2 = (med[(v, t)] for v in (OLD, NEW) for t in (1, 2))
        ratio = f"{new2 / old2:8.2f}x" if old2 else "        -"
        print(
            f"{case.name:40s}{old1:9.0f}{old2:9.0f}{statistics.median(cores[OLD]):9.2f}"
            f"{held[OLD]:9.0f}{new1:9.0f}{new2:9.0f}{statistics.median(cores[NEW]):9.2f}"
            f"{held[NEW]:9.0f}{ratio}" + (f"  ({case.note})" if case.note else ""),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
