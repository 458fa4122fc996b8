"""i24net benchmarks: ``make bench`` (``python -m bench``)."""
