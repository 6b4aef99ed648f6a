"""Speed benchmarks: bob's stage code paths against plain reference loops on the same models and data."""
