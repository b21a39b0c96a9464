"""The best checkpoint while training (``TrainConfig.eval_every`` / ``--eval-every N``).

Every N iterations the training loop calls :class:`BestCheckpoint`: it measures the KID of the A -> B generator
(:func:`i2i.metrics.training.generator_kid`) between its translations of a fixed held-out set of A images and the
real B images of that set, logs it, and when the KID is the lowest so far asks the loop to save the weights as
``RUN/checkpoints/best`` (written atomically, with ``info.json``: iteration, KID, features, held-out set). Pruning
only touches ``iter_*`` folders, so ``best`` survives ``--keep-checkpoints``.

The held-out set (:func:`held_out_set`), fixed for the whole run:

- an image folder with ``testA`` and ``testB``: up to ``eval_images`` images of each, a seed-determined subset;
- an image folder without them: the same from the training folders (then not held out; the logs say so);
- ``builtin:shapes``: ``eval_images`` unseen circles and squares from a stream of their own (neither the
  training images nor the ones ``i2i cyclegan eval`` uses).

Images are resized to ``crop_size`` x ``crop_size``. The evaluation never touches the training RNG streams
(``generator_kid`` forks them), so a run with evaluation on resumes bit-exactly; on resume the best KID so far is
read back from ``checkpoints/best/info.json``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from i2i.cyclegan.checkpoint import BEST, checkpoint_info, unwrap
from i2i.cyclegan.config import TrainConfig
from i2i.cyclegan.data import BUILTIN_SHAPES, list_images, validate_images
from i2i.errors import InputError, UsageError
from i2i.progress import Reporter

if TYPE_CHECKING:
    import torch

    from i2i.cyclegan.methods.base import Method
    from i2i.metrics.features import FeatureExtractor

# The held-out shapes come from indices far from the training ones and from `i2i cyclegan eval`'s test ones.
SHAPES_EVAL_OFFSET = 20_000_000


@dataclass
class HeldOut:
    """A fixed evaluation set: source (A) and real target (B) images ``[N, C, S, S]`` in [-1, 1]."""

    source: "torch.Tensor"
    target: "torch.Tensor"
    description: str


def _fixed_subset(paths: list[Path], n: int, seed: int) -> list[Path]:
    """``n`` of ``paths`` chosen by ``seed`` (a private generator), in sorted order; all of them if fewer."""
    return paths if len(paths) <= n else sorted(random.Random(seed).sample(paths, n))


def held_out_set(config: TrainConfig, warn=lambda message: None) -> HeldOut:
    """The fixed evaluation set of a run (see the module docstring)."""
    import torch

    from i2i.images import image_to_tensor
    from i2i.metrics.training import image_batch

    size, n = config.crop_size, config.eval_images
    if config.dataroot == BUILTIN_SHAPES:
        from i2i.shapes import render, shapes_cyclegan_pair

        pairs = [shapes_cyclegan_pair(SHAPES_EVAL_OFFSET + i, config.seed) for i in range(n)]
        source, target = (torch.stack([image_to_tensor(render(p[k], size)) for p in pairs]) for k in (0, 1))
        return HeldOut(source, target, f"{n} unseen shapes (seed {config.seed})")
    root = Path(config.dataroot)
    has_test = all((root / f"test{d}").is_dir() and any((root / f"test{d}").iterdir()) for d in "AB")
    prefix = "test" if has_test else config.phase
    modes = {"A": "RGB" if config.generator.input_nc == 3 else "L",
             "B": "RGB" if config.generator.output_nc == 3 else "L"}
    chosen = {}
    for d in "AB":
        paths = validate_images(list_images(root / f"{prefix}{d}"), modes[d], warn)
        if len(paths) < 4:
            raise InputError(f"{root / (prefix + d)}: --eval-every needs at least 4 readable images")
        chosen[d] = _fixed_subset(paths, n, config.seed)
    where = f"{prefix}A/{prefix}B" + ("" if has_test else " (no testA/testB: training images, not held out)")
    return HeldOut(image_batch(chosen["A"], size, modes["A"]), image_batch(chosen["B"], size, modes["B"]),
                   f"{len(chosen['A'])} + {len(chosen['B'])} images of {where}")


class BestCheckpoint:
    """The ``--eval-every`` hook: ``hook(method, iteration)`` returns the numbers to log, with
    ``"checkpoint": "best"`` when the KID is the lowest so far. Build it with :meth:`start`."""

    def __init__(self, held_out: HeldOut, extractor: "FeatureExtractor", best: dict[str, Any] | None = None,
                 reporter: Reporter | None = None, seed: int = 0) -> None:
        self.held_out, self.extractor, self.best = held_out, extractor, best
        self.reporter = reporter or Reporter.library()
        self.seed = seed
        self._real: "torch.Tensor | None" = None     # features of the real target images, computed once

    @classmethod
    def start(cls, config: TrainConfig, device: Any, resume: bool, reporter: Reporter | None = None
              ) -> "BestCheckpoint":
        """Build the extractor and load the held-out set now (missing weights or images fail before training);
        on ``resume``, the best KID so far comes back from ``checkpoints/best/info.json``."""
        import torch

        from i2i.metrics.registry import RANDOM_CNN, build_extractor

        reporter = reporter or Reporter.library()
        held_out = held_out_set(config, reporter.warn)
        best = checkpoint_info(Path(config.run_dir) / "checkpoints" / BEST) if resume else None

        def refuse_other(features: str) -> None:
            raise UsageError(f"{config.run_dir}: its best checkpoint was chosen by KID on {best.get('held_out')} "
                             f"with {best.get('features')} features, not on {held_out.description} with "
                             f"{features}: resume with the run's --eval-features/--eval-images, or delete "
                             f"checkpoints/{BEST} to start a new best")

        if best is not None and not str(best.get("features", "")).startswith(config.eval_features):
            refuse_other(config.eval_features)       # before building the extractor (its weights may be missing)
        with torch.random.fork_rng(devices=[]):     # building a network may draw from the global RNG
            extractor = build_extractor(config.eval_features, device, config.inception_weights)
        if best is not None and (best.get("features"), best.get("held_out")) != (extractor.name,
                                                                                 held_out.description):
            refuse_other(extractor.name)
        reporter.info(f"evaluating every {config.eval_every} iterations: KID of G_A on {held_out.description}, "
                      f"{extractor.name} features"
                      + (f"; best so far: KID {best['kid']:.5f} at iteration {best['iter']}" if best else ""))
        if config.eval_features == RANDOM_CNN:
            reporter.warn(f"--eval-features {RANDOM_CNN} is an offline stand-in, not Inception: its KIDs rank "
                          "this run's checkpoints but are not comparable to published values")
        return cls(held_out, extractor, best, reporter, config.seed)

    def __call__(self, method: "Method", iteration: int) -> dict[str, Any]:
        import time

        from i2i.metrics.training import TRAINING_SUBSETS, generator_kid, real_features

        start = time.perf_counter()
        if self._real is None:
            self._real = real_features(self.extractor, self.held_out.target)
        generator = unwrap(method.networks()["G_A"].net)
        kid = generator_kid(generator, self.held_out.source, self._real, self.extractor,
                            subsets=TRAINING_SUBSETS, seed=self.seed)
        improved = self.best is None or kid.mean < self.best["kid"]
        if improved:
            self.best = {"iter": iteration, "kid": kid.mean, "kid_std": kid.std}
        values: dict[str, Any] = {"kid": kid.mean, "kid_std": kid.std, "best_kid": self.best["kid"],
                                  "best_iter": self.best["iter"], "kid_subsets": kid.subsets,
                                  "kid_subset_size": kid.subset_size, "features": self.extractor.name,
                                  "held_out": self.held_out.description,
                                  "seconds": round(time.perf_counter() - start, 3)}
        self.reporter.info(f"iteration {iteration}: KID {kid.mean:.5f} ± {kid.std:.5f} ({values['seconds']:.1f} s)"
                           + (f" (best so far: saved checkpoints/{BEST})" if improved else
                              f" (best: {self.best['kid']:.5f} at iteration {self.best['iter']})"))
        return {**values, "checkpoint": BEST} if improved else values
