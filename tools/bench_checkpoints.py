"""Time and disk of the training checkpoints as the engine saves them: at each epoch end one step under
latest, best_model (the metric improves every epoch here) and epoch_N, then mid-epoch saves of latest.

    python tools/bench_checkpoints.py [--arch ResNet18] [--class-num 1000] [--epochs 3] [--dir /tmp]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))


def disk_mb(path):
    """Bytes on disk under ``path``, each hard-linked file counted once (du does), in MB."""
    return int(subprocess.check_output(["du", "-sb", path]).split()[0]) / 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="ResNet18")
    ap.add_argument("--class-num", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--mid-epoch-saves", type=int, default=3)
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the checkpoints go (removed after)")
    args = ap.parse_args()

    import paddle
    from ppcls.arch import build_model
    from ppcls.engine.checkpoint import Checkpoints

    paddle.seed(0)
    model = build_model({"name": args.arch, "class_num": args.class_num})
    opt = paddle.optimizer.Momentum(learning_rate=0.1, momentum=0.9, parameters=model.parameters())
    model(paddle.randn([2, 3, 64, 64])).mean().backward()  # one step: the optimizer has its velocities
    opt.step()
    opt.clear_grad()
    out = tempfile.mkdtemp(dir=args.dir)
    try:
        checkpoints = Checkpoints(out, model, opt)
        before = disk_mb(out)
        for epoch in range(1, args.epochs + 1):
            states = dict(epoch=epoch, metric=0.1 * epoch, best_epoch=epoch, global_step=epoch, iter=0)
            start = time.perf_counter()
            checkpoints.save(["latest", "best_model", f"epoch_{epoch}"], states)
            seconds, now = time.perf_counter() - start, disk_mb(out)
            print(f"epoch {epoch}: save {seconds:.2f} s, disk +{now - before:.0f} MB, total {now:.0f} MB")
            before = now
        for k in range(1, args.mid_epoch_saves + 1):
            states = dict(epoch=args.epochs + 1, metric=0.1 * args.epochs, best_epoch=args.epochs,
                          global_step=args.epochs + k, iter=k)
            start = time.perf_counter()
            checkpoints.save("latest", states)
            seconds, now = time.perf_counter() - start, disk_mb(out)
            print(f"mid-epoch save {k} of latest: {seconds:.2f} s, disk +{now - before:.0f} MB, total {now:.0f} MB")
            before = now
        print("files:", " ".join(sorted(os.listdir(out))))
    finally:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
