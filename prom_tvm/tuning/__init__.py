"""Tuning the PROM kernels: task extraction, measurement (local / RPC), JSON logs."""
