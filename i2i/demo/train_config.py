"""The demo model's training settings, its step-pure randomness, and the run folder that makes it resumable."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import torch

from i2i.errors import UsageError

VAE_STAGE, UNET_STAGE = 1, 2
UNET_PRECISIONS = ("fp32", "bf16")       # fp16 would need a loss scaler


@dataclass(frozen=True)
class DemoTrainConfig:
    seed: int = 0
    max_length: int = 32             # tokenizer model_max_length = text encoder positions
    vae_steps: int = 2000
    vae_batch: int = 16
    vae_lr: float = 2e-3
    vae_kl_weight: float = 1e-6
    vae_object_weight: float = 4.0   # extra reconstruction weight on pixels away from the background
    vae_eval_images: int = 512       # held-back images that set the latent scaling and check reconstructions
    dataset_size: int = 30000        # images encoded once for the UNet stage
    unet_steps: int = 12000
    unet_batch: int = 32
    unet_lr: float = 1e-3
    caption_dropout: float = 0.1
    min_snr_gamma: float = 5.0       # loss weight min(SNR, gamma) / SNR per sample (Hang et al., 2023); 0: plain MSE
    ema_decay: float = 0.999
    unet_precision: str = "fp32"     # autocast of the UNet stage's forward passes: fp32 or bf16 (AMX CPUs: ~1.4x)
    twin_share: float = 0.0          # share of the UNet stage's filled scenes with a twin object (i2i.demo.data)
    pair_share: float = 0.0          # share of each UNet batch's rows given as pairs with paired self-attention
    pair_count: int = 8000           # pairs encoded once for the UNet stage (i2i.demo.data.pair_sample)
    match_weight: float = 0.0        # > 0: the pair rows attend to themselves and feed a correspondence loss of
    #                                  this weight instead (i2i.demo.correspondence); needs pair rows in fours
    init_from: str = ""              # a pipeline folder whose VAE, UNet and text encoder start the run (fine-tune)
    checkpoint_every: int = 100
    eval_every: int = 1000
    eval_steps: int = 25
    eval_guidance: float = 7.5

    def __post_init__(self) -> None:
        if self.unet_precision not in UNET_PRECISIONS:     # refused before any stage runs
            raise UsageError(f"unet_precision {self.unet_precision!r}: choose {' or '.join(UNET_PRECISIONS)}")
        if not 0.0 <= self.twin_share <= 1.0:
            raise UsageError(f"twin_share {self.twin_share}: a share between 0 and 1")
        if not 0.0 <= self.pair_share <= 1.0:
            raise UsageError(f"pair_share {self.pair_share}: a share between 0 and 1")
        if self.pair_share > 0 and self.pair_count < 1:
            raise UsageError(f"pair_count {self.pair_count}: pairs need at least one encoded pair")
        if self.match_weight < 0:
            raise UsageError(f"match_weight {self.match_weight}: a weight of 0 or more")
        if self.match_weight > 0 and (self.pair_rows == 0 or self.pair_rows % 4):
            raise UsageError(f"match_weight needs pair rows in groups of four: pair_share {self.pair_share} of a "
                             f"batch of {self.unet_batch} gives {self.pair_rows}")
        if self.vae_eval_images < 1:
            raise UsageError(f"vae_eval_images {self.vae_eval_images}: at least one image sets the latent scaling")

    @property
    def pair_rows(self) -> int:
        """Rows of each UNet batch given as pairs (even)."""
        return 2 * round(self.unet_batch * self.pair_share / 2)


def step_generator(seed: int, stage: int, step: int) -> torch.Generator:
    """The generator of every random draw of one step: a pure function of (seed, stage, step)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + stage) * 10_000_019 + step)


def seeded_build(seed: int, stage: int, build: Callable[[], Any]) -> Any:
    """``build()`` with torch's global generator seeded from (seed, stage) for the weight initialisation, and
    restored afterwards (the caller's random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1_000_003 + stage)
        return build()


def learning_rate(step: int, total: int, base: float, warmup: int = 200) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class RunFolder:
    """The run's files; checkpoints are written atomically (temporary name, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name

    def log(self, record: dict) -> None:
        print(json.dumps(record), flush=True)
        with open(self.path("log.jsonl"), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def save(self, name: str, state: dict) -> None:
        tmp = self.path(f".{name}.tmp{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, self.path(name))

    def load(self, name: str) -> dict | None:
        path = self.path(name)
        return torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None


def open_run(root: Path, cfg: DemoTrainConfig | None, resume: bool) -> tuple[RunFolder, DemoTrainConfig]:
    """Create the run folder, or reopen it with ``resume`` (its stored config wins; a differing one is refused)."""
    config_path = root / "config.json"
    if config_path.is_file():
        if not resume:
            raise UsageError(f"{root} already holds a demo training run; pass --resume to continue it, or choose "
                             "another --run folder")
        stored = DemoTrainConfig(**json.loads(config_path.read_text(encoding="utf-8")))
        if cfg is not None and cfg != stored:
            changed = [f.name for f in fields(cfg) if getattr(cfg, f.name) != getattr(stored, f.name)]
            raise UsageError(f"--resume continues {root} with its own settings; these differ: {', '.join(changed)}")
        return RunFolder(root), stored
    if resume:
        raise UsageError(f"--resume: {root} holds no demo training run (no config.json)")
    root.mkdir(parents=True, exist_ok=True)
    cfg = cfg or DemoTrainConfig()
    config_path.write_text(json.dumps(asdict(cfg), indent=2) + "\n", encoding="utf-8")
    return RunFolder(root), cfg


