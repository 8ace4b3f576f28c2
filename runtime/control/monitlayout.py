"""Where `monit`'s four panes go for a terminal size: pm2's layout, as plain rectangles.

Processes top left, the selected process's logs top right, its metrics bottom left and
its metadata bottom right, one status line at the bottom. Pure: a size in, rectangles
out, so the layout is unit-tested at 80x24 and 200x50 without a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_WIDTH = 60  # below this the log pane is too narrow to read a line
MIN_HEIGHT = 16  # room for 5 processes over an 8-row bottom band
LEFT_MIN, LEFT_MAX = 30, 64  # the process and metrics column, in cells
BOTTOM_MIN, BOTTOM_MAX = 9, 12  # the metrics and metadata band, borders included


@dataclass(frozen=True, slots=True)
class Rect:
    """A screen rectangle in cells: top row, left column, height, width."""

    y: int
    x: int
    h: int
    w: int

    @property
    def inner(self) -> Rect:
        """The inside of its border."""
        return Rect(self.y + 1, self.x + 1, max(0, self.h - 2), max(0, self.w - 2))


@dataclass(frozen=True, slots=True)
class Layout:
    """The panes of one frame, and the status line under them."""

    processes: Rect
    logs: Rect
    metrics: Rect
    metadata: Rect
    status: Rect


def plan_layout(width: int, height: int) -> Layout | None:
    """The panes for a `width` x `height` terminal, or None when it is too small for them.

    The left column takes half the width (30 to 64 cells): the process table needs about
    38 cells to show a name; the log pane gets the rest. The bottom band takes two fifths
    of the height (9 to 12 rows: seven metadata lines fit at 80x24), the top row the rest.
    """
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return None
    panes_h = height - 1
    left = max(LEFT_MIN, min(LEFT_MAX, width // 2))
    bottom = max(BOTTOM_MIN, min(BOTTOM_MAX, panes_h * 2 // 5))
    top = panes_h - bottom
    return Layout(
        processes=Rect(0, 0, top, left),
        logs=Rect(0, left, top, width - left),
        metrics=Rect(top, 0, bottom, left),
        metadata=Rect(top, left, bottom, width - left),
        status=Rect(height - 1, 0, 1, width),
    )
