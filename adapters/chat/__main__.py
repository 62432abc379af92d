"""`python -m adapters.chat`: the same as the `wschat` command."""

import sys

from .cli import main

sys.exit(main())
