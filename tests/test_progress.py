"""The progress helper: plain lines at the interval in a log, a bar on a tty."""

import io

import pytest

from tf_pixintra import progress


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_formats():
    assert progress.format_duration(0) == "0:00:00"
    assert progress.format_duration(3725.4) == "1:02:05"
    assert progress.format_rate(3.2, "image") == "3.20 image/s"
    assert progress.format_rate(1 / 18, "image") == "18.0 s/image"
    assert progress.format_rate(0, "image") == "- image/s"


def test_log_prints_a_line_per_interval_with_count_rate_and_eta():
    clock, out = Clock(), io.StringIO()
    bar = progress.Progress(100, "pass 1", stream=out, interval=30, clock=clock)
    assert not bar.interactive               # a StringIO is no terminal
    for _ in range(20):                       # 20 items, 2 s each: 40 s
        clock.now += 2.0
        bar.update()
    # One line, at the first update 30 s or more after the start: item 15.
    # Rate 15 / 30 s = 0.5 image/s -> "2.0 s/image"; ETA 85 / 0.5 = 170 s.
    assert out.getvalue() == "pass 1: 15/100 (15%), 2.0 s/image, ETA 0:02:50\n"
    for _ in range(80):                       # 0.5 s each: 40 s more, 80 s in all
        clock.now += 0.5
        bar.update()
    lines = out.getvalue().splitlines()
    # Next lines 30 s after the previous one: at 60 s (item 20 + 40 = 60:
    # 1.00 image/s, ETA 40 s), then at 90 s -- never reached (80 s in all).
    assert lines[1] == "pass 1: 60/100 (60%), 1.00 image/s, ETA 0:00:40"
    assert len(lines) == 2
    assert bar.rate() == pytest.approx(100 / 80.0)
    assert bar.eta() == 0
    bar.close()
    assert out.getvalue().splitlines()[-1] == \
        "pass 1: 100/100 done in 0:01:20, 1.25 image/s"


def test_log_closing_line_only_for_a_long_loop_that_ended():
    clock, out = Clock(), io.StringIO()
    for item in progress.track(range(4), "eval", stream=out, clock=clock,
                               min_seconds=5):
        clock.now += 1.0                      # 4 s in all: under 5 s
    assert out.getvalue() == ""
    with pytest.raises(ValueError):
        with progress.Progress(10, "eval", stream=out, clock=clock) as bar:
            clock.now += 60.0
            bar.update()
            raise ValueError
    # Its interval line, but no "done" line: the loop raised.
    assert out.getvalue() == "eval: 1/10 (10%), 60.0 s/image, ETA 0:09:00\n"
    # A loop of 6 s does print its closing line (count, time, rate).
    out = io.StringIO()
    for item in progress.track([1, 2, 3], "eval", stream=out, clock=clock,
                               min_seconds=5, unit="batch"):
        clock.now += 2.0
    assert out.getvalue() == "eval: 3/3 done in 0:00:06, 2.0 s/batch\n"


def test_unknown_total_shows_count_and_rate_only():
    clock, out = Clock(), io.StringIO()
    bar = progress.Progress(None, "gen", stream=out, interval=10, clock=clock)
    clock.now += 10.0
    bar.update(40)
    assert bar.eta() is None
    assert out.getvalue() == "gen: 40, 4.00 image/s\n"


def test_terminal_bar_is_redrawn_in_place_with_rate_and_eta():
    clock, out = Clock(), Terminal()
    with progress.Progress(4, "fidelity", stream=out, clock=clock) as bar:
        assert bar.interactive
        clock.now += 2.0
        bar.update()
        clock.now += 0.05                     # under the redraw period: no draw
        bar.update()
        clock.now += 0.95
        bar.update()
        clock.now += 1.0
        bar.update()                          # the last item is always drawn
    draws = out.getvalue().split("\r")[1:]
    assert len(draws) == 4                    # items 1, 3, 4 and the final one
    first = draws[0].rstrip()
    assert first.startswith("fidelity  1/4  [=======>")
    assert first.endswith(" 25%  2.0 s/image  ETA 0:00:06")
    assert draws[1].rstrip().endswith("75%  1.00 image/s  ETA 0:00:01")
    assert draws[-1].endswith("\n")       # the bar's line ends with the loop
    assert draws[-1].rstrip().endswith("100%  1.00 image/s  0:00:04")
    assert "[" + "=" * progress.BAR_WIDTH + "]" in draws[-1]
