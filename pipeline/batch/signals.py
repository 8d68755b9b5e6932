"""Stopping cleanly when a scheduler or a person says so. SIGTERM (cron wrappers, systemd,
`timeout`) and the first Ctrl-C raise Interrupted where the work is, so the runner records the
item in flight, writes the report and releases its lock; a second Ctrl-C ends at once."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}  # 128 + the signal, as shells report it


class Interrupted(KeyboardInterrupt):
    """The run was told to stop; never an item's failure (KeyboardInterrupt passes every item handler)."""

    def __init__(self, signal_number: int):
        self.signal_name = signal.Signals(signal_number).name
        self.exit_code = EXIT_CODES[signal_number]
        super().__init__(self.signal_name)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise Interrupted (in the main thread only: elsewhere, a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in EXIT_CODES}

    def stop(number, frame):
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C ends at once
        raise Interrupted(number)

    for number in EXIT_CODES:
        signal.signal(number, stop)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
