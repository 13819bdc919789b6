"""DICOM JSON (PS3.18 F.2) of a dataset, without bulk data, for metadata and QIDO responses.

The conformance statement leaves binary VRs out of metadata entirely (not even as
BulkDataURI), so they are dropped here, at every depth. The result is computed once at store
time and kept with the instance; metadata requests never re-read the stored file.

Why this package does not simply call pydicom's ``DataElement.to_json_dict`` per element:
doing so first turns every raw element into a ``DataElement`` holding value objects (``IS``,
``DSfloat``, ``PersonName``, ``UID``...), parses raw sequences into item datasets, and then
unpicks it all again, about 25 us an element, which capped store throughput. Elements still
in the raw form ``dcmread`` leaves them in (sequences of defined length included) are
therefore converted straight from their bytes, following pydicom's decoding rules so the
values match what pydicom would give; everything unusual goes through pydicom's own
conversion instead, so the result does not depend on which path was taken.

Where pydicom's JSON is wrong per PS3.18 F.2, or where it raised, this package differs on
purpose (each case is tested in tests/unit/test_dicomjson.py):

* F.2.2: a person name carries only its *non-empty* component groups; pydicom always writes
  "Alphabetic", even as "" (``=山田^太郎`` gave ``{"Alphabetic": "", "Ideographic": ...}``).
* F.2.5: an empty value inside a multi-valued attribute is ``null``. pydicom wrote "" for
  strings, and for IS, DS and PN it failed on the empty value and dropped every value of the
  attribute (``1\\\\3`` gave ``{"vr": "IS"}`` instead of ``[1, null, 3]``).
* F.2.3: "vr" must be a real VR. An element whose VR stays ambiguous after pydicom's
  correction (the retired "US or SS or OW" of Gray LUT Data, which pydicom wrote as
  InlineBinary, or a correction that fails) is left out like the other binary VRs.
* Never raising: pydicom raised for numeric values whose length is not a multiple of the value
  size, for IS values such as "inf", and for failed VR corrections; such elements become
  ``{"vr": VR}``. Integers outside what JSON numbers here can carry (orjson's 64-bit range,
  far outside IS's 32-bit range anyway) also become ``{"vr": VR}`` instead of making
  ``dataset_json_bytes`` raise.

The modules, from the bottom up:

* ``values``: the shape of attribute objects that every path shares.
* ``raw_values``: one converter per VR from raw bytes.
* ``raw_sequences``: the parser of raw sequences of defined length.
* ``converted``: elements pydicom has already converted.
* ``walk``: the walk over a dataset that picks a path per element, and the entry points.
"""

from dicom_core.domain.dicomjson.values import BINARY_VRS
from dicom_core.domain.dicomjson.walk import dataset_json, dataset_json_bytes

__all__ = ["BINARY_VRS", "dataset_json", "dataset_json_bytes"]
