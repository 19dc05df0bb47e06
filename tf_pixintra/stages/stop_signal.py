"""SIGTERM / Ctrl-C during training: stop at a step boundary, bounded in time.

A raising handler would usually fire after the train step has updated the
optimizers but before the step counter moved: an inconsistent checkpoint.
So the handlers only *request* a stop, which the training loop checks at
each step boundary. A main thread blocked inside TensorFlow never runs a
Python handler, but the C-level handler writes the signal number to a
wake-up socket (`signal.set_wakeup_fd`): a watcher thread reads it and ends
the process (status 128 + signal) if the stop has not completed `grace_s`
seconds later, or at once on a second signal.
"""

import os
import signal
import socket
import sys
import threading
import time

from absl import logging

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal:
    """Context manager: SIGTERM/SIGINT request a stop instead of raising
    (nothing outside the main thread, where handlers cannot be installed)."""

    def __init__(self, grace_s=60.0, what="training"):
        self.grace_s, self.what = float(grace_s), what
        self.signum = None
        self._count = 0
        self._requested = threading.Event()
        self._done = threading.Event()
        self._installed = False

    @property
    def requested(self):
        return self._requested.is_set()

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._previous = {s: signal.signal(s, self._handler) for s in SIGNALS}
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._installed = True
        self._thread = threading.Thread(target=self._watch, daemon=True,
                                        name="stop-signal-watcher")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if not self._installed:
            return False
        self._done.set()
        signal.set_wakeup_fd(self._previous_fd)
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._writer.close()          # the watcher's recv() returns b""
        self._thread.join(timeout=5)
        self._reader.close()
        self._installed = False
        return False

    def _watch(self):
        while not self._done.is_set():
            try:
                data = self._reader.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in SIGNALS:
                    self._on_signal(signum)

    def _handler(self, signum, frame):  # pylint: disable=unused-argument
        """Python-level handler: only sets the flag (the watcher thread
        counts the signals), so the very next step boundary sees it."""
        self.signum = signum
        self._requested.set()

    def _on_signal(self, signum):
        self._count += 1
        if self._count > 1:
            _exit_now(f"{signal.Signals(signum).name} again: stopping "
                      f"{self.what} now; the newest periodic checkpoint is "
                      "the resume point", signum)
        self._handler(signum, None)
        logging.warning("%s: %s stops at the end of this step and saves a "
                        "checkpoint", signal.Signals(signum).name, self.what)
        threading.Thread(target=self._deadline, args=(signum,), daemon=True,
                         name="stop-signal-deadline").start()

    def _deadline(self, signum):
        if not self._done.wait(self.grace_s):
            _exit_now(f"{signal.Signals(signum).name}: {self.what} did not "
                      f"reach the end of a step within {self.grace_s:g} s; "
                      "stopped without a new checkpoint (the newest periodic "
                      "one is the resume point)", signum)


def _exit_now(message, signum):
    sys.stderr.write(f"interrupted: {message}\n")
    sys.stderr.flush()
    time.sleep(0)  # let the line out before the process ends
    os._exit(128 + signum)  # pylint: disable=protected-access
