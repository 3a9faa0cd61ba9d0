import sys
from pathlib import Path

# tests import small shared helpers (kernel_harness) from this folder
sys.path.insert(0, str(Path(__file__).parent))
