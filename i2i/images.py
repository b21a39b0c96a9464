"""Image I/O shared by both backends: robust loading, input expansion, atomic saving, PIL <-> tensor.

Loading accepts anything Pillow reads. It applies EXIF orientation, scales 16-bit and 32-bit data to 8 bits,
composites transparency on white, takes the first frame of animations, converts to RGB (or L for 1-channel
models), and refuses decompression bombs. Every problem is raised as one :class:`~i2i.errors.InputError`
naming the file and the reason.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import secrets
import stat
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from i2i.errors import InputError, OutputError, UsageError
from i2i.video.files import is_video_file

if TYPE_CHECKING:
    import torch

# Refuse images with more pixels than this (about 16k x 16k); Pillow's own guard is global state we leave alone.
DEFAULT_MAX_PIXELS = 268_435_456
MAX_SIDE = 16_384            # the largest image side a size flag may ask for (larger ones exhaust memory first)

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm",
     ".tga", ".jp2", ".j2k", ".ico", ".dib", ".pcx", ".sgi", ".qoi", ".avif", ".heic", ".heif"}
)
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class InputItem:
    """One input image: its path and the relative path under which its output is written."""

    path: Path
    rel: Path


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _folder_id(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def walk_folder(root: Path, skip: Path | None = None, videos: bool = True) -> list[InputItem]:
    """Every image (and with ``videos`` every video) below ``root``, hidden files and folders left out, following
    linked folders, but each folder once: a link back to a folder already read (a loop, or a second link to one
    folder) is skipped with a warning. ``skip``: a folder (resolved) below ``root`` whose contents are left out,
    e.g. the command's own output folder (``root`` itself is never skipped: an output folder that is the input
    folder is refused by the command)."""
    items, seen = [], {_folder_id(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        if skip is not None and dirpath != os.fspath(root) and Path(dirpath).resolve() == skip:
            dirnames[:] = []
            continue
        keep = []
        for name in sorted(dirnames):
            if name.startswith("."):               # hidden: .ipynb_checkpoints, .thumbnails, .git, earlier runs
                continue
            folder = _folder_id(os.path.join(dirpath, name))
            if folder is not None and folder in seen:
                warnings.warn(f"{Path(dirpath) / name}: skipped, a link to a folder already read", stacklevel=4)
                continue
            seen.add(folder)
            keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if (is_image_file(p) or (videos and is_video_file(p))) and not name.startswith("."):
                items.append(InputItem(p, p.relative_to(root)))
    return items


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    base: list[str] = []
    for part in parts:
        if _GLOB_CHARS & set(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def expand_inputs(specs: Sequence[str | os.PathLike], out: str | os.PathLike | None = None,
                  videos: bool = True,
                  exclude: Callable[[list[InputItem]], list[InputItem]] | None = None) -> list[InputItem]:
    """Expand files, directories (recursively), globs and ``@list.txt`` files into input items.

    ``out``: the command's output folder; when it lies inside an input folder, its files (an earlier run's
    outputs) are not taken as inputs. ``videos``: False leaves video files out of folders and globs (for a
    command that reads images only). ``exclude``: applied to the items found before two of them are refused for
    sharing an output name (a command's own earlier outputs, say, when ``out`` is an input folder).

    The relative path of an item keeps the folder structure below a directory or a glob's fixed prefix;
    a plain file keeps just its name. A path named directly in ``specs`` that does not exist raises
    :class:`InputError` (a typo should stop the command before any work); a missing file listed inside an
    ``@list.txt`` is kept (loading it reports the error), so a batch reports it among its failures. Raises
    :class:`InputError` if nothing matches at all and :class:`UsageError` if two different inputs would be
    written to the same output path.
    """
    skip = Path(out).resolve() if out is not None else None
    return _expand(specs, top_level=True, skip=skip, videos=videos, exclude=exclude)


def _expand(specs: Sequence[str | os.PathLike], top_level: bool, skip: Path | None = None,
            videos: bool = True, exclude: Callable[[list[InputItem]], list[InputItem]] | None = None,
            ) -> list[InputItem]:
    items: list[InputItem] = []
    if top_level and any(not os.fspath(s).strip() for s in specs):
        raise UsageError("an input path is empty ('' would read the current folder); name a file or folder")
    missing = [os.fspath(s) for s in specs if top_level and not os.fspath(s).startswith("@")
               and not (_GLOB_CHARS & set(os.fspath(s))) and not Path(os.fspath(s)).exists()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"{missing[0]}: no such file or folder{more}")
    for spec in specs:
        s = os.fspath(spec)
        if s.startswith("@"):
            list_file = Path(s[1:])
            try:
                lines = list_file.read_text(encoding="utf-8-sig").splitlines()
            except OSError as exc:
                raise InputError(f"{list_file}: cannot read input list ({exc.strerror or exc})") from exc
            except UnicodeDecodeError as exc:
                raise InputError(f"{list_file}: not an input list (@FILE is a UTF-8 text file of paths, one per "
                                 "line)") from exc
            entries = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
            items.extend(_expand(entries, top_level=False, skip=skip, videos=videos) if entries else [])
            continue
        path = Path(s)
        if path.is_dir():
            items.extend(walk_folder(path, skip, videos))
        elif _GLOB_CHARS & set(s) and not path.exists():
            base = _glob_base(s)
            matches = sorted(Path(m) for m in glob.glob(s, recursive=True))
            below = skip is not None and skip != base.resolve()       # an output folder inside the glob's folder
            for m in matches:
                if below and (m.resolve() == skip or skip in m.resolve().parents):
                    continue                           # the command's own outputs
                if m.is_dir():
                    items.extend(InputItem(it.path, m.relative_to(base) / it.rel)
                                 for it in walk_folder(m, skip, videos))
                elif m.is_file() and (videos or not is_video_file(m)):
                    items.append(InputItem(m, m.relative_to(base)))
        else:
            items.append(InputItem(path, Path(path.name)))
    if not items:
        raise InputError("no input images or videos found in: " + ", ".join(os.fspath(s) for s in specs))
    if exclude is not None:
        items = exclude(items)
    # Drop exact duplicates; refuse two different files that would share an output path.
    seen: dict[Path, InputItem] = {}
    unique: list[InputItem] = []
    for it in items:
        key = it.rel.with_suffix("")
        first = seen.get(key)
        if first is not None:
            if first.path.resolve() == it.path.resolve():
                continue
            same_folder = first.path.resolve().parent == it.path.resolve().parent
            advice = ("outputs keep the name, not the extension: rename one, or translate them into two --out "
                      "folders" if same_folder else
                      "pass their common parent folder instead so the folder structure keeps them apart")
            raise UsageError(f"inputs {first.path} and {it.path} would both be written as {key}; {advice}")
        seen[key] = it
        unique.append(it)
    return unique


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale single-channel 16/32-bit integer or float images to 8-bit ``L``."""
    import numpy as np

    arr = np.asarray(img)
    if img.mode.startswith("I;16") or (img.mode == "I" and arr.max(initial=0) > 255):
        scaled = arr.astype(np.float64) / 65535.0 * 255.0
    elif img.mode == "F":
        hi = float(arr.max(initial=0.0))
        scaled = arr * (255.0 if hi <= 1.0 else 1.0)
    else:  # mode "I" holding 8-bit values
        scaled = arr.astype(np.float64)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


@contextmanager
def _refuse_truncated() -> Iterator[None]:
    """Make Pillow raise on a truncated file for the duration of one decode, whatever the process-wide
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` says (a partial image is never accepted silently), and restore it after.
    Nothing is changed at import time."""
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def load_image(path: str | os.PathLike, mode: str = "RGB", max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Load an image as ``mode`` ("RGB" or "L"), robustly. See the module docstring for what is handled.

    Raises :class:`InputError` with a one-line reason for anything that cannot be read.
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not an image")
    if not p.exists():
        if os.fspath(path).lower().startswith(("http://", "https://")):
            raise InputError(f"{os.fspath(path)}: URLs are not downloaded; save the image and pass its path")
        raise InputError(f"{p}: no such file")
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):        # /dev/stdin, a named pipe: not read as a stream
            raise InputError(f"{p}: not a regular file (a pipe or device); save the image to a file and pass "
                             "its path")
        if st.st_size == 0:
            raise InputError(f"{p}: empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(p)
    except InputError:
        raise
    except PermissionError as exc:
        raise InputError(f"{p}: permission denied") from exc
    except Image.DecompressionBombError as exc:
        raise InputError(f"{p}: image too large (decompression bomb guard)") from exc
    except UnidentifiedImageError as exc:
        raise InputError(f"{p}: not a recognised image format") from exc
    except OSError as exc:
        raise InputError(f"{p}: cannot open ({exc})") from exc
    with img:
        w, h = img.size
        if w * h > max_pixels:
            raise InputError(f"{p}: {w}x{h} has more than {max_pixels:,} pixels (decompression bomb guard)")
        if w == 0 or h == 0:
            raise InputError(f"{p}: image has zero size")
        try:
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            with _refuse_truncated():
                img.load()
            return convert_image(img, mode)
        except InputError:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            reason = str(exc) or type(exc).__name__
            if "truncated" in reason.lower() or isinstance(exc, SyntaxError):
                reason = f"truncated or corrupt ({reason})"
            raise InputError(f"{p}: cannot decode: {reason}") from exc


def convert_image(img: Image.Image, mode: str = "RGB") -> Image.Image:
    """``img`` as ``mode`` ("RGB" or "L") the way :func:`load_image` converts a file: turned upright by its EXIF
    orientation (a phone photo), 16/32-bit and float images scaled to 8 bits, transparency composited on white.
    Library calls that take a PIL image use it, so an image passed in memory (``Image.open(path)``) gives what the
    same file gives."""
    if mode not in ("RGB", "L"):
        raise UsageError(f"unsupported image mode {mode!r} (use RGB or L)")
    if img.getexif().get(0x0112, 1) != 1:            # the orientation tag; exif_transpose drops it, so once only
        img = ImageOps.exif_transpose(img)
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        img = _to_8bit(img)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode in ("P", "L", "RGB") and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != mode:
        img = img.convert(mode)
    return img


def image_to_tensor(img: Image.Image) -> "torch.Tensor":
    """PIL image -> float tensor ``[C, H, W]`` in [-1, 1]."""
    import numpy as np
    import torch

    arr = np.array(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    t = torch.from_numpy(arr).permute(2, 0, 1).float()
    return t.div_(127.5).sub_(1.0)


def to_uint8(t: "torch.Tensor", rounding: str = "nearest") -> "torch.Tensor":
    """Float values in [-1, 1] -> uint8 grey levels. ``rounding``: ``nearest``, or ``down`` as the reference
    CycleGAN/CUT code saves its outputs (``tensor2im``: ``(x + 1) / 2 * 255`` in float32, truncated), so that a
    reference checkpoint's outputs equal its own test script's to the grey level."""
    import torch

    t = t.detach().float().cpu().clamp(-1, 1)
    if rounding == "down":
        return ((t + 1.0) / 2.0 * 255.0).to(torch.uint8)
    return ((t + 1.0) * 127.5).round().to(torch.uint8)


def tensor_to_image(t: "torch.Tensor", rounding: str = "nearest") -> Image.Image:
    """Float tensor ``[C, H, W]`` in [-1, 1] (C = 1 or 3) -> PIL image (L or RGB); ``rounding`` as in
    :func:`to_uint8`."""
    arr = to_uint8(t, rounding).permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0], mode="L")
    return Image.fromarray(arr, mode="RGB")


def check_file_name(text: object, what: str, part: bool = False) -> str:
    """``text`` if it names a file inside the output folder: a non-empty string without a path separator or NUL,
    not ``.`` or ``..`` (``part=True``: a piece of a name, such as a suffix or an extension, which may be empty);
    otherwise a :class:`UsageError` naming ``what``. Nothing an option or a job file says can write outside
    ``--out``."""
    if not isinstance(text, str) or (not part and text.strip() in ("", ".", "..")) or any(c in text for c in "/\\\0"):
        raise UsageError(f"{what} {text!r} must be a file name, without a folder or a path separator")
    return text


def check_image_ext(ext: str, what: str = "--ext") -> str:
    """Pillow's format name for ``ext`` (``.png``: ``"PNG"``) if it can write images with it, else a
    :class:`UsageError` naming ``what``."""
    fmt = Image.registered_extensions().get(ext.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise UsageError(f"{what} {ext!r}: not an image format that can be written (e.g. .png, .jpg, .webp)")
    return fmt


def output_path(item: InputItem, out_dir: str | os.PathLike, suffix: str = "", ext: str = ".png") -> Path:
    """Where the output for ``item`` goes: its relative path under ``out_dir``, with ``suffix`` and ``ext``."""
    rel = item.rel
    return Path(out_dir) / rel.parent / f"{rel.stem}{suffix}{ext}"


def refuse_replacing_inputs(items: Sequence[InputItem | Path | str], targets: Sequence[Path]) -> None:
    """:class:`UsageError` when an output would be written over an input (``--out`` naming the input file, or a
    folder of inputs given as its own output folder): not even ``--overwrite`` replaces a source. ``items``:
    input items or paths."""
    sources = {Path(getattr(it, "path", it)).resolve() for it in items}
    clash = next((t for t in targets if Path(t).resolve() in sources), None)
    if clash is not None:
        raise UsageError(f"{clash}: is an input; its output would replace it (choose another --out)")


def refuse_if_all_exist(targets: Sequence[Path], overwrite: bool) -> None:
    """Raise :class:`OutputError` (exit 6) when every one of ``targets`` already exists and ``overwrite`` is off:
    there would be nothing to do, so say so before any model is loaded. When only some exist, those are
    reported one by one as failures by the command (exit 1) and the others are written."""
    if overwrite or not targets or not all(Path(t).exists() for t in targets):
        return
    first = Path(targets[0])
    more = f" and the other {len(targets) - 1}" if len(targets) > 1 else ""
    raise OutputError(f"{first}{more} already exist{'s' if len(targets) == 1 else ''}: nothing to write "
                      "(pass --overwrite to replace, or choose another --out)")


def check_side(pixels: int, what: str) -> int:
    """``pixels`` if it is a side length from 1 to :data:`MAX_SIDE`, else a :class:`UsageError` naming ``what``
    (a size flag): a huge one would be refused by the memory allocator at best, by the system's OOM killer at
    worst."""
    if not 1 <= pixels <= MAX_SIDE:
        raise UsageError(f"{what} {pixels}: must be from 1 to {MAX_SIDE:,} pixels")
    return pixels


def check_writable(targets: Sequence[str | os.PathLike]) -> None:
    """:class:`OutputError` (exit 6) when the folder of any of ``targets`` cannot be written (a read-only disk, a
    folder without permission, a file in the way), found before the work rather than after it. Each folder, or
    its nearest existing parent when it is still to be made, is probed with a hidden file made and removed at
    once; no folder is created."""
    probed: set[Path] = set()
    for target in targets:
        folder = Path(target).parent
        existing = next((p for p in (folder, *folder.parents) if os.path.lexists(p)), Path("."))
        if existing in probed:
            continue
        probed.add(existing)
        try:
            if not existing.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a folder")
            fd, probe = tempfile.mkstemp(prefix=".i2i-probe-", dir=existing)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise _cannot_write(Path(target), exc) from exc


def _cannot_write(path: Path, exc: OSError) -> OutputError:
    """The error for a ``path`` whose folder cannot be made: naming a file in the way, else the OS's reason."""
    blocker = next((p for p in path.parents if os.path.lexists(p) and not p.is_dir()), None)
    reason = (exc.strerror or exc if blocker is None else
              f"{blocker} is a link to {os.readlink(blocker)}, which does not exist" if blocker.is_symlink() else
              f"{blocker} is a file, not a folder")
    return OutputError(f"{path}: cannot write ({reason})")


@contextmanager
def output_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Create ``folder`` (and its parents) before the work that fills it, so that a folder that cannot be made is an
    :class:`OutputError` before that work, not after; if the block fails, a folder it made and left empty is
    removed again."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file, not a folder")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_write(folder, exc) from exc
    try:
        yield folder
    except BaseException:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


def check_write_mode(overwrite: bool, skip_existing: bool) -> None:
    """``--overwrite`` (replace existing outputs) and ``--skip-existing`` (keep them, count them as done) exclude
    each other: :class:`UsageError`."""
    if overwrite and skip_existing:
        raise UsageError("--overwrite and --skip-existing cannot be used together: --overwrite replaces existing "
                         "outputs, --skip-existing keeps them as done (give one)")


_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.tmp$")


def _temp_name(path: Path) -> Path:
    """A temporary name beside ``path`` (hidden, random, matched by :data:`_TEMP_NAME`)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def remove_stale_temps(targets: Sequence[Path]) -> int:
    """Remove the temporary files that a killed writer (``kill -9``, a power cut) left beside any of ``targets``,
    before they are written again; returns how many. Only this module's temporary names for exactly these targets
    are touched; each folder is listed once."""
    names: dict[Path, set[str]] = {}
    for target in targets:
        names.setdefault(Path(target).parent, set()).add(Path(target).name)
    removed = 0
    for folder, wanted in names.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:             # not made yet: nothing left behind
            continue
        for entry in entries:
            match = _TEMP_NAME.match(entry.name)
            if match and match["name"] in wanted and _remove_if_abandoned(entry.path):
                removed += 1
    return removed


def _remove_if_abandoned(path: str) -> bool:
    """Remove a temporary file unless its writer is still at work: :func:`atomic_path` holds a lock on it while
    it writes (another process running the same job, ``--skip-existing``), which ends with the writer, also when
    it is killed. Where files cannot be locked (no ``fcntl``), every one is taken as abandoned."""
    try:
        import fcntl
    except ImportError:
        Path(path).unlink(missing_ok=True)
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False                    # gone meanwhile (its writer finished) or unreadable: left alone
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False                # held: a live writer
    finally:
        os.close(fd)
    Path(path).unlink(missing_ok=True)  # not held, or no locks on this file system (the writer could not lock it
    return True                         # either): abandoned


def _create_temp_beside(path: Path) -> tuple[Path, int]:
    """Create a new empty hidden file next to ``path``, with the permissions a plain ``open()`` would give it
    (0666 less the umask: ``tempfile.mkstemp`` would make it 0600, readable by its owner only); returns it and an
    open descriptor that holds a lock on it (:func:`_remove_if_abandoned`) until closed."""
    for _ in range(100):
        tmp = _temp_name(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (ImportError, OSError):
            pass                        # a file system without locks: this temporary file is not guarded
        return tmp, fd
    raise FileExistsError(f"no free temporary name beside {path}")


def names_one_file(out: Path, count: int, what: str) -> bool:
    """Whether ``--out`` names one output image (``zebra.png``) rather than a folder.

    True when ``out`` has an image extension and is not an existing folder; then ``count`` (the number of
    images the command would write) must be 1, else :class:`UsageError`. An existing file without an image
    extension is a :class:`UsageError` too (it cannot be the output folder).
    """
    if out.is_dir():
        return False
    if not is_image_file(out):
        if out.exists():
            raise UsageError(f"--out {out} is an existing file, not a folder")
        return False
    if count != 1:
        raise UsageError(f"--out {out} names one image file, but {count} {what} would be written: give a folder")
    return True


def stops_the_batch(exc: BaseException) -> bool:
    """Whether a failed write means every later output would fail too (no space left, quota exceeded, a read-only
    file system): the batch stops there instead of computing the rest for nothing."""
    import errno

    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


@contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and move it into place atomically.

    Without ``overwrite`` an existing ``path`` raises :class:`OutputError` (checked before and at the final
    link, so a concurrent writer cannot be clobbered). On any error the temporary file is removed, so no partial
    or zero-byte output is ever left behind.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise OutputError(f"{path}: already exists (pass --overwrite to replace it)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, lock = _create_temp_beside(path)
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError as exc:
                raise OutputError(f"{path}: already exists (pass --overwrite to replace it)") from exc
            except OSError:  # file systems without hard links
                if path.exists():
                    raise OutputError(f"{path}: already exists (pass --overwrite to replace it)") from None
                os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)
        os.close(lock)


def save_image(img: Image.Image, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save ``img`` atomically; the format follows the extension of ``path``."""
    path = Path(path)
    fmt = check_image_ext(path.suffix, f"{path}: the extension")
    if fmt == "JPEG" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    with atomic_path(path, overwrite=overwrite) as tmp:
        img.save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so that renames inside it survive a crash (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

