"""How often a generator's output differs between processes: run one forward pass of a seeded, randomly
initialised generator on a seeded random image in N fresh processes and count the distinct outputs (float32
bytes). With ``--no-onednn`` the convolutions run without oneDNN.

    python examples/benchmarks/cross_process_determinism.py --runs 20 --size 32 --arch resnet_3blocks --ngf 24
"""

import argparse
import collections
import json
import os
import platform
import subprocess
import sys

import torch

CHILD = """
import hashlib, sys, torch
from i2i.cyclegan.config import GeneratorConfig
from i2i.cyclegan.networks import define_G
arch, ngf, size, onednn = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
torch.backends.mkldnn.enabled = onednn
torch.manual_seed(0)
gen = define_G(GeneratorConfig(arch=arch, ngf=ngf)).eval()
x = torch.rand(1, 3, size, size) * 2 - 1
with torch.inference_mode():
    print(hashlib.md5(gen(x).contiguous().numpy().tobytes()).hexdigest())
"""

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--runs", type=int, default=20)
ap.add_argument("--size", type=int, default=32)
ap.add_argument("--arch", default="resnet_3blocks")
ap.add_argument("--ngf", type=int, default=24)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--no-onednn", action="store_true")
args = ap.parse_args()
env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
hashes = collections.Counter(
    subprocess.run([sys.executable, "-c", CHILD, args.arch, str(args.ngf), str(args.size),
                    "0" if args.no_onednn else "1"], env=env, capture_output=True, text=True,
                   check=True).stdout.strip()
    for _ in range(args.runs))
counts = sorted(hashes.values(), reverse=True)
print(f"{args.arch} ngf {args.ngf}, {args.size} px, {args.threads} thread(s), oneDNN "
      f"{'off' if args.no_onednn else 'on'}: {len(hashes)} distinct output(s) over {args.runs} processes "
      f"({', '.join(map(str, counts))})")
print(json.dumps({"benchmark": "cross_process_determinism",
                  "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
                  "versions": {"python": platform.python_version(), "torch": torch.__version__},
                  "settings": vars(args), "distinct_outputs": len(hashes), "counts": counts}))
