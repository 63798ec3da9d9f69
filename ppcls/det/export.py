"""Export of a detector to Paddle Inference through ppdet's exporter.

On Paddle 3.3 ppdet 2.6.0's exporter does not finish (see ``EXPORT_FAILURE``); the command reports the
exact failure in one line instead of a traceback, and says what works instead (dygraph ``infer``)."""
from ..utils.errors import RunError

EXPORT_FAILURE = ("ppdet 2.6.0's export does not run on this Paddle ({paddle}): {error}. "
                  "Predict with the dygraph model instead: ppcls det infer -c CONFIG -o weights=... --infer_dir DIR")


def export_detector(trainer, output_dir):
    """``trainer.export(output_dir)``; a failure of the exporter becomes a RunError naming it."""
    import paddle
    try:
        trainer.export(output_dir)
    except Exception as e:  # the exporter's failure is the finding: report it in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise RunError(EXPORT_FAILURE.format(paddle=paddle.__version__, error=f"{type(e).__name__}: {first}"))
    return output_dir
