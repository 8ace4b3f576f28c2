"""`monit`'s keys and polled data as pure state changes: selection, confirmation, history."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.control.monitstate import HISTORY_SAMPLES, Action, MonitState, Quit


def rows(*names: str, cpu: float | None = 1.0) -> list[dict[str, Any]]:
    return [
        {"id": i, "name": n, "instance": 0, "cpu_percent": cpu, "memory_bytes": 1 << 20}
        for i, n in enumerate(names)
    ]


def ready(*names: str) -> MonitState:
    s = MonitState()
    s.update_rows(rows(*names))
    return s


@pytest.mark.parametrize(
    ("key", "action"),
    [
        ("r", Action("restart", "web")),
        ("R", Action("reload", "web")),
        ("l", Action("reload", "web")),
        ("s", Action("stop", "web")),
        ("S", Action("start", "web")),
        ("+", Action("scale", "web", "+1")),
        ("-", Action("scale", "web", "-1")),
    ],
    ids=["restart", "reload", "reload-l", "stop", "start", "scale-up", "scale-down"],
)
def test_action_keys_ask_first_and_y_confirms(key: str, action: Action) -> None:
    """Each action key only asks on the status line; `y` turns it into the request."""
    s = ready("web", "jobs")
    assert s.press(key) is None
    assert s.message == (f"{action.label}? (y/n)", "prompt")
    assert s.press("y") == action
    assert s.pending == action
    assert s.confirm is None


@pytest.mark.parametrize("answer", ["n", "N", "escape", "q", "x", "down"])
def test_any_other_answer_cancels(answer: str) -> None:
    """Anything but y cancels the action, and a q or an arrow does nothing else."""
    s = ready("web", "jobs")
    s.press("r")
    assert s.press(answer) is None
    assert s.message == ("restart web: cancelled", "")
    assert s.confirm is None
    assert s.pending is None
    assert s.selected == 0


def test_idle_ticks_and_resizes_keep_the_question() -> None:
    """No key, or a resize, while the question is up does not answer it."""
    s = ready("web")
    s.press("s")
    assert s.press("") is None
    assert s.press("resize") is None
    assert s.press("Y") == Action("stop", "web")


def test_action_targets_the_selected_app() -> None:
    """After moving down, the action names the second app."""
    s = ready("web", "jobs")
    s.press("j")
    s.press("r")
    assert s.press("y") == Action("restart", "jobs")


def test_result_goes_on_the_status_line() -> None:
    """The master's answer shows as ok, or as its error, and frees the next action."""
    s = ready("web")
    s.press("r")
    action = s.press("y")
    assert isinstance(action, Action)
    s.press("r")
    assert s.message == ("wait: restart web is still running", "error")
    assert s.confirm is None
    s.done(action, None)
    assert s.message == ("restart web: ok", "ok")
    assert s.pending is None
    s.done(Action("scale", "web", "+1"), "web is in fork mode")
    assert s.message == ("scale web +1: web is in fork mode", "error")


def test_no_process_no_action() -> None:
    """With nothing running an action key says so instead of asking."""
    s = MonitState()
    assert s.press("r") is None
    assert s.message == ("no process selected", "error")
    assert s.confirm is None


def test_selection_stays_in_bounds() -> None:
    """Up at the top and down at the bottom stay put; k/j are the same as the arrows."""
    s = ready("a", "b", "c")
    for key in ("up", "k"):
        s.press(key)
    assert s.selected == 0
    for key in ("down", "j", "down", "j"):
        s.press(key)
    assert s.selected == 2
    assert s.app == "c"


def test_quit_and_help() -> None:
    """q quits; ? opens the help, and the next key only closes it."""
    s = ready("web")
    assert isinstance(s.press("q"), Quit)
    assert s.press("?") is None
    assert s.help
    assert s.press("q") is None
    assert not s.help
    assert isinstance(s.press("escape"), Quit)


def test_selection_follows_the_process_across_polls() -> None:
    """The same process stays selected when rows come and go around it."""
    s = ready("a", "b", "c")
    s.selected = 2
    s.update_rows([r for r in rows("a", "b", "c") if r["id"] != 0])
    assert s.row is not None
    assert s.row["id"] == 2
    s.update_rows(rows("a"))
    assert s.selected == 0
    s.update_rows([])
    assert s.row is None
    assert s.app is None
    assert s.selected == 0


def test_history_keeps_one_sample_a_poll_per_process() -> None:
    """CPU and memory accumulate per id, bounded, with None for a missing sample."""
    s = MonitState()
    for _ in range(HISTORY_SAMPLES + 5):
        s.update_rows(rows("a", "b"))
    s.update_rows(rows("a", "b", cpu=None))
    assert len(s.cpu[0]) == HISTORY_SAMPLES
    assert s.cpu[0][-1] is None
    assert s.cpu[0][-2] == 1.0
    assert s.memory[1][-1] == float(1 << 20)
    s.update_rows(rows("a"))
    assert set(s.cpu) == {0}
    assert set(s.memory) == {0}


def test_log_records_become_styled_lines() -> None:
    """A record is its time and message; stderr and the runtime's events get their styles."""
    s = MonitState()
    s.add_logs(
        [
            {"timestamp": "2026-11-28T22:47:29.123Z", "message": "up", "stream": "stdout"},
            {"timestamp": "2026-11-28T22:47:30.000Z", "message": "boom", "stream": "stderr"},
            {"timestamp": "2026-11-28T22:47:31.000Z", "event": "worker_exited"},
        ]
    )
    assert list(s.logs) == [
        ("22:47:29 up", ""),
        ("22:47:30 boom", "err"),
        ("22:47:31 worker_exited", "event"),
    ]
