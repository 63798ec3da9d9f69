"""What a registered model is: its counts, stages and known weights (``ppcls.model_info``, ``ppcls
models``, ``tools/paras_flops.py``)."""
from ..utils.model_stats import count_macs, count_paper_flops, count_params, paper_units
from . import build_model
from .registry import CARDS, MODELS
from .weight_table import weights_of


def model_summary(name, input_size=224, class_num=None, **arch_kwargs):
    """Everything tools/paras_flops.py prints, as a dict. ``arch_kwargs`` are model options (Arch.*)."""
    cfg = dict(arch_kwargs, name=name)
    if class_num is not None:
        cfg["class_num"] = class_num
    model = build_model(cfg)
    shape = (1, 3, input_size, input_size)
    params = count_params(model)
    flops = count_paper_flops(model, shape)
    pp, pf = paper_units(params, flops)
    return {"name": name, "input_size": input_size, "params": params, "macs": count_macs(model, shape),
            "paper_flops": flops, "paper_params": pp, "paper_flops_str": pf}


def model_info(name, input_size=None, **options):
    """``{name, family, doc, params, macs, input_size, stages, weights}`` of a registered model.

    Without options or ``input_size`` the counts are the model card's (measured at the reference size,
    224 or 32 for the CIFAR nets); otherwise they are measured on the model built with ``options``.
    ``stages`` lists the stages ``return_stages`` can pick (index, name, channels, stride)."""
    factory = MODELS.get(name, where="model")
    card = CARDS.get(name)
    model = build_model(dict(options, name=name))
    size = input_size or (card.input_size if card else 224)
    if card is not None and not options and size == card.input_size:
        params, macs = card.params, card.macs
    else:
        params, macs = count_params(model), count_macs(model, (1, 3, size, size))
    return {"name": name, "family": card.family if card else None, "doc": (factory.__doc__ or "").strip(),
            "params": params, "macs": macs, "input_size": size,
            "stages": [{"index": d["stage"], "name": d["name"], "channels": d["channels"], "stride": d["reduction"]}
                       for d in getattr(model, "feature_info", [])],
            "weights": [w.describe(name) for w in weights_of(name)]}
