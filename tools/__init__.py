"""Generators of the results and benchmark tables, the demo recording and the generated calls;
run from the repository root (`python tools/NAME.py`, or `python -m tools.NAME` for those that
import another tool)."""
