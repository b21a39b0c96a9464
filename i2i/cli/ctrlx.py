"""``i2i ctrlx``: Ctrl-X structure and appearance control from prompt/structure(/appearance) triples or a JSONL job
file. The shared diffusion command (:mod:`i2i.cli.diffusion`) with Ctrl-X's own flags: same seeds, batches,
sharding, naming and exit codes as ``i2i freecontrol``."""

from typing import Annotated, Optional

import typer

from i2i.cli.common import BATCH_PANEL
from i2i.cli.diffusion import MethodFlags, diffusion_app
from i2i.ctrlx.config import CONTROL, CTRLX, OFFICIAL_SELF_RECURRENCE


def ctrlx_flags(
    structure: Annotated[Optional[list[str]], typer.Option(
        "--structure", "-s", help="Structure image (sketch, edges, depth, a photo, ...): the output keeps its "
        "layout and aspect ratio; repeatable. A video (clip.mp4) makes a video: one frame per frame, all with "
        "the same seed.", rich_help_panel=BATCH_PANEL)] = None,
    appearance: Annotated[Optional[list[str]], typer.Option(
        "--appearance", "-a", help="Appearance image: the output takes its colours and textures (default: an "
        "appearance generated from the prompt); once for all, or once per --structure.",
        rich_help_panel=BATCH_PANEL)] = None,
    structure_prompt: Annotated[Optional[str], typer.Option(
        "--structure-prompt", help="Describes the structure image, e.g. \"a sketch of a dog\" (default: the "
        "prompt).", rich_help_panel=BATCH_PANEL)] = None,
    appearance_prompt: Annotated[Optional[str], typer.Option(
        "--appearance-prompt", help="Describes the appearance image (default: the prompt).",
        rich_help_panel=BATCH_PANEL)] = None,
    self_recurrence: Annotated[Optional[bool], typer.Option(
        "--self-recurrence/--no-self-recurrence", help="The official scripts' self-recurrence (steps 10-50 % redone "
        "twice without control): better quality, about 1.8x the UNet work (default: the model's recommended "
        "setting, else off).", show_default=False, rich_help_panel=CONTROL)] = None,
    save_branches: Annotated[bool, typer.Option(
        "--save-branches", help="Also save the structure and appearance branches as the model saw them "
        "(NAME_structure_branch.png, NAME_appearance_branch.png; a generated appearance is the prompt's).",
        rich_help_panel=BATCH_PANEL)] = False,
) -> MethodFlags:
    switch = {} if self_recurrence is None else {"self_recurrence": OFFICIAL_SELF_RECURRENCE if self_recurrence
                                                  else None}
    return MethodFlags(images={"structure": structure or [], "appearance": appearance or []},
                       job_defaults={"structure_prompt": structure_prompt, "appearance_prompt": appearance_prompt},
                       config=switch, extras=save_branches)


app = diffusion_app(CTRLX, ctrlx_flags)
