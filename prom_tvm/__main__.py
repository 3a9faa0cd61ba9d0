"""``python -m prom_tvm <command>``: see prom_tvm.cli."""

import sys

from prom_tvm.cli import main

if __name__ == "__main__":
    sys.exit(main())
