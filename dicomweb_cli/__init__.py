"""``dicomweb``: a command-line client for this DICOMweb server (and any STOW-RS server).

It is a client, shipped to the people who call the service: it talks HTTP only and never
imports the server's packages (``dicom_core``, ``functions_host``), so it works against a
deployed service from any machine (an import-linter contract in pyproject.toml keeps it so).
"""
