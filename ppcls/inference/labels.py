"""Label lists: ``id name`` lines (PaddleClas's class_id_map_file), split at the first space."""
import os

from ..utils.errors import ConfigError


def read_label_list(path):
    """``{id: name}`` from a label file (an empty dict for no path)."""
    if not path:
        return {}
    if not os.path.isfile(path):
        raise ConfigError(f"class_id_map_file not found: {path}")
    labels = {}
    with open(path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(" ", 1)
            try:
                labels[int(parts[0])] = parts[1] if len(parts) > 1 else ""
            except ValueError:
                raise ConfigError(f"{path}:{lineno}: expected 'class_id name'") from None
    return labels


def label_names(path):
    """The names of a label file as a list indexed by class id (None for no path or an empty file)."""
    lm = read_label_list(path)
    return [lm.get(i, "") for i in range(max(lm) + 1)] if lm else None
