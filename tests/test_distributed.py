"""Real 2-process data-parallel runs on CPU (gloo) through paddle.distributed.launch."""
import os
import subprocess
import sys

import pytest

from engine_utils import ROOT, eval_avg, run_tool, tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.launch]


def launch(tmp_path, tool, *args, nproc=2, timeout=600):
    log_dir = os.path.join(str(tmp_path), f"log_{tool}")
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc), "--log_dir", log_dir,
           os.path.join(ROOT, "tools", tool), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), timeout=timeout)
    return r, log_dir


@pytest.fixture(scope="module")
def dist_run(module_tmp):
    tmp = module_tmp("dist")
    path, data = tiny_config(tmp, epochs=1)
    with open(os.path.join(data, "val_list.txt"), "a") as f:
        f.write("val/c0_0.jpg 0\n")  # 13 samples: the ranks get 7 and 6
    r, log_dir = launch(tmp, "train.py", "-c", path)
    return tmp, path, r, log_dir


def test_two_process_training(dist_run):
    tmp, path, r, log_dir = dist_run
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    logs = [open(os.path.join(log_dir, f"workerlog.{i}")).read() for i in range(2)]
    assert all("[Train][Epoch 1/1]" in l for l in logs)
    # each rank trains on its half of the 120 images: 5 iterations of 12
    assert "[Iter: 4/5]" in logs[0] and "[Iter: 4/5]" in logs[1]
    assert "Already save model in" in logs[0] and "Already save model in" not in logs[1]
    assert os.path.isfile(os.path.join(tmp, "output", "ResNet18", "latest.pdparams"))
    assert "(13 samples)" in logs[0] and "(13 samples)" in logs[1]


def test_distributed_eval_equals_single_process(dist_run):
    tmp, path, r, _ = dist_run
    prefix = os.path.join(str(tmp), "output", "ResNet18", "latest")
    single = run_tool("eval.py", "-c", path, "-o", f"Global.pretrained_model={prefix}")
    assert single.returncode == 0, single.stderr[-2000:]
    r2, log_dir = launch(tmp, "eval.py", "-c", path, "-o", f"Global.pretrained_model={prefix}")
    assert r2.returncode == 0, (r2.stdout + r2.stderr)[-3000:]
    multi = open(os.path.join(log_dir, "workerlog.0")).read()
    l1, t1, n1 = eval_avg(single.stdout)
    l2, t2, n2 = eval_avg(multi)
    assert n1 == n2 == 13
    assert t1 == pytest.approx(t2, abs=1e-6) and l1 == pytest.approx(l2, rel=1e-4)


def test_two_nodes_with_master_and_nnodes(tmp_path):
    """Multi-node launch (--master/--nnodes/--rank), simulated as two 1-process nodes on loopback."""
    import random
    path, _ = tiny_config(tmp_path, epochs=1)
    port = str(random.randint(20000, 30000))
    procs = []
    for rank in (0, 1):
        cmd = [sys.executable, "-m", "paddle.distributed.launch", "--master", f"127.0.0.1:{port}", "--nnodes", "2",
               "--rank", str(rank), "--nproc_per_node", "1", "--log_dir", str(tmp_path / f"log{rank}"),
               os.path.join(ROOT, "tools", "train.py"), "-c", path]
        procs.append(subprocess.Popen(cmd, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    codes = [p.wait(timeout=600) for p in procs]
    assert codes == [0, 0]
    import glob
    logs = [open(sorted(glob.glob(str(tmp_path / f"log{r}" / "workerlog.*")))[0]).read() for r in (0, 1)]
    assert all("[Train][Epoch 1/1][Iter: 4/5]" in l and "(12 samples)" in l for l in logs)
    assert "Already save model in" in logs[0] and "Already save model in" not in logs[1]
