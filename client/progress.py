"""A one-line progress bar on a text stream, redrawn at most ten times a second."""

from __future__ import annotations

import time
from typing import TextIO


class Progress:
    """`[#####.....]  50%  5000 series  1 refused  2.1 s`; the share is of input bytes done.

    Disabled, it draws nothing (the command's default when stderr is not a terminal).
    """

    width = 30

    def __init__(self, total_bytes: int, stream: TextIO, enabled: bool) -> None:
        self.total = max(total_bytes, 1)
        self.stream = stream
        self.enabled = enabled
        self.started = time.monotonic()
        self._drawn_at = 0.0
        self._width = 0  # characters of the bar on screen; 0 when none is

    def update(self, done_bytes: int, series: int, refused: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < 0.1:
            return
        share = min(done_bytes / self.total, 1.0)
        filled = round(share * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = now - self.started
        text = f"[{bar}] {share:4.0%}  {series} series  {refused} refused  {elapsed:.1f} s"
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._drawn_at = now
        self._width = len(text)

    def say(self, line: str) -> None:
        """Write `line` on a line of its own; the bar is redrawn below it on the next update."""
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
            self._drawn_at = 0.0
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line, so that what follows starts on a line of its own."""
        if self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
