"""Small real models trained on data that ships with packages (no downloads): demo, tests and benchmarks."""
