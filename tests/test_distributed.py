"""Training under a 2-process CPU launch (gloo): ranks stay in sync and only rank 0 writes."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

SCRIPT = textwrap.dedent("""
    import os, sys
    from safetensors.torch import save_file
    from i2i.cyclegan.run_config import default_config, merge_config
    from i2i.cyclegan.trainer import train

    data, run, model = sys.argv[1], sys.argv[2], sys.argv[3]
    cfg = merge_config(default_config(model), dict(
        dataroot=data, run_dir=run, generator={"arch": "resnet_6blocks", "ngf": 8}, discriminator={"ndf": 8},
        load_size=40, crop_size=32, num_workers=0, max_iters=5, save_every=2, log_every=1, sample_every=2,
        options={"pool_size": 2} if model == "cyclegan" else {"num_patches": 16}))
    res = train(cfg, device="cpu")
    rank = int(os.environ["RANK"])
    state = {k: v.contiguous() for k, v in res.nets["G_A"].state_dict().items()}
    save_file(state, os.path.join(os.path.dirname(run), f"rank{rank}.safetensors"))
""")


@pytest.mark.parametrize("model", ["cyclegan", "cut"])
def test_two_process_training_agrees(tmp_path, model):
    rng = np.random.default_rng(0)
    for domain in ("trainA", "trainB"):
        (tmp_path / "data" / domain).mkdir(parents=True)
        for i in range(5):
            arr = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "data" / domain / f"{i}.png")
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    run = tmp_path / "out" / "run"
    run.parent.mkdir()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29533", str(script), str(tmp_path / "data"), str(run), model],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_file(str(run.parent / "rank0.safetensors"))
    b = load_file(str(run.parent / "rank1.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    saved = load_file(str(run / "checkpoints" / "iter_00000005" / "G_A.safetensors"))
    for k in a:
        assert torch.equal(a[k], saved[k]), k
    # 5 images over 2 ranks = 3 iterations per epoch: 5 iterations -> one log line per iteration, written once
    lines = (run / "log.jsonl").read_text().splitlines()
    assert len(lines) == 5
    assert len(list((run / "samples").glob("*.png"))) == 2
    assert not list((run / "checkpoints").glob(".*"))   # no temp folders from a second writer
