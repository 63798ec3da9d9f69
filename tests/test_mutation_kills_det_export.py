"""ppcls.det.export (found open by mutation testing, bash tests/mutation.sh det/export.py): a detector export
hands the folder to ppdet's exporter and returns it; when the exporter fails (ppdet 2.6.0's does on Paddle 3.3)
the user gets one line naming the Paddle version, the exception and its first line, and what works instead."""
import paddle
import pytest

from ppcls.det.export import export_detector
from ppcls.utils.errors import RunError


class Trainer:
    """What export_detector uses of ppdet's Trainer: export(output_dir)."""

    def __init__(self, error=None):
        self.error, self.exported = error, []

    def export(self, output_dir):
        self.exported.append(output_dir)
        if self.error is not None:
            raise self.error


def test_a_detector_export_goes_to_the_folder_given(tmp_path):
    trainer = Trainer()
    assert export_detector(trainer, str(tmp_path / "out")) == str(tmp_path / "out")
    assert trainer.exported == [str(tmp_path / "out")]


@pytest.mark.parametrize("error, shown", [
    (ValueError("\n  shape mismatch in op reshape2\n  (at tensor x)\n"), "ValueError: shape mismatch in op reshape2"),
    (NotImplementedError(), "NotImplementedError: "),
    (KeyError("  "), "KeyError: '  '"),
])
def test_a_failing_exporter_is_one_line_naming_the_failure_and_the_way_round_it(tmp_path, error, shown):
    with pytest.raises(RunError) as e:
        export_detector(Trainer(error), str(tmp_path))
    assert str(e.value) == (f"ppdet 2.6.0's export does not run on this Paddle ({paddle.__version__}): {shown}. "
                            "Predict with the dygraph model instead: ppcls det infer -c CONFIG -o weights=... "
                            "--infer_dir DIR")
    assert e.value.exit_code == 3
