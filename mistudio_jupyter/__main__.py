"""`python -m mistudio_jupyter` runs the `mistudio` command."""

import sys

from .cli import main

sys.exit(main())
