"""Performance formulas: training step time and memory, serving latency and throughput, calibration."""
