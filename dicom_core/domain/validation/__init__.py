"""Attribute validation for the store transaction (STOW-RS).

The conformance statement splits validation outcomes in two: a problem in a *required*
attribute (or, in API v1, a searchable one) rejects the instance, while any other problem only
produces a warning and the instance is still stored. This package therefore does not decide
anything about rejection; it only finds problems and describes them, one per top-level
attribute, so the store service can apply whichever policy the API version calls for.

Design choices worth knowing about:

* Values are checked from the *raw* bytes whenever pydicom has not converted them yet. Going
  through ``elem.value`` would make pydicom parse IS/DS/PN values, which can raise or warn for
  exactly the malformed values we are here to report; reading the bytes ourselves keeps the
  checks total and leaves the caller's dataset untouched.
* Trailing spaces and trailing NUL bytes are treated as padding everywhere, because the service
  promises that NUL-padded values are accepted without a warning.
* UIDs follow the service's lenient rule (letters, digits, '.', '-'; 1..64 characters) rather
  than DICOM's digits-and-dots rule, since that is what clients of the real service rely on.
* Nothing here may raise for a dataset pydicom managed to read: every per-attribute failure
  (undecodable bytes, sequences that do not parse, odd Python objects set by hand) becomes a
  problem instead, so one broken attribute cannot abort a whole store request.
* pydicom may emit warnings while converting values. The test suite treats warnings as errors,
  so the public functions silence them locally. ``warnings.catch_warnings`` mutates
  process-wide state, so concurrent callers in other threads may briefly see the filter too.

The modules, from the bottom up:

* ``messages``: how messages name attributes and quote values.
* ``uids``: the service's UID rule, also used for URL segments.
* ``vr_rules``: what each VR demands of its values.
* ``values``: getting at an element's values and VR without converting the dataset.
* ``checks``: the walk over elements, sequences and datasets, and the entry points.
"""

from dicom_core.domain.validation.checks import (
    AttributeProblem,
    attribute_comment,
    dataset_problems,
    element_problem,
)
from dicom_core.domain.validation.uids import UID_MAX_LENGTH, is_valid_uid, uid_problem
from dicom_core.domain.validation.vr_rules import INTEGER_RANGES, IS_RANGE

__all__ = [
    "INTEGER_RANGES",
    "IS_RANGE",
    "UID_MAX_LENGTH",
    "AttributeProblem",
    "attribute_comment",
    "dataset_problems",
    "element_problem",
    "is_valid_uid",
    "uid_problem",
]
