"""ppcls: a PaddleClas-layout model zoo and training toolkit for DLA, RLA-Net, ReXNet and
Residual Attention Networks."""
__version__ = "0.1.0"
