"""`python -m assistant ...` is the `qwen-edit-chat` command."""

import sys

from .cli import main

sys.exit(main())
