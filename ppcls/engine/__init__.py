from .engine import Engine, NonFiniteLossError

__all__ = ["Engine", "NonFiniteLossError"]
