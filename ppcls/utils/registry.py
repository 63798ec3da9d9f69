"""Name -> class registries for config-driven construction (datasets, ops, losses, metrics, ...).
Names are looked up explicitly, never evaluated."""
from .errors import unknown_name_error


class Registry(dict):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def register(self, obj=None, name=None):
        def deco(o):
            key = name or o.__name__
            if key in self and self[key] is not o:
                raise ValueError(f"{self.kind} '{key}' registered twice")
            self[key] = o
            return o
        return deco(obj) if obj is not None else deco

    def get(self, name, where=None):
        if name not in self:
            raise unknown_name_error(self.kind, name, self.keys(), where=where)
        return self[name]
