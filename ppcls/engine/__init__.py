from .engine import MODES, Engine, TrainResult
from .evaluation import EvalResult
from .loop import NonFiniteLossError, TrainState

__all__ = ["Engine", "MODES", "TrainResult", "EvalResult", "NonFiniteLossError", "TrainState"]
