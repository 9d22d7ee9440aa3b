"""``python -m dragnext.ui [--host H] [--port P] [--model M]``: the same as ``dragnext ui``."""

import sys

from ..cli.ui import main

if __name__ == "__main__":
    sys.exit(main())
