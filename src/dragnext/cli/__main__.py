"""``python -m dragnext.cli ...``: the same as ``dragnext ...``."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
