"""The shell scripts in examples/ run as written, on tiny data."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY_TRAIN = ("--max-iters 6 --ngf 8 --ndf 8 --crop-size 32 --load-size 32 --num-workers 0 "
              "--save-epoch-every 1 --quiet")


def script_env(**extra):
    env = dict(os.environ, HF_HUB_OFFLINE="1", **extra)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def sh(name, *args, **env):
    return subprocess.run(["bash", str(EXAMPLES / name), *map(str, args)], capture_output=True, text=True,
                          env=script_env(**env), timeout=300)


def make_dataset(root: Path, n: int = 3) -> Path:
    colours = ["red", "green", "blue", "orange"]
    for split in ("trainA", "trainB", "testA", "testB"):
        (root / split).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (36 + i, 32), colours[(i + len(split)) % 4]).save(root / split / f"{i}.jpg")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("ex")
    data = make_dataset(base / "data")
    out = sh("train_then_translate.sh", data, base / "run", base / "out", TRAIN_FLAGS=TINY_TRAIN, I2I_FLAGS="-q")
    assert out.returncode == 0, out.stderr
    return base, data, out


def test_train_then_translate(trained):
    base, data, _ = trained
    assert sorted(p.name for p in (base / "out" / "AtoB").iterdir()) == ["0.png", "1.png", "2.png"]
    assert Image.open(base / "out" / "BtoA" / "2.png").size == (38, 32)
    # running it again resumes the finished run instead of refusing or starting over
    again = sh("train_then_translate.sh", data, base / "run", base / "out", TRAIN_FLAGS=TINY_TRAIN,
               I2I_FLAGS="-q")
    assert again.returncode == 0, again.stderr


def test_translate_tree_keeps_structure(trained, tmp_path):
    base, _, _ = trained
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    Image.new("RGB", (20, 30), "red").save(tree / "top.png")
    Image.new("RGB", (25, 17), "blue").save(tree / "a" / "b" / "deep.jpg")
    out = sh("translate_tree.sh", tree, base / "run", tmp_path / "out", "BtoA", I2I_FLAGS="-q")
    assert out.returncode == 0, out.stderr
    assert Image.open(tmp_path / "out" / "a" / "b" / "deep.png").size == (25, 17)
    assert (tmp_path / "out" / "top.png").is_file()
    # a broken file: the rest still written, non-zero exit
    (tree / "a" / "broken.png").write_bytes(b"x")
    out = sh("translate_tree.sh", tree, base / "run", tmp_path / "out2", I2I_FLAGS="-q")
    assert out.returncode == 1 and "broken.png" in out.stderr
    assert (tmp_path / "out2" / "a" / "b" / "deep.png").is_file()


def test_sweep_checkpoints(trained, tmp_path):
    base, data, _ = trained
    checkpoints = sorted((base / "run" / "checkpoints").glob("*"))
    assert len(checkpoints) >= 2
    out = sh("sweep_checkpoints.sh", data / "testA", tmp_path / "sweep", *checkpoints)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == sorted(c.name for c in checkpoints)
    for c in checkpoints:
        assert len(list((tmp_path / "sweep" / c.name).glob("*.png"))) == 3


def test_json_report(trained, tmp_path):
    base, data, _ = trained
    src = tmp_path / "src"
    src.mkdir()
    for p in (data / "testB").iterdir():
        (src / p.name).write_bytes(p.read_bytes())
    (src / "bad.png").write_bytes(b"")
    out = sh("json_report.sh", src, base / "run", tmp_path / "rep")
    assert out.returncode == 1, out.stderr                       # one input failed
    assert "written: 3" in out.stdout and "failed:  1" in out.stdout
    assert "bad.png" in out.stdout and "1 38x32" in out.stdout
    lines = (tmp_path / "rep" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 5 and '"kind": "summary"' in lines[-1]    # 4 inputs, then the run's summary


def test_scripts_print_usage():
    for script in sorted(EXAMPLES.glob("*.sh")):
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=script_env())
        assert out.returncode == 2 and "usage" in out.stderr.lower(), script.name
