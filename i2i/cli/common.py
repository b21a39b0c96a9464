"""Options shared by every command, and the wrapper that turns errors into one line and an exit code.

Nothing here imports torch or diffusers: ``i2i --help`` stays fast.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Callable, Optional, TypeVar

import typer
from typer.core import TyperGroup

from i2i.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, I2IError, out_of_memory
from i2i.progress import Reporter

T = TypeVar("T")

DeviceOpt = Annotated[Optional[str], typer.Option(
    "--device", help="cpu, cuda, cuda:N or mps. Default: cuda if available, then mps, then cpu.",
    rich_help_panel="Common")]
PRECISION_HELP = ("fp32, bf16 (autocast: faster on GPUs and on CPUs with AMX or AVX-512 BF16, slower on other "
                  "CPUs), fp16 (CUDA only) or auto (bf16 where the device computes it natively, else fp32).")
PrecisionOpt = Annotated[str, typer.Option("--precision", help=PRECISION_HELP, rich_help_panel="Common")]
ConfigOpt = Annotated[Optional[str], typer.Option(
    "--config", help="For a single-file --model (.safetensors/.ckpt): a diffusers folder (or hub id) of the same "
    "architecture whose component configs and tokenizer describe it; needed offline.")]
# Options of the diffusion commands (freecontrol, ctrlx, generate).
BATCH_PANEL = "Inputs and batches"
VaeOpt = Annotated[Optional[str], typer.Option(
    "--vae", help="A replacement VAE (diffusers folder, hub id or .safetensors file), e.g. an fp16-safe SDXL VAE; "
    "it runs at --precision (the model's own VAE runs in fp32).", rich_help_panel="Common")]
VaeDecodeOpt = Annotated[str, typer.Option(
    "--vae-decode", help="auto (tiles on a GPU above 768 px: SDXL's 1024 px decode sets the peak memory), full or "
    "tiled (512 px tiles, blended).", rich_help_panel="Common")]
TextDeviceOpt = Annotated[Optional[str], typer.Option(
    "--text-encoder-device", help="Where the text encoders run (default: --device). cpu keeps their weights off "
    "the GPU (SDXL's: 1.5 GiB in bf16), runs them in fp32 and moves only the embeddings.", rich_help_panel="Common",
    show_default=False)]
DiffusionPrecisionOpt = Annotated[str, typer.Option(
    "--precision", help="fp32 (default), bf16, fp16 (CUDA only) or auto (bf16 where the device computes it "
    "natively, else fp32): the UNet/text encoders' dtype; the VAE stays fp32 unless --vae gives one.",
    rich_help_panel="Common", show_default=False)]
NumImagesOpt = Annotated[int, typer.Option("--num-images", "-n", help="Images per job.", rich_help_panel=BATCH_PANEL)]


def out_path(value: str | os.PathLike) -> Path:
    """``--out`` as given (or its default): a name ending in a slash is a folder, also when it reads like a file
    (``x.png/``); that folder is made now, since the path itself no longer shows the slash to the commands that
    tell files from folders by their names (a file of that name is a usage error)."""
    text = os.fspath(value)
    path = Path(text)
    if text.endswith(("/", os.sep)) and path.suffix:
        if path.exists() and not path.is_dir():
            raise typer.BadParameter(f"{text} names a folder, but {path} is a file")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass                  # left to the command's own check of its output (exit 6)
    return path


OutDirOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder, or for a run that makes one image the "
                                         "file itself, e.g. lion.png.", rich_help_panel=BATCH_PANEL,
                                         parser=out_path)]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.",
                                            rich_help_panel=BATCH_PANEL)]
SkipExistingOpt = Annotated[bool, typer.Option(
    "--skip-existing", help="Treat an output that exists as done: counted once in the summary ('skipped N "
    "existing'), not an error, so a stopped job restarted with it writes only what is missing (outputs are "
    "written atomically: one that exists is complete). Not with --overwrite.", rich_help_panel=BATCH_PANEL)]
ShardOpt = Annotated[Optional[str], typer.Option(
    "--shard", metavar="K/N", help="Process share K of N (K from 0): every N-th input (or job) from the K-th, e.g. "
    "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT in a scheduler array. Under torchrun or accelerate "
    "launch each process takes its share from RANK/WORLD_SIZE by itself (with --shard too: share K is split "
    "over the ranks). The shares together write exactly the files of one process; see docs/batch.md.",
    show_default=False, rich_help_panel=BATCH_PANEL)]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Random seed.", rich_help_panel="Common")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or info lines (errors still "
                                        "print).", rich_help_panel="Common")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per result on stdout.",
                                       rich_help_panel="Common")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.",
                                        rich_help_panel="Common")]


class Group(TyperGroup):
    """A command group whose help shows flags as flags: no ``<bool>`` value column for ``--quiet``, ``--help``
    and the like (they take no value). Applied to the commands this group hands out, and to nested groups."""

    def get_command(self, ctx: typer.Context, cmd_name: str):  # type: ignore[override]
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _no_flag_values([*command.params, command.get_help_option(ctx)])
        return command

    def get_params(self, ctx: typer.Context):  # type: ignore[override]
        return _no_flag_values(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        """``[OPTIONS] COMMAND [ARGS]...`` only where there are subcommands (``i2i ctrlx`` has none)."""
        pieces = super().collect_usage_pieces(ctx)
        return pieces if self.commands else [p for p in pieces if p != self.subcommand_metavar]


def _no_flag_values(params: list) -> list:
    for param in params:
        if param is not None and getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


def warn_precision(reporter: Reporter, precision: str, device: object) -> None:
    """Print the device's precision warning (bf16 on a CPU that emulates it), if any."""
    from i2i.device import precision_warning

    message = precision_warning(precision, device)  # type: ignore[arg-type]
    if message:
        reporter.warn(message)


EXIT_BROKEN_PIPE = 141       # 128 + SIGPIPE, what a shell reports for `yes | head -1`


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def _command_signals_and_warnings(reporter: Reporter) -> Iterator[None]:
    """For one command: SIGTERM (a batch system, or torchrun stopping the other ranks) stops it as Ctrl-C does
    (temporary files removed, exit 130; training installs its own handler, which checkpoints first), and the
    library's warnings print as one ``warning:`` line instead of Python's two lines with a source line."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main else None
    show = warnings.showwarning

    def one_line(message, category, filename, lineno, file=None, line=None):   # noqa: ANN001
        if issubclass(category, UserWarning) and not issubclass(category, DeprecationWarning):
            reporter.warn(str(message))
        else:
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = one_line
    try:
        yield
    finally:
        warnings.showwarning = show
        if main:
            signal.signal(signal.SIGTERM, previous)


def run_guarded(fn: Callable[[], T], debug: bool, reporter: Reporter | None = None) -> T:
    """Run ``fn``; map I2IError to one stderr line + its exit code (no second line when it is the one failed
    input's error, already printed as the batch met it), Ctrl-C and SIGTERM to 130, a closed output pipe (``|
    head``) to a quiet 141, bugs to 70."""
    reporter = reporter or Reporter()
    console = reporter.console

    def fail(message: str, code: int) -> typer.Exit:
        console.print(f"error: {message}", style="bold red", markup=False, highlight=False, soft_wrap=True)
        return typer.Exit(code)

    try:
        with _command_signals_and_warnings(reporter):
            return fn()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)         # no second error when Python flushes stdout at exit
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    except I2IError as exc:
        if debug:
            traceback.print_exc()
        if str(exc) in reporter.reported:
            raise typer.Exit(exc.exit_code) from None
        raise fail(str(exc), exc.exit_code) from None
    except KeyboardInterrupt:
        console.print("interrupted", style="bold red", soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except typer.Exit:
        raise
    except Exception as exc:  # a bug: say so in one line unless --debug (an allocation failure is not one)
        memory = out_of_memory(exc)
        if memory is not None:
            raise fail(str(memory), memory.exit_code) from None
        if debug:
            traceback.print_exc()
            raise typer.Exit(EXIT_INTERNAL) from None
        raise fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                   EXIT_INTERNAL) from None


def given(**values: object) -> dict[str, object]:
    """The options the user actually passed (Typer defaults are None for 'not given')."""
    return {k: v for k, v in values.items() if v is not None}


def quiet_libraries() -> None:
    """Silence diffusers'/transformers' loading bars and import notices. Called by the diffusion commands (the
    CLI only: the library never changes other libraries' global settings)."""
    import diffusers
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
