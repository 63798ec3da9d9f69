"""Throughput table for one model: training (dygraph, to_static, AMP), dygraph inference, the exported
Paddle Inference predictor (oneDNN), onnxruntime, and the input pipeline.

    python tools/benchmark.py -a DLA34 --batch-size 8 --mode train,infer,predictor,onnx
    python tools/benchmark.py -a DLA60 --mode data,pipeline -c configs/DLA/DLA60.yaml --batch-size 32
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppcls.engine.cli import run_guarded  # noqa: E402

ALL = ["train", "train_static", "amp_o1", "amp_o2", "infer", "predictor", "predictor_no_onednn", "onnx"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-a", "--arch", required=True)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--mode", default="train,infer,predictor",
                   help="comma list of: " + ", ".join(ALL + ["data", "pipeline", "all"]))
    p.add_argument("--threads", default="0", help="CPU threads, comma list to compare (0 = all cores)")
    p.add_argument("-c", "--config", default=None, help="training config for the data / pipeline modes")
    p.add_argument("--workers", type=int, default=2, help="loader workers for the data / pipeline modes")
    p.add_argument("--windows", type=int, default=3, help="timed windows (the median is reported)")
    p.add_argument("--iters", type=int, default=3, help="steps per timed window")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    def go():
        from ppcls.utils.benchmark import bench_train_pipeline, run_benchmarks
        from ppcls.utils.device import available_cores
        modes = ALL if a.mode == "all" else [m.strip() for m in a.mode.split(",") if m.strip()]
        rows = []
        for t in [int(x) for x in a.threads.split(",")]:
            threads = t or available_cores()
            plain = [m for m in modes if m != "pipeline"]
            if plain:
                rows += run_benchmarks(a.arch, a.batch_size, a.image_size, plain, threads, a.config, a.workers,
                                       windows=a.windows, iters=a.iters)
            if "pipeline" in modes:
                res, note = (None, "needs -c CONFIG") if not a.config else \
                    bench_train_pipeline(a.config, a.arch, a.batch_size, a.workers, threads=threads)
                rows.append({"model": a.arch, "mode": "pipeline", "batch": a.batch_size, "threads": threads,
                             "images_per_s": None if res is None else round(res["images_per_s"], 2),
                             "step_s": None if res is None else round(res["step_s"], 4),
                             "reader_share": None if res is None else round(res["reader_share"], 4),
                             "note": note})
        if a.json:
            print(json.dumps(rows))
            return
        print(f"{'model':<16}{'mode':<22}{'batch':>6}{'threads':>8}{'img/s':>10}{'step s':>9}"
              f"{'reader %':>9}{'peak MB':>9}  note")
        for r in rows:
            ips = "-" if r["images_per_s"] is None else f"{r['images_per_s']:.2f}"
            st = "-" if r.get("step_s") is None else f"{r['step_s']:.3f}"
            rs = "-" if r.get("reader_share") is None else f"{100 * r['reader_share']:.1f}"
            pk = "-" if r.get("peak_rss_mb") is None else f"{r['peak_rss_mb']:.0f}"
            print(f"{r['model']:<16}{r['mode']:<22}{r['batch']:>6}{r['threads']:>8}{ips:>10}{st:>9}{rs:>9}{pk:>9}"
                  f"  {r.get('note') or ''}")
    run_guarded(go)


if __name__ == "__main__":
    main()
