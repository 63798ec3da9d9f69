"""tools/best.py and tools/eval_visual.py on the engine's logs and on a launch's worker logs."""
import os

from engine_utils import run_tool, tiny_config


def test_log_tools_on_engine_logs(tmp_path):
    path, _ = tiny_config(tmp_path, epochs=3, per_class=8)  # the logs of 3 epochs are the point, not the accuracy
    r = run_tool("train.py", "-c", path)
    assert r.returncode == 0, r.stderr[-1000:]
    out = os.path.join(str(tmp_path), "output", "ResNet18")
    from ppcls.utils.log_tools import best_epochs, parse_log
    parsed = parse_log(os.path.join(out, "train.log"))
    assert sorted(parsed["eval"]) == [1, 2, 3] and sorted(parsed["train"]) == [1, 2, 3]
    r = run_tool("best.py", "--log-dir", out)
    assert r.returncode == 0
    best = best_epochs(parsed)
    assert f"best top1: {best['top1'][0]:.5f} at epoch {best['top1'][1]}" in r.stdout
    r = run_tool("eval_visual.py", "--log-dir", out, "--out-dir", str(tmp_path / "plots"))
    assert r.returncode == 0, r.stderr
    for name in ("acc1_plot.png", "loss_plot.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_best_on_multi_worker_logs(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    for rank in range(2):
        (log / f"workerlog.{rank}").write_text(
            "[2026/01/01 00:00:00] ppcls INFO: [Eval][Epoch 1][Avg]CELoss: 2.00000, loss: 2.00000, top1: 0.40000, top5: 0.80000 (10 samples)\n"
            "[2026/01/01 00:00:00] ppcls INFO: [Eval][Epoch 2][Avg]CELoss: 1.00000, loss: 1.00000, top1: 0.60000, top5: 0.80000 (10 samples)\n"
            "[2026/01/01 00:00:00] ppcls INFO: [Eval][Epoch 2][Avg]EMA CELoss: 1.00000, loss: 1.00000, top1: 0.90000, top5: 0.90000 (10 samples)\n")
    r = run_tool("best.py", "--log-dir", str(log))
    assert "best top1: 0.60000 at epoch 2" in r.stdout and "best top5: 0.80000 at epoch 1" in r.stdout
    # the EMA evaluations are reported apart, never mixed into the plain model's best
    assert "best EMA top1: 0.90000 at epoch 2" in r.stdout
    assert run_tool("best.py", "--log-dir", str(tmp_path / "nothing")).returncode == 2
