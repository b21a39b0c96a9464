"""Benchmark: one Ctrl-X image over plain classifier-free-guided sampling of the same model, steps and size.

- ``plain``: ``i2i generate``'s pipeline (CFG with the same DDIM scheduler, steps and eta; its latents equal
  diffusers' own pipeline's, ``tests/test_generate.py``) on the same loaded model, decoded by the same float32 VAE;
- ``ctrlx structure+appearance``: a structure image and an appearance image (4 UNet rows on the controlled steps,
  then 2), only the image decoded (as ``i2i ctrlx`` without ``--save-branches``);
- ``ctrlx structure only``: the appearance generated from the prompt alongside (5 rows, then 4);
- ``ctrlx + self-recurrence`` (``--self-recurrence``): the official scripts' [0.1, 0.5, 2] on top of the first.

The ratio is median(ctrlx) / median(plain) over ``--repeats`` runs after a warm-up, the runs alternating; the
same ratio of the process's CPU time is printed too (with ``--threads 1`` on a CPU it is steadier than wall time on
a machine that other jobs share; on a GPU it means little). Peak
memory: the CUDA allocator's peak on a GPU, the process's peak RSS on a CPU. Models: ``demo`` (the bundled model),
a local diffusers folder, or ``sd15-random`` / ``sdxl-random`` (see ``freecontrol_speed.py``). Usage:

    python examples/benchmarks/ctrlx_speed.py --model demo --steps 50 --repeats 3
    python examples/benchmarks/ctrlx_speed.py --model sdxl-random --device cuda --precision fp16 --steps 50

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from freecontrol_speed import _timed, random_pipeline  # noqa: E402  (same folder)

CONDITIONS = Path(__file__).resolve().parents[1] / "conditions"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--self-recurrence", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from i2i.ctrlx.config import OFFICIAL_SELF_RECURRENCE, model_config
    from i2i.generate import GenerateConfig, GeneratePipeline
    from i2i.ctrlx.pipeline import CtrlXPipeline
    from i2i.demo.model import demo_model_path
    from i2i.device import resolve_device
    from i2i.diffusion.loading import DTYPES
    from i2i.images import load_image

    device = resolve_device(args.device)
    if args.model.endswith("-random"):
        pipe = CtrlXPipeline(random_pipeline(args.model, device, DTYPES[args.precision]), device=device,
                             precision=args.precision)
        config = model_config(None)
    else:
        folder = str(demo_model_path()) if args.model == "demo" else args.model
        pipe = CtrlXPipeline.from_pretrained(folder, device=device, precision=args.precision)
        config = pipe.default_config()
    config = dataclasses.replace(config, num_inference_steps=args.steps)
    structure, appearance = load_image(CONDITIONS / "square_sketch.png"), load_image(CONDITIONS / "blue_square.png")
    prompt = "a blue square"
    sampler = GeneratePipeline(pipe.base, model_id=pipe.model_id, device=pipe.device, precision=pipe.precision)
    size = pipe.default_size
    plain_config = GenerateConfig(num_inference_steps=args.steps, guidance_scale=config.guidance_scale,
                                  negative_prompt=config.negative_prompt, eta=config.eta)

    def plain(seed: int):
        return sampler(prompt + (f", {config.positive_prompt}" if config.positive_prompt else ""), plain_config,
                       seed=seed).images

    runs = {"plain CFG sampling": lambda s: plain(s),
            "ctrlx structure+appearance": lambda s: pipe(prompt, structure, appearance, config, seed=s,
                                                         decode_branches=False),
            "ctrlx structure only": lambda s: pipe(prompt, structure, None, config, seed=s, decode_branches=False)}
    if args.self_recurrence:
        recur = dataclasses.replace(config, self_recurrence=OFFICIAL_SELF_RECURRENCE)
        runs["ctrlx + self-recurrence"] = lambda s: pipe(prompt, structure, appearance, recur, seed=s,
                                                         decode_branches=False)
    for fn in runs.values():
        fn(0)                                                   # warm-ups
    times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in runs}
    for r in range(args.repeats):
        for name, fn in runs.items():
            cpu0 = time.process_time()
            wall, peak = _timed(lambda: fn(r + 1), device)
            times[name].append((wall, peak, time.process_time() - cpu0))
    med = {name: (statistics.median(t[0] for t in ts), statistics.median(t[2] for t in ts))
           for name, ts in times.items()}
    plain_s, plain_cpu = med["plain CFG sampling"]
    results = {name: {"median_s": round(med[name][0], 4), "peak_gb": round(max(t[1] for t in ts), 3),
                      "over_plain": round(med[name][0] / plain_s, 3),
                      "cpu_s": round(med[name][1], 4), "cpu_over_plain": round(med[name][1] / plain_cpu, 3)}
               for name, ts in times.items()}
    print("| run | median s | x plain | process CPU s | x plain (CPU) | peak GB |\n|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['median_s']:.3f} | {r['over_plain']:.2f} | {r['cpu_s']:.3f} | "
              f"{r['cpu_over_plain']:.2f} | {r['peak_gb']:.2f} |")
    print(json.dumps({"benchmark": "ctrlx_speed", "model": args.model, "device": str(device),
                      "precision": args.precision, "steps": args.steps, "repeats": args.repeats, "size": size,
                      "machine": f"{platform.machine()} {torch.get_num_threads()} threads", "torch": torch.__version__,
                      "ctrlx_over_plain": results["ctrlx structure+appearance"]["over_plain"], "results": results}))


if __name__ == "__main__":
    main()
