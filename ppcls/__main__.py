"""python -m ppcls: the ppcls command."""
import sys

from .cli import main

sys.exit(main())
