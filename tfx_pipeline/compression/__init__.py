"""Cheaper variants of a blessed teacher: distilled students, int8 kernels,
their speed and cost measured on this machine (see `components/compressor.py`)."""
