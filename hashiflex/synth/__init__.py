"""Gate-level synthesis onto standard cells and static timing (docs/cost.md, "Real cells").

liberty: the cell libraries (ASAP7 RVT TT shipped; `--liberty` for others); flow: the Yosys and
OpenSTA scripts and the report parser; run: one module or a whole build, parallel and cached;
build: the modules of a generated build as jobs, and the chip's totals.
"""
