"""The one registry mechanism for everything looked up by name: models, data ops, batch ops,
datasets, losses, metrics, optimizers, LR schedules and checkpoint layouts.

A registered object is a class or a factory function; its signature says which options a config may
give it, so a misspelt option is caught before anything is built, with the nearest valid name.
Names are looked up, never evaluated.

Config entries name a component in one of two shapes, both read by ``split_entry``:
    {Name: {options}}            (PaddleClas lists: transform_ops, Loss.Train, Metric.Eval, ...)
    {name: Name, **options}      (sections: Optimizer, Optimizer.lr, DataLoader.Train.dataset)
"""
import inspect

from .errors import ConfigError, did_you_mean, unknown_name_error


def split_entry(entry, where, named_key=None):
    """``(name, options)`` of a config entry. With ``named_key`` (e.g. "name") the entry is a section
    ``{name: Name, **options}``; otherwise a one-key mapping ``{Name: {options}}``."""
    if named_key is not None:
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with '{named_key}', got {entry!r}")
        if named_key not in entry:
            raise ConfigError(f"{where}.{named_key}: required")
        options = {k: v for k, v in entry.items() if k != named_key}
        return entry[named_key], options
    if not isinstance(entry, dict) or len(entry) != 1:
        raise ConfigError(f"{where}: expected a one-key mapping {{Name: {{options}}}}, got {entry!r}")
    name, options = next(iter(entry.items()))
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ConfigError(f"{where}.{name}: options must be a mapping, got {options!r}")
    return name, dict(options)


def accepted_options(obj):
    """The option names ``obj`` (a class or a function) accepts, or None when it takes ``**kwargs``."""
    target = obj.__init__ if inspect.isclass(obj) and "__signature__" not in vars(obj) else obj
    params = inspect.signature(target).parameters.values()
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    # positional-only parameters are the caller's own inputs (e.g. a schedule's span), not options
    return [p.name for p in params if p.name not in ("self", "args")
            and p.kind not in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY)]


class Registry:
    def __init__(self, kind):
        self.kind = kind
        self._entries = {}

    # -- registration -------------------------------------------------------------------------
    def register(self, obj=None, name=None):
        """``@REG.register``, ``@REG.register(name="X")`` or ``REG.register(obj, name="X")``."""
        def deco(o):
            key = name or o.__name__
            if key in self._entries and self._entries[key] is not o:
                raise ValueError(f"{self.kind} '{key}' registered twice")
            self._entries[key] = o
            return o
        return deco(obj) if obj is not None else deco

    # -- lookup -------------------------------------------------------------------------------
    def __contains__(self, name):
        return name in self._entries

    def __getitem__(self, name):
        return self.get(name)

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)

    def names(self):
        return sorted(self._entries)

    def items(self):
        return self._entries.items()

    def get(self, name, where=None):
        if name not in self._entries:
            raise unknown_name_error(self.kind, name, self._entries, where=where)
        return self._entries[name]

    # -- validation and construction ------------------------------------------------------------
    def validate(self, name, options, where, extra=(), name_where=None):
        """The entry names a registered component and every option is one it accepts (or in ``extra``).
        ``where`` prefixes option errors, ``name_where`` (default ``where``.name) an unknown name."""
        obj = self.get(name, where=name_where or f"{where}.name")
        valid = accepted_options(obj)
        if valid is None:
            return obj
        valid = valid + [k for k in extra if k not in valid]  # a fixed argument may be an option too
        for key in options:
            if key not in valid:
                owner = "" if where.endswith(str(name)) else f" for {name}"
                raise ConfigError(f"{where}.{key}: unknown option{owner}" + did_you_mean(key, valid, listing=True))
        return obj

    def build(self, name, options=None, where=None, extra=(), name_where=None, **fixed):
        """Validate, then ``component(**fixed, **options)``; ``fixed`` are the caller's own arguments
        (e.g. a class count), which the options may override."""
        where = where or self.kind
        options = dict(options or {})
        obj = self.validate(name, options, where, extra=tuple(extra) + tuple(fixed), name_where=name_where)
        accepted = accepted_options(obj)
        kwargs = {k: v for k, v in fixed.items() if accepted is None or k in accepted}
        kwargs.update(options)
        return obj(**kwargs)

    def build_entry(self, entry, where, named_key=None, **fixed):
        """Build a ``{Name: {options}}`` entry, or with ``named_key`` a ``{name: Name, ...}`` section."""
        name, options = split_entry(entry, where, named_key)
        if named_key:
            return self.build(name, options, where, name_where=f"{where}.{named_key}", **fixed)
        return self.build(name, options, f"{where}.{name}", name_where=where, **fixed)

    def validate_entries(self, entries, where, extra=()):
        """A list of ``{Name: {options}}`` entries (None is an empty list)."""
        if entries is None:
            return
        if not isinstance(entries, list):
            raise ConfigError(f"{where}: expected a list of {{Name: {{options}}}} entries, got {type(entries).__name__}")
        for i, entry in enumerate(entries):
            name, options = split_entry(entry, f"{where}[{i}]")
            self.validate(name, options, f"{where}[{i}].{name}", extra, name_where=f"{where}[{i}]")

    def build_entries(self, entries, where, **fixed):
        return [self.build_entry(e, f"{where}[{i}]", **fixed) for i, e in enumerate(entries or [])]
