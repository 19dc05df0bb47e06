"""Benchmark scripts. Run them from the checkout root as modules, e.g.
`python -m benchmarks.train_step --json OUT` (commands and figures in
BENCHMARKS.md): `-m` puts the checkout first on the import path, so
tf_pixintra imports without being installed."""
