"""`python -m actlab` (installed) and `python -m core` (from a clone) are the `actlab` command."""
import sys

from .cli import main

sys.exit(main())
