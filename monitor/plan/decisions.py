"""Why a probe, or a capability of the plan, is off: a value to decide on, with a reason
for people to read. Nothing decides on the reason's text."""
import enum
from dataclasses import dataclass


class Off(enum.Enum):
    """Why something that could be attached is not."""
    CONFIG = "config"       # switched off by configuration (probes.disable, probes.callbacks)
    LEAN = "lean"           # left out by the lean configuration, by design
    COUNTS = "counts"       # left out by the counts configuration (latency off), by design
    HEADERS = "headers"     # struct reads need this kernel's own headers, which are missing
    KERNEL = "kernel"       # this kernel (or bcc on it) cannot give it: too old, inlined, no kprobes...

    @property
    def by_choice(self):
        """Off because someone chose so, not because the host cannot."""
        return self in (Off.CONFIG, Off.LEAN, Off.COUNTS)


@dataclass(frozen=True)
class Block:
    """Something the plan cannot do, or chose not to: why (a value) and the reason as text."""
    off: Off
    reason: str

    def __str__(self):
        return self.reason
