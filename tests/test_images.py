"""Image I/O: odd files load correctly or fail with one clear InputError; inputs expand; saves are atomic."""

import io
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from i2i.errors import InputError, OutputError, UsageError
from i2i.images import (expand_inputs, image_to_tensor, load_image, output_path, save_image, tensor_to_image,
                        write_bytes_atomic)


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (40, 20), "red")
    img.paste((0, 0, 255), (0, 0, 10, 20))             # blue stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6                                     # rotate 90 degrees clockwise on display
    img.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "rot.jpg")
    assert out.size == (20, 40)
    top = np.asarray(out)[2, 10]
    assert top[2] > 200 and top[0] < 60                  # the blue stripe is now on top
    from i2i.images import convert_image

    in_memory = convert_image(Image.open(tmp_path / "rot.jpg"))      # what the Python API gets: the same
    assert np.array_equal(np.asarray(in_memory), np.asarray(out))


def test_16bit_grey_png_is_scaled(tmp_path):
    arr = np.full((8, 8), 65535, np.uint16)
    arr[:, :4] = 32768
    Image.fromarray(arr).save(tmp_path / "g16.png")
    out = np.asarray(load_image(tmp_path / "g16.png", mode="L"))
    assert out[0, 7] == 255 and abs(int(out[0, 0]) - 128) <= 1


def _png_rgb16(path, w=4, h=3, value=(65535, 0, 32768)):
    raw = b"".join(b"\x00" + struct.pack(">HHH", *value) * w for _ in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    path.write_bytes(png)


def test_16bit_rgb_png(tmp_path):
    _png_rgb16(tmp_path / "c16.png")
    px = np.asarray(load_image(tmp_path / "c16.png"))[0, 0]
    assert px[0] == 255 and px[1] == 0 and abs(int(px[2]) - 128) <= 1


def test_16bit_tiff(tmp_path):
    Image.fromarray(np.full((5, 6), 65535, np.uint16)).save(tmp_path / "t.tif")
    assert np.asarray(load_image(tmp_path / "t.tif")).min() == 255


def test_alpha_composited_on_white(tmp_path):
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert np.asarray(load_image(tmp_path / "clear.png"))[0, 0].tolist() == [255, 255, 255]
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pal.png", transparency=0)
    assert np.asarray(load_image(tmp_path / "pal.png"))[0, 0].tolist() == [255, 255, 255]


def test_cmyk_grey_and_gif(tmp_path):
    Image.new("CMYK", (6, 6), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    assert load_image(tmp_path / "cmyk.jpg").mode == "RGB"
    Image.new("L", (6, 6), 90).save(tmp_path / "grey.png")
    assert load_image(tmp_path / "grey.png").mode == "RGB"
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    first = np.asarray(load_image(tmp_path / "anim.gif"))[0, 0]
    assert first[0] > 200 and first[2] < 60


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_text("hello, not a picture"), "not a recognised image"),
    (lambda p: p.mkdir(), "directory"),
])
def test_bad_files_raise_one_clear_error(tmp_path, make, words):
    p = tmp_path / "bad.png"
    make(p)
    with pytest.raises(InputError, match=words) as info:
        load_image(p)
    assert str(p) in str(info.value) and "\n" not in str(info.value)


def test_truncated_files(tmp_path):
    for ext in ("png", "jpg"):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buf, ext.replace(
            "jpg", "jpeg"))
        p = tmp_path / f"cut.{ext}"
        p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        with pytest.raises(InputError, match="cut"):
            load_image(p)


def test_truncated_refused_even_when_pillow_is_lenient_and_flag_restored(tmp_path, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)   # a caller's own process-wide choice
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buf, "png")
    p = tmp_path / "cut.png"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputError, match="cut"):
        load_image(p)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_importing_i2i_leaves_global_library_state_alone():
    """Importing i2i's modules must not change Pillow's flags or other libraries' logging levels."""
    import subprocess
    import sys

    code = (
        "import logging\n"
        "from PIL import ImageFile\n"
        "ImageFile.LOAD_TRUNCATED_IMAGES = True\n"
        "before = {n: logging.getLogger(n).level for n in ('diffusers', 'transformers', 'PIL')}\n"
        "import i2i, i2i.images, i2i.shapes, i2i.device, i2i.cli.app\n"
        "after = {n: logging.getLogger(n).level for n in ('diffusers', 'transformers', 'PIL')}\n"
        "assert ImageFile.LOAD_TRUNCATED_IMAGES is True, 'Pillow flag changed'\n"
        "assert before == after, (before, after)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_decompression_bomb_refused(tmp_path):
    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    with pytest.raises(InputError, match="bomb"):
        load_image(tmp_path / "big.png", max_pixels=10_000)


def _unprivileged(fn) -> None:
    """Run ``fn()`` as an ordinary user: directly, or, under root (which ignores file permissions), in a forked
    child that has switched to the user "nobody" (uid 65534)."""
    if os.geteuid() != 0:
        fn()
        return
    pid = os.fork()
    if pid == 0:                                   # child: never return into pytest
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            fn()
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the check failed in the unprivileged child (see stderr)"


@pytest.fixture
def shared_dir():
    """A folder an unprivileged user can enter (pytest's tmp_path is private to its owner)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="i2i-perm-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_unreadable_file(shared_dir):
    p = shared_dir / "secret.png"
    Image.new("RGB", (4, 4)).save(p)
    p.chmod(0)

    def check():
        with pytest.raises(InputError, match="permission denied"):
            load_image(p)

    _unprivileged(check)


def test_tensor_round_trip():
    img = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    t = image_to_tensor(img)
    assert t.shape == (3, 4, 4) and t.min() >= -1 and t.max() <= 1
    assert np.array_equal(np.asarray(tensor_to_image(t)), np.asarray(img))


def test_expand_inputs(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for rel in ("d/a.png", "d/sub/b.jpg", "d/notes.txt", "c.png"):
        (tmp_path / rel).write_bytes(b"x")
    items = expand_inputs([tmp_path / "d"])
    assert [i.rel.as_posix() for i in items] == ["a.png", "sub/b.jpg"]
    globbed = expand_inputs([str(tmp_path / "d" / "**" / "*.jpg")])
    assert [i.rel.as_posix() for i in globbed] == ["sub/b.jpg"]
    lst = tmp_path / "list.txt"
    lst.write_text(f"# inputs\n{tmp_path / 'c.png'}\n\n{tmp_path / 'd' / 'a.png'}\n")
    assert [i.rel.as_posix() for i in expand_inputs([f"@{lst}"])] == ["c.png", "a.png"]
    with pytest.raises(InputError):
        expand_inputs([str(tmp_path / "none" / "*.png")])
    (tmp_path / "d" / "a.jpg").write_bytes(b"x")             # a.png and a.jpg would share a.png
    with pytest.raises(UsageError, match="both be written as a; outputs keep the name, not the extension"):
        expand_inputs([tmp_path / "d"])
    (tmp_path / "d" / "a.jpg").unlink()
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "a.png").write_bytes(b"x")
    with pytest.raises(UsageError, match="pass their common parent folder"):
        expand_inputs([tmp_path / "d" / "a.png", tmp_path / "e" / "a.png"])
    assert output_path(items[1], tmp_path / "out", "_fake", ".png") == tmp_path / "out" / "sub" / "b_fake.png"


def test_linked_folders_are_read_once(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.png").write_bytes(b"x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "b.png").write_bytes(b"x")
    (tmp_path / "d" / "sub" / "up").symlink_to("..")                  # a loop
    (tmp_path / "d" / "linked").symlink_to(tmp_path / "other")        # a linked folder: followed
    (tmp_path / "d" / "again").symlink_to(tmp_path / "other")         # the same folder a second time
    with pytest.warns(UserWarning, match="a link to a folder already read") as caught:
        items = expand_inputs([tmp_path / "d"])
    assert [i.rel.as_posix() for i in items] == ["a.png", "again/b.png"]
    assert sorted(str(w.message).split(":")[0] for w in caught) == [str(tmp_path / "d" / "linked"),
                                                                      str(tmp_path / "d" / "sub" / "up")]


def test_atomic_save_never_overwrites(tmp_path):
    target = tmp_path / "o.png"
    save_image(Image.new("RGB", (3, 3)), target)
    with pytest.raises(OutputError, match="overwrite"):
        save_image(Image.new("RGB", (5, 5)), target)
    assert Image.open(target).size == (3, 3)
    save_image(Image.new("RGB", (5, 5)), target, overwrite=True)
    assert Image.open(target).size == (5, 5)
    with pytest.raises(UsageError):
        save_image(Image.new("RGB", (5, 5)), tmp_path / "o.unknownext")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]      # no temp files left


def test_failed_write_leaves_nothing(tmp_path):
    class Boom(Exception):
        pass

    from i2i.images import atomic_path
    with pytest.raises(Boom):
        with atomic_path(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"half")
            raise Boom()
    assert list(tmp_path.iterdir()) == []
    write_bytes_atomic(tmp_path / "x.bin", b"whole")
    assert (tmp_path / "x.bin").read_bytes() == b"whole"


def test_unwritable_output_folder(shared_dir):
    ro = shared_dir / "ro"
    ro.mkdir()
    ro.chmod(0o555)

    def check():
        with pytest.raises(OutputError, match="cannot write"):
            save_image(Image.new("RGB", (2, 2)), ro / "x.png")
        assert list(ro.iterdir()) == []

    _unprivileged(check)


def test_output_under_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot write .*file is a file, not a folder"):
        save_image(Image.new("RGB", (2, 2)), tmp_path / "file" / "x.png")


def test_outputs_get_the_usual_file_permissions(tmp_path):
    """Atomic writes go through a temporary file, which must not leave outputs readable by their owner only."""
    umask = os.umask(0o022)
    try:
        path = save_image(Image.new("RGB", (4, 4)), tmp_path / "x.png")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.umask(0o077)
        path = save_image(Image.new("RGB", (4, 4)), tmp_path / "private.png")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(umask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private.png", "x.png"]   # no temporary files left


def test_training_lists_linked_folders_and_leaves_hidden_ones_out(tmp_path):
    from i2i.cyclegan.data import list_images

    Image.new("RGB", (8, 8)).save(tmp_path / "real.png")
    (tmp_path / "elsewhere").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "elsewhere" / "linked.png")
    folder = tmp_path / "trainA"
    (folder / ".ipynb_checkpoints").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / ".ipynb_checkpoints" / "copy.png")
    Image.new("RGB", (8, 8)).save(folder / "own.png")
    (folder / "sub").symlink_to(tmp_path / "elsewhere")          # the reference's make_dataset follows links
    (folder / "loop").symlink_to(folder)                         # read once, not forever
    with pytest.warns(UserWarning, match="already read"):
        found = list_images(folder)
    assert [p.relative_to(folder).as_posix() for p in found] == ["own.png", "sub/linked.png"]


def test_stale_temps_are_removed_but_a_live_writers_are_not(tmp_path):
    """Two processes of one --skip-existing job: the second's clean-up deleted the first's file in progress
    ("cannot write (No such file or directory)"). A writer holds a lock on its temporary file while it writes."""
    from i2i.images import atomic_path, remove_stale_temps

    target = tmp_path / "x.png"
    abandoned = tmp_path / ".x.png.0123abcd.tmp"        # what a killed writer leaves (no one holds it)
    abandoned.write_bytes(b"partial")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"in progress")
        assert remove_stale_temps([target]) == 1
        assert tmp.exists() and not abandoned.exists()
    assert target.read_bytes() == b"in progress" and not tmp.exists()


def test_a_pipe_is_named_as_such_not_as_an_empty_file(tmp_path):
    """`i2i ... /dev/stdin` with an image piped in was refused as "empty file (0 bytes)"."""
    import os

    from i2i.errors import InputError

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        load_image(fifo)
