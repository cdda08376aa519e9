"""`python -m editing <method> --checkpoint FILE --out DIR ...` (see editing/cli.py; `hspace` has its own CLI)."""
import sys

from editing.cli import main

sys.exit(main())
