"""prom_tvm: compile PROM-quantized CNNs (ternary pointwise convs, int8 elsewhere) with TVM."""

__version__ = "0.1.0"
