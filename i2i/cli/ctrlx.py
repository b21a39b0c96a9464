"""``i2i ctrlx``: Ctrl-X structure and appearance control from prompt/structure(/appearance) triples or a JSONL job
file. The shared diffusion command (:mod:`i2i.cli.diffusion`) with Ctrl-X's own flags: same seeds, batches,
sharding, naming and exit codes as ``i2i freecontrol``."""

from typing import Annotated, Optional

import typer

from i2i.cli.common import BATCH_PANEL
from i2i.cli.diffusion import MethodFlags, diffusion_app
from i2i.ctrlx.config import CONTROL, CTRLX, OFFICIAL_SELF_RECURRENCE


def ctrlx_flags(
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
    return MethodFlags(config=switch, extras=save_branches)


app = diffusion_app(CTRLX, ctrlx_flags)
