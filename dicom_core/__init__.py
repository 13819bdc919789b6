"""dicom_core: the DICOMweb service behind function_app.py.

Four kinds of code live here, kept apart so a reader knows what a line may import:
``domain`` (pydicom, no I/O), ``services`` (one per transaction family, no HTTP),
``storage`` (ports and their local/azure adapters) and ``web`` (the only HTTP-aware code).
"""
