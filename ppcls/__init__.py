"""ppcls: a PaddleClas-layout model zoo and training toolkit for DLA, RLA-Net, ReXNet and
Residual Attention Networks."""
__version__ = "0.1.0"

import warnings as _warnings

# Paddle's import warns about a missing compiler cache (irrelevant to users of this package).
_warnings.filterwarnings("ignore", message="No ccache found")
