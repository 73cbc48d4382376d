"""Allows `python -m modelseal`."""

import sys

from modelseal.cli.main import main

sys.exit(main())
