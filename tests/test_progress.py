"""Progress without a terminal (logs, pipes): plain lines that say how far, how long and what the status is."""

import io

from rich.console import Console

from i2i.progress import Reporter


def reporter(buf, every=60.0):
    return Reporter(console=Console(file=buf, force_terminal=False, width=40), plain_every=every)


def test_plain_progress_prints_on_status_change_and_at_the_end():
    buf = io.StringIO()
    with reporter(buf).progress(10, "train", completed=4) as advance:     # a resumed run: 4 done before
        advance(1)
        advance(0, status="loss 0.500")
        advance(1)
        advance(0, status="loss 0.250")
        for _ in range(4):
            advance(1)
    lines = buf.getvalue().splitlines()
    assert [ln.split(",")[0] for ln in lines] == ["train 5/10 (50%)", "train 6/10 (60%)", "train 10/10 (100%)"]
    assert lines[0].endswith("loss 0.500") and lines[-1].endswith("loss 0.250")   # long lines are not cut
    assert all("elapsed" in ln and "ETA" in ln for ln in lines)


def test_plain_progress_prints_at_least_every_interval():
    buf = io.StringIO()
    with reporter(buf, every=0.0).progress(None, "images") as advance:
        for _ in range(3):
            advance(1)
    assert [ln.split(",")[0] for ln in buf.getvalue().splitlines()] == ["images 1", "images 2", "images 3"]


def test_quiet_prints_nothing():
    buf = io.StringIO()
    with Reporter(quiet=True, console=Console(file=buf, force_terminal=False)).progress(3, "x") as advance:
        advance(3, status="s")
    assert buf.getvalue() == ""


def test_a_warning_is_printed_once():
    buf = io.StringIO()
    r = reporter(buf)
    for _ in range(15):                          # e.g. one per frame of a clip
        r.warn("the structure image is ignored")
    r.warn("another one")
    assert buf.getvalue().count("warning: the structure image is ignored") == 1 and "another one" in buf.getvalue()
