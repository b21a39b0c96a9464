"""The library as a Python user calls it (what a tour of the API found): the same results as the CLI for the same
inputs, clear errors for arguments of the wrong kind, and no output or global state changed behind the caller."""

from __future__ import annotations

import dataclasses
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_sd import one_thread  # noqa: F401  (one_thread: autouse fixture)

from i2i.cyclegan.config import GeneratorConfig
from i2i.cyclegan.networks import define_G
from i2i.cyclegan.translator import TranslateConfig, translate_images, translate_pil
from i2i.errors import UsageError
from i2i.images import InputItem, convert_image, load_image


def rgba_and_16_bit(folder: Path) -> dict[str, Path]:
    """A transparent RGBA picture and a 16-bit grey one, as files."""
    rgba = np.zeros((24, 24, 4), np.uint8)
    rgba[6:18, 6:18] = (200, 30, 30, 255)                       # an opaque square on a transparent ground
    grey = (np.linspace(0, 65535, 24 * 24).reshape(24, 24)).astype(np.uint16)
    paths = {"rgba": folder / "rgba.png", "grey16": folder / "grey16.png"}
    Image.fromarray(rgba, "RGBA").save(paths["rgba"])
    Image.fromarray(grey).save(paths["grey16"])                # mode I;16
    return paths


def test_an_image_in_memory_is_converted_as_its_file_is(tmp_path):
    for name, path in rgba_and_16_bit(tmp_path).items():
        in_memory = convert_image(Image.open(path))
        assert np.array_equal(np.asarray(in_memory), np.asarray(load_image(path))), name
    ground = np.asarray(convert_image(Image.open(tmp_path / "rgba.png")))[0, 0]
    assert tuple(ground) == (255, 255, 255)                     # transparency on white, not black


def test_translate_pil_equals_translating_the_file(tmp_path):
    gen_cfg = GeneratorConfig(arch="resnet_6blocks", ngf=8)
    gen = define_G(gen_cfg).eval()
    paths = rgba_and_16_bit(tmp_path)
    result = translate_images([InputItem(p, Path(p.name)) for p in paths.values()], gen, gen_cfg, tmp_path / "o",
                              TranslateConfig(num_workers=0))
    assert not result.failed
    for path in paths.values():
        from_memory = np.asarray(translate_pil(gen, gen_cfg, Image.open(path), "cpu"), np.int16)
        assert np.abs(from_memory - np.asarray(Image.open(tmp_path / "o" / path.name), np.int16)).max() <= 1
    auto = translate_pil(gen, gen_cfg, Image.open(paths["rgba"]), "cpu", precision="auto")   # resolved, no KeyError
    assert auto.size == (24, 24)


def test_translate_config_takes_an_extension_as_the_cli_does():
    assert TranslateConfig(ext="jpg").ext == ".jpg" == TranslateConfig(ext=".jpg").ext
    with pytest.raises(UsageError, match="--size 30000: must be from 1 to 16,384 pixels"):
        TranslateConfig(size=30000)


def test_library_calls_print_nothing_of_their_own(tmp_path, capfd):
    gen_cfg = GeneratorConfig(arch="resnet_6blocks", ngf=8)
    gen = define_G(gen_cfg).eval()
    items = [InputItem(p, Path(p.name)) for p in rgba_and_16_bit(tmp_path).values()]
    translate_images(items, gen, gen_cfg, tmp_path / "o", TranslateConfig(num_workers=0))
    again = translate_images(items, gen, gen_cfg, tmp_path / "o", TranslateConfig(num_workers=0))
    assert len(again.failed) == 2 and all("already exists" in why for _, why in again.failed)   # in the result
    assert capfd.readouterr().err == ""                         # not printed


def test_numpy_integers_are_seeds():
    from i2i.cyclegan.run_config import run_config
    from i2i.seeds import check_seed

    assert check_seed(np.int64(7)) == 7 and type(check_seed(np.uint32(7))) is int
    assert run_config(seed=np.int64(3)).seed == 3 and type(run_config(seed=np.int64(3)).seed) is int
    with pytest.raises(UsageError, match="must be an integer"):
        check_seed(np.float64(3.0))


def test_run_config_takes_paths_and_names_unknown_settings(tmp_path):
    from i2i.cyclegan.run_config import run_config

    config = run_config(Path("builtin:shapes"), run_dir=tmp_path / "r")
    assert config.run_dir == str(tmp_path / "r") and isinstance(config.dataroot, str)
    with pytest.raises(UsageError, match=r"unknown setting\(s\) device, foo"):
        run_config(foo=1, device="cuda")


def test_training_leaves_the_callers_random_state_alone(tmp_path):
    from i2i.cyclegan.loop import train
    from i2i.cyclegan.run_config import run_config

    config = run_config(run_dir=tmp_path / "r", max_iters=2, shapes_count=8, batch_size=2, num_workers=0,
                        precision="auto", generator={"ngf": 8}, discriminator={"ndf": 8})
    random.seed(11)
    torch.manual_seed(11)
    expected = (random.random(), torch.rand(3))
    random.seed(11)
    torch.manual_seed(11)
    result = train(config)
    after = (random.random(), torch.rand(3))
    assert after[0] == expected[0] and torch.equal(after[1], expected[1])
    import json

    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["precision"] in ("fp32", "bf16")               # "auto" resolved for the device, and recorded


def test_an_option_in_the_wrong_case_gets_a_hint():
    from i2i.cyclegan.methods import get_method

    with pytest.raises(UsageError, match=r"option 'lambda_a': not an option of --model cyclegan \(did you mean "
                                         r"'lambda_A'\?"):
        get_method("cyclegan").options_from({"lambda_a": 2.0})


def test_a_built_in_method_is_not_replaced_silently():
    from i2i.cyclegan.methods import REGISTRY, register

    with pytest.raises(UsageError, match="already registered"):
        register("cyclegan", "my.module:Other")
    register("cyclegan", REGISTRY["cyclegan"])                  # the same again is fine


SQUARE = Path(__file__).resolve().parents[1] / "examples" / "conditions" / "square_sketch.png"


def test_ctrlx_settings_in_the_appearance_slot_get_a_clear_error():
    from tiny_sd import sd_pipeline

    from i2i.ctrlx.pipeline import CtrlXPipeline

    pipe = CtrlXPipeline(sd_pipeline(), device="cpu")
    with pytest.raises(TypeError, match=r"appearance: expected a PIL image or a path, got CtrlXConfig \(settings go "
                                        r"in config=\.\.\.\)"):
        pipe("a square", SQUARE, pipe.default_config())


def test_a_pipeline_cast_by_a_second_wrapper_says_so():
    from tiny_sd import sd_pipeline

    from i2i.ctrlx.pipeline import CtrlXPipeline

    base = sd_pipeline()
    first = CtrlXPipeline(base, device="cpu")
    CtrlXPipeline(base, device="cpu", precision="bf16")          # casts base's modules in place
    with pytest.raises(UsageError, match="another wrapper of the same diffusers pipeline cast it"):
        first("a square", SQUARE)


def test_unknown_network_settings_are_named():
    from i2i.cyclegan.run_config import run_config

    with pytest.raises(UsageError, match=r"generator: unknown setting\(s\) ngff"):
        run_config(generator={"ngff": 3})


def test_eval_metrics_on_one_image_are_refused_up_front():
    from i2i.cyclegan.evaluate import EvalConfig

    with pytest.raises(UsageError, match="needs at least 2 images per set"):
        EvalConfig(metrics=("kid",), limit=1)
    assert EvalConfig(metrics=("kid",), limit=2).limit == 2


def test_a_method_option_may_not_take_a_flag_of_the_train_command():
    from i2i.cyclegan.methods import REGISTRY, get_method, register
    from i2i.cyclegan.methods.base import Method
    from i2i.options import option

    @dataclasses.dataclass(frozen=True)
    class Clashing:
        lr: float = option(0.1, help="A learning rate of its own.")

    class WithLr(Method):
        Options = Clashing

    register("with_lr", WithLr)
    try:
        with pytest.raises(UsageError, match="its option lr declares --lr, a flag the train command already has"):
            get_method("with_lr")
    finally:
        del REGISTRY["with_lr"]
    for bad in ("my-method", "Upper", "", "2x"):
        with pytest.raises(UsageError, match="lower-case letters"):
            register(bad, WithLr)


def test_a_diffusion_method_name_must_fit_its_files_and_variable():
    from i2i.generate.config import GENERATE

    for bad in ("demo", "my-method", "Gen"):
        with pytest.raises(ValueError, match="lower-case letters"):
            dataclasses.replace(GENERATE, name=bad)
