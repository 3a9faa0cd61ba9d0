"""Schedule rule name -> CUDA schedule, for every prom_tvm kernel that has one (the int8 add
is elementwise: dlight's Fallback rule schedules it)."""

from .cuda_int8 import cuda_int8_rules
from .cuda_ternary import SCHEDULE_RULES as _TERNARY

CUDA_RULES = {**_TERNARY, **cuda_int8_rules()}
