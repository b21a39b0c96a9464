"""``i2i preprocess``: condition maps (canny, edges, scribble, invert) of image files, to look at and to reuse as
conditions. A thin layer over :func:`i2i.preprocess.preprocess_files`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from i2i.cli.common import (BATCH_PANEL, DebugOpt, JsonOpt, OverwriteOpt, QuietOpt, ShardOpt, SkipExistingOpt, out_path,
                            run_guarded)
from i2i.preprocess.files import DEFAULT_KIND, MAPS_DIR
from i2i.preprocess.kinds import KINDS, MODEL_KINDS
from i2i.progress import Reporter

KIND_HELP = (f"Map to make: {', '.join(KINDS)}. canny: black Canny edges on white (the official FreeControl app's "
             "thresholds 100/200); edges: soft edges, dark on white; scribble: thick simplified strokes; invert: "
             "255 - image; none: the image as RGB. Model-based kinds (" + ", ".join(sorted(MODEL_KINDS)) +
             ") need weights i2i does not have: they exit with code 4.")
PreprocessOpt = Annotated[str, typer.Option(
    "--preprocess", help=f"Turn the condition image into a map first: {', '.join(KINDS)} (see `i2i preprocess "
    "--help`), drawn at the size the model works at (--size, else its native size); default: none, the image as "
    "it is.", show_default=False, rich_help_panel=BATCH_PANEL)]


def preprocess(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (recursive), globs or @list.txt.",
                                                show_default=False)],
    kind: Annotated[str, typer.Option("--kind", "-k", help=KIND_HELP)] = DEFAULT_KIND,
    out: Annotated[Path, typer.Option("--out", "-o", help=f"Output folder (default: {MAPS_DIR}), or for one input the "
                                      "file itself, e.g. edges.png. Maps keep the inputs' relative paths, as PNG.",
                                      show_default=False, parser=out_path)] = MAPS_DIR,
    resolution: Annotated[Optional[int], typer.Option(
        "--resolution", help="Resize the long side to this many pixels before making the map (default: the "
        "image's own size, as the official app).")] = None,
    overwrite: OverwriteOpt = False, skip_existing: SkipExistingOpt = False, shard: ShardOpt = None,
    quiet: QuietOpt = False, json: JsonOpt = False, debug: DebugOpt = False,
) -> None:
    """Make condition maps with no model download: i2i preprocess photos/ --kind canny --out maps/. Under torchrun
    / accelerate launch, or with --shard, a process takes its share (docs/batch.md)."""
    reporter = Reporter(quiet=quiet, json_mode=json)

    def go() -> None:
        from i2i.preprocess.files import preprocess_files

        preprocess_files(inputs, kind, out, overwrite, resolution, reporter, skip_existing, shard)

    run_guarded(go, debug, reporter)
