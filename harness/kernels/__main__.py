"""`python -m harness.kernels MACHINE_KEY`: build the fused kernels into $HARNESS_HOME's cache, or
find them there (harness.kernels.build's child). Progress goes to stderr; a refusal is one line on
stdout, for the parent to raise, and exit 2."""

import sys

from harness import kernels
from harness.errors import HarnessError

if len(sys.argv) != 2:
    print("usage: python -m harness.kernels MACHINE_KEY (the machine key harness.kernels.build passes)")
    sys.exit(2)
try:
    kernels.load(sys.argv[1])
except HarnessError as exc:
    print(exc)
    sys.exit(2)
