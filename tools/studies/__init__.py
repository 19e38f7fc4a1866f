"""One-off studies: measurements behind a design choice, kept so that their figures can be
reproduced (`python -m tools.studies.NAME` from the repository root)."""
