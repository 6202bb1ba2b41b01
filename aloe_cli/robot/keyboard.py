"""``--intervene keyboard``: a key toggles a person's takeover.

`KeyToggle` reads single key presses from a terminal without blocking (the terminal is put in
cbreak mode while it is open, and restored after). `KeyboardTakeover` is a `Teleoperator`:
pressing SPACE (or ``i``) hands control to its driver — the robot's own teleoperator, or
Meta-World's scripted expert in simulation — and pressing it again hands back to the policy.
"""

from __future__ import annotations

import os
import select

import numpy as np

from . import EpisodeStatus, Teleoperator

TOGGLE_KEYS = (" ", "i")


class KeyToggle:
    """Non-blocking key presses from a terminal file descriptor (e.g. ``sys.stdin.fileno()``)."""

    def __init__(self, fd: int):
        self.fd = fd
        self._saved = None

    def open(self) -> None:
        if self._saved is None and os.isatty(self.fd):
            import termios
            import tty

            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)

    def close(self) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def poll(self) -> str:
        """The keys pressed since the last poll ("" when none)."""
        out = []
        while select.select([self.fd], [], [], 0)[0]:
            data = os.read(self.fd, 64)
            if not data:
                break
            out.append(data.decode(errors="ignore"))
        return "".join(out)


class KeyboardTakeover:
    """A `Teleoperator`: SPACE or ``i`` toggles takeover; `driver` produces the actions meanwhile."""

    def __init__(self, driver: Teleoperator, keys: KeyToggle):
        self.driver = driver
        self.keys = keys
        self.active = False

    def connect(self) -> None:
        self.keys.open()
        self.driver.connect()

    def disconnect(self) -> None:
        self.keys.close()
        self.driver.disconnect()

    def reset(self) -> None:
        self.active = False
        self.driver.reset()

    def wants_control(self, observation: dict, status: EpisodeStatus) -> bool:
        for ch in self.keys.poll():
            if ch in TOGGLE_KEYS:
                self.active = not self.active
        return self.active

    def get_action(self, observation: dict) -> np.ndarray:
        return self.driver.get_action(observation)
