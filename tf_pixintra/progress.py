"""Progress of a long loop: count, rate and ETA, on a terminal or in a log.

Every step of the pipeline that can take more than a few seconds outside
Keras' `fit` (ToyScapes generation, the two pseudo-label passes, evaluation,
int8 calibration, the TFLite fidelity check) reports through this module:

    for example in progress.track(examples, "pass 1"):
        ...

On a terminal a bar is redrawn in place (at most every 0.1 s):

    pass 1  12/100 [===>..........................]  12%  3.20 image/s  ETA 0:00:27

When the stream is not a terminal (a log file, CI), a plain line is printed
every `interval` seconds (30 by default) and one when the loop ends, so a log
shows progress without a line per item; a loop shorter than `min_seconds`
prints nothing there:

    pass 1: 12/100 (12%), 3.20 image/s, ETA 0:00:27
    pass 1: 100/100 done in 0:00:31, 3.22 image/s

Rate = items done / time since the start; ETA = items left / rate. Below one
item per second the rate reads as seconds per item ("18.0 s/image"). The
clock and the stream are arguments, so the tests drive both. This module
imports nothing from the package: any module may use it.
"""

import sys
import time

DEFAULT_INTERVAL = 30.0     # seconds between plain lines in a log
DEFAULT_MIN_SECONDS = 5.0   # shorter loops print no closing line in a log
REDRAW_SECONDS = 0.1        # seconds between two redraws of the bar
BAR_WIDTH = 30


def format_duration(seconds):
    """"H:MM:SS" of a non-negative duration (rounded to the second)."""
    total = int(round(max(0.0, float(seconds))))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def format_rate(rate, unit):
    """"3.20 image/s", or "18.0 s/image" below one item per second."""
    if rate <= 0:
        return f"- {unit}/s"
    if rate >= 1.0:
        return f"{rate:.2f} {unit}/s"
    return f"{1.0 / rate:.1f} s/{unit}"


def is_terminal(stream):
    """Whether `stream` is an interactive terminal."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):    # no isatty, or closed
        return False


class Progress:
    """Counts items of a loop of `total` items (None if unknown) and reports.

    `update(n)` after each n items; `close()` at the end (or use it as a
    context manager). `interactive` None means "is the stream a terminal".
    """

    def __init__(self, total, label, *, unit="image", stream=None,
                 interactive=None, interval=DEFAULT_INTERVAL,
                 min_seconds=DEFAULT_MIN_SECONDS, clock=time.monotonic):
        self.total = None if total is None else int(total)
        self.label, self.unit = label, unit
        self.stream = sys.stdout if stream is None else stream
        self.interactive = (is_terminal(self.stream) if interactive is None
                            else bool(interactive))
        self.interval, self.min_seconds = float(interval), float(min_seconds)
        self.clock = clock
        self.count = 0
        self.start = clock()
        self._last_report = self.start      # last line (log) or redraw (bar)
        self._lines = 0                      # plain lines printed so far
        self._width = 0                      # length of the bar's last draw
        self._closed = False

    # -- figures --------------------------------------------------------
    def elapsed(self):
        return self.clock() - self.start

    def rate(self):
        """Items per second since the start (0 before the first item)."""
        elapsed = self.elapsed()
        return self.count / elapsed if elapsed > 0 else 0.0

    def eta(self):
        """Seconds left at the current rate; None when unknown."""
        rate = self.rate()
        if self.total is None or rate <= 0:
            return None
        return max(0, self.total - self.count) / rate

    # -- reporting ------------------------------------------------------
    def _count_text(self):
        if self.total is None:
            return f"{self.count}"
        return f"{self.count}/{self.total}"

    def _percent(self):
        return 100.0 * self.count / self.total if self.total else 100.0

    def line(self):
        """The plain progress line (what a log shows)."""
        parts = [self._count_text()]
        if self.total is not None:
            parts[0] += f" ({self._percent():.0f}%)"
        parts.append(format_rate(self.rate(), self.unit))
        eta = self.eta()
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        return f"{self.label}: " + ", ".join(parts)

    def final_line(self):
        """The closing plain line: count, time taken and rate."""
        return (f"{self.label}: {self._count_text()} done in "
                f"{format_duration(self.elapsed())}, "
                f"{format_rate(self.rate(), self.unit)}")

    def bar(self, final=False):
        """The terminal bar: label, count, bar, percent, rate, ETA or time."""
        parts = [self.label, self._count_text()]
        if self.total:
            done = min(BAR_WIDTH, BAR_WIDTH * self.count // self.total)
            arrow = ">" if done < BAR_WIDTH else ""
            parts.append("[" + "=" * done + arrow
                         + "." * (BAR_WIDTH - done - len(arrow)) + "]")
            parts.append(f"{self._percent():3.0f}%")
        parts.append(format_rate(self.rate(), self.unit))
        if final:
            parts.append(format_duration(self.elapsed()))
        else:
            eta = self.eta()
            parts.append("ETA " + ("?" if eta is None else format_duration(eta)))
        return "  ".join(parts)

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()

    def _draw(self, final=False):
        text = self.bar(final)
        pad = " " * max(0, self._width - len(text))
        self._width = len(text)
        self._write("\r" + text + pad + ("\n" if final else ""))

    def update(self, n=1):
        """Counts `n` more items; redraws or prints a line when it is time."""
        self.count += int(n)
        now = self.clock()
        if self.interactive:
            finished = self.total is not None and self.count >= self.total
            if finished or now - self._last_report >= REDRAW_SECONDS:
                self._last_report = now
                self._draw()
        elif now - self._last_report >= self.interval:
            self._last_report = now
            self._lines += 1
            self._write(self.line() + "\n")

    def close(self, completed=True):
        """Ends the report: the bar's last draw, or the closing log line.

        With completed=False (the loop raised) a terminal bar only gets its
        newline, so the error starts on a line of its own; a log gets nothing.
        """
        if self._closed:
            return
        self._closed = True
        if self.interactive:
            if completed:
                self._draw(final=True)
            elif self._width:
                self._write("\n")
        elif completed and (self._lines
                            or self.elapsed() >= self.min_seconds):
            self._write(self.final_line() + "\n")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(completed=exc_type is None)
        return False


def track(iterable, label, total=None, **kwargs):
    """Yields the items of `iterable`, counting each after the caller's work.

    `total` defaults to len(iterable) when it has one; other arguments as
    for Progress.
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with Progress(total, label, **kwargs) as progress:
        for item in iterable:
            yield item
            progress.update()
