"""Speed benchmarks: the library against the straightforward baseline in the same run
(`python -m benchmarks --help`); current figures in benchmarks/RESULTS.md."""
