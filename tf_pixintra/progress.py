"""Progress of a long loop: count, rate and ETA, on a terminal or in a log.

    for example in progress.track(examples, "pass 1"):
        ...

On a terminal a bar is redrawn in place (at most every 0.1 s):

    pass 1  12/100 [===>..........................]  12%  3.20 image/s  ETA 0:00:27

Elsewhere (a log, CI) a line every `interval` seconds, and one at the end
unless the loop took under `min_seconds`:

    pass 1: 12/100 (12%), 3.20 image/s, ETA 0:00:27
    pass 1: 100/100 done in 0:00:31, 3.22 image/s

Rate = items done / time since the start; ETA = items left / rate. This
module imports nothing from the package: any module may use it.
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
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):    # no isatty, or closed
        return False


class Progress:
    """Counts the items of a loop of `total` items (None if unknown) and
    reports: `update(n)` after n items, `close()` at the end (or `with`)."""

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

    def elapsed(self):
        return self.clock() - self.start

    def rate(self):
        """Items per second since the start."""
        elapsed = self.elapsed()
        return self.count / elapsed if elapsed > 0 else 0.0

    def eta(self):
        """Seconds left at the current rate; None when unknown."""
        rate = self.rate()
        if self.total is None or rate <= 0:
            return None
        return max(0, self.total - self.count) / rate

    def _count_text(self):
        return f"{self.count}" if self.total is None else f"{self.count}/{self.total}"

    def _percent(self):
        return 100.0 * self.count / self.total if self.total else 100.0

    def line(self):
        """The line a log shows."""
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
        parts = [self.label, self._count_text()]
        if self.total:
            done = "=" * (BAR_WIDTH * self.count // self.total) + ">"   # cut when full
            parts.append("[" + done.ljust(BAR_WIDTH, ".")[:BAR_WIDTH] + "]")
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
        self._write("\r" + text.ljust(self._width) + ("\n" if final else ""))
        self._width = len(text)

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
        """The bar's last draw, or the closing log line. With completed=False
        (the loop raised) a bar only gets its newline; a log nothing."""
        if self._closed:
            return
        self._closed = True
        if self.interactive:
            if completed:
                self._draw(final=True)
            elif self._width:
                self._write("\n")
        elif completed and (self._lines or self.elapsed() >= self.min_seconds):
            self._write(self.final_line() + "\n")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(completed=exc_type is None)


def track(iterable, label, total=None, **kwargs):
    """Yields the items of `iterable`, counting each after the caller's work;
    `total` defaults to len(iterable). Other arguments as for Progress."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with Progress(total, label, **kwargs) as progress:
        for item in iterable:
            yield item
            progress.update()
