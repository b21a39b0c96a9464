"""Train the bundled demo model from a seed, resumably: ``python -m i2i.demo.train --run DIR [--resume]``.

Two stages on :mod:`i2i.demo.data` (64 px scenes with captions), parts from :mod:`i2i.demo.build`:

1. **VAE** (:mod:`i2i.demo.vae_stage`): L1 + MSE reconstruction with the object's pixels weighted up (the
   background would otherwise dominate and colours wash out) and a small KL term; then the latent scaling factor
   is set to 1 / std of the latents, as for SD.
2. **UNet + text encoder** (:mod:`i2i.demo.unet_stage`): epsilon prediction on SD's scaled-linear 1000-step
   schedule, 10 % caption dropout (for classifier-free guidance), an EMA of the weights (what is shipped).

``init_from`` starts stage 2 from a pipeline folder's weights (a fine-tune: stage 1 is skipped, the folder's VAE
kept), and ``pair_share`` trains a share of each batch in pairs that see each other (:mod:`i2i.demo.paired_attention`)
or, with ``match_weight``, that feed a correspondence loss (:mod:`i2i.demo.correspondence`).

Resumable and deterministic: every random draw of step ``k`` comes from a generator seeded by ``(seed, stage, k)``
and the UNet stage's data set is re-encoded identically on resume, so a run stopped (killed, Ctrl-C, or
``--stop-after``) and resumed with ``--resume`` ends with the same weights as one run straight through, on the
same machine and thread count; at most ``checkpoint_every`` steps are redone. The run folder holds
``config.json``, ``log.jsonl``, the checkpoints (``vae.pt``, ``unet.pt``), the trained VAE (``vae/``) and the
pipeline written at each evaluation (``model/``); ``--out`` receives the finished pipeline. docs/demo-model.md has
the command that made the shipped weights.
"""

from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path
from typing import Optional

import typer

from i2i.demo.train_config import DemoTrainConfig

app = typer.Typer(add_completion=False)


def train(run_dir: Path, cfg: DemoTrainConfig | None = None, *, resume: bool = False, out: Path | None = None,
          stop_after: int | None = None, threads: int = 2, device: str = "cpu") -> Path:
    """Run (or resume) both stages in ``run_dir``; returns the pipeline folder (``out`` once finished, else
    ``run_dir/model``). ``stop_after`` ends the UNet stage early (the LR schedule still spans ``unet_steps``)."""
    import torch

    from i2i.demo.data import VOCABULARY
    from i2i.demo.tokenizer import build_tokenizer
    from i2i.demo.train_config import open_run
    from i2i.demo.unet_stage import run_unet_stage, write_recommended_settings
    from i2i.demo.vae_stage import load_vae, train_vae
    from i2i.errors import UsageError

    if cfg is not None and cfg.init_from and not (Path(cfg.init_from) / "model_index.json").is_file():
        raise UsageError(f"--init-from {cfg.init_from}: not a pipeline folder (no model_index.json)")
    run, cfg = open_run(run_dir, cfg, resume)
    torch.set_num_threads(threads)
    dev = torch.device(device)
    vae = load_vae(Path(cfg.init_from), dev) if cfg.init_from else train_vae(run, cfg, dev)
    vae.requires_grad_(False)
    run_unet_stage(run, cfg, vae, build_tokenizer(VOCABULARY, cfg.max_length), dev, stop_after)
    unet = run.load("unet.pt")
    if out is not None and unet is not None and unet["step"] >= cfg.unet_steps:
        tmp = out.with_name(f".{out.name}.copy")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(run.path("model"), tmp)
        write_recommended_settings(tmp)                # the settings of this code, whenever the run was made
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        return out
    return run.path("model")


def _config_from_flags(values: dict) -> DemoTrainConfig | None:
    given = {k: v for k, v in values.items() if v is not None}
    if given.get("init_from"):              # stored in the run's config: resumable from any folder
        given["init_from"] = str(Path(given["init_from"]).expanduser().resolve())
    return DemoTrainConfig(**given) if given else None


@app.command()
def main(run_dir: Path = typer.Option(..., "--run", help="Run folder: config, log, checkpoints, model/."),
         resume: bool = typer.Option(False, help="Continue the run in --run from its last checkpoint."),
         out: Optional[Path] = typer.Option(None, help="Where the finished pipeline is copied (e.g. "
                                            "i2i/assets/demo-shapes); only once every UNet step is done."),
         stop_after: Optional[int] = typer.Option(None, help="Stop the UNet stage after this many steps in all "
                                                  "(resume later)."),
         threads: int = typer.Option(2, help="CPU threads (results are exact for one machine and thread count)."),
         device: str = typer.Option("cpu", help="cpu or cuda; every random draw is made on the CPU."),
         seed: Optional[int] = typer.Option(None, help=f"Default {DemoTrainConfig.seed}."),
         unet_steps: Optional[int] = typer.Option(None, help=f"Default {DemoTrainConfig.unet_steps}."),
         unet_batch: Optional[int] = typer.Option(None, help=f"Default {DemoTrainConfig.unet_batch}."),
         vae_steps: Optional[int] = typer.Option(None, help=f"Default {DemoTrainConfig.vae_steps}."),
         dataset_size: Optional[int] = typer.Option(None, help=f"Default {DemoTrainConfig.dataset_size}."),
         eval_every: Optional[int] = typer.Option(None, help=f"Default {DemoTrainConfig.eval_every}."),
         checkpoint_every: Optional[int] = typer.Option(None, help=f"Default {DemoTrainConfig.checkpoint_every}."),
         unet_precision: Optional[str] = typer.Option(None, help="fp32 or bf16 autocast of the UNet stage (bf16 "
                                                      "on CPUs with AMX/AVX-512 BF16 only: elsewhere it is "
                                                      f"slower). Default {DemoTrainConfig.unet_precision}."),
         twin_share: Optional[float] = typer.Option(None, help="Share of the UNet stage's filled scenes that get a "
                                                    "twin: a second object of the main one's look, the caption "
                                                    f"naming no colour. Default {DemoTrainConfig.twin_share}."),
         pair_share: Optional[float] = typer.Option(None, help="Share of each UNet batch's rows given as pairs of "
                                                    "one look in two layouts, attending to each other in "
                                                    f"self-attention. Default {DemoTrainConfig.pair_share}."),
         pair_count: Optional[int] = typer.Option(None, help=f"Pairs encoded. Default {DemoTrainConfig.pair_count}."),
         match_weight: Optional[float] = typer.Option(None, help="Weight of a correspondence loss on the pair rows "
                                                      "(in fours), which then attend to themselves only: Ctrl-X's "
                                                      "appearance layers should match object to object and ground "
                                                      f"to ground. Default {DemoTrainConfig.match_weight}."),
         init_from: Optional[str] = typer.Option(None, help="A pipeline folder (e.g. i2i/assets/demo-shapes) whose "
                                                 "VAE, UNet and text encoder start the run: a fine-tune, no VAE "
                                                 "stage."),
         unet_lr: Optional[float] = typer.Option(None, help=f"Default {DemoTrainConfig.unet_lr}."),
         ) -> None:
    """Train the demo model (both stages) into --run; settings are stored there and reused by --resume."""
    from i2i.errors import I2IError

    names = {f.name for f in fields(DemoTrainConfig)}
    given = {k: v for k, v in locals().items() if k in names}
    try:
        cfg = _config_from_flags(given)
        path = train(run_dir, cfg, resume=resume, out=out, stop_after=stop_after, threads=threads, device=device)
    except I2IError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    typer.echo(f"model: {path}")


if __name__ == "__main__":
    app()
