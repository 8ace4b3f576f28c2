"""Reuseport steering: the cBPF spreading program (pure) and the kernel's index model (real sockets)."""

from __future__ import annotations

import errno
import random
import select
import socket
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.proc import steer
from runtime.proc.steer import ReuseportGroup, run_program, spread_program

LOOPBACK = "127.0.0.1"
CONNECT_TIMEOUT_S = 2.0
BIG_U32 = (0, 1, 2**31 - 1, 2**31, 2**32 - 1)  # load values beyond the set's size


def targets(program: list[steer.Instruction], count: int) -> list[int]:
    """The index `program` picks for load values 0..count-1, then for some huge ones."""
    return [run_program(program, a_in) for a_in in [*range(count), *BIG_U32]]


def expected(indices: list[int]) -> list[int]:
    """What an even spread over `indices` picks for the same load values."""
    ordered = sorted(set(indices))
    return [ordered[a_in % len(ordered)] for a_in in [*range(len(ordered)), *BIG_U32]]


@pytest.mark.parametrize(
    ("indices", "length"),
    [
        ([0], 1),
        ([5], 1),
        ([0, 1], 3),
        ([0, 1, 2, 3], 3),
        ([1, 2, 3], 4),
        ([0, 2], 4),
        ([0, 2, 4, 6], 4),
        ([1, 3, 5, 7], 5),
        ([0, 1, 2, 6, 7], 5),
        ([0, 1, 3, 4, 9], 7),
        ([2, 0, 2, 1], 3),
        (list(range(4096)), 3),
        (list(range(1, 4097)), 4),
    ],
    ids=lambda value: str(value)[:40] if isinstance(value, list) else str(value),
)
def test_program_spreads_over_exactly_the_set(indices: list[int], length: int) -> None:
    """Each load value picks the set's members in turn, and the program has the expected size."""
    program = spread_program(indices)
    assert len(program) == length
    assert targets(program, len(set(indices))) == expected(indices)


@pytest.mark.parametrize(
    "indices",
    [
        list(range(0, 4097, 2)),  # alternating: 2049 isolated indices, stride 2
        [i for i in range(4097) if i % 3],  # gaps 1, 2, 1, 2: the worst mix for a stride
        [i for i in range(4097) if i % 5 not in (1, 3)],  # gaps 2, 2, 1
        random.Random(7).sample(range(4097), 2000),
        random.Random(8).sample(range(4097), 3500),
        [0, 4096],
    ],
    ids=[
        "alternating",
        "every-third-missing",
        "two-of-five-missing",
        "random-2000",
        "random-3500",
        "ends",
    ],
)
def test_any_set_in_a_4097_socket_group_fits(indices: list[int]) -> None:
    """Sets in a group of MAX_INSTANCES + 1 sockets (a reload's extra) fit in 2735 instructions."""
    program = spread_program(indices)
    assert len(program) <= 2735
    ordered = sorted(set(indices))
    for a_in in [
        *random.Random(1).sample(range(len(ordered)), min(40, len(ordered))),
        len(ordered) - 1,
    ]:
        assert run_program(program, a_in) == ordered[a_in]


@settings(max_examples=300, deadline=None)
@given(st.sets(st.integers(min_value=0, max_value=300), min_size=1, max_size=120))
def test_program_is_exact_for_any_small_set(indices: set[int]) -> None:
    """For every position and any set, the program returns that position's index."""
    assert targets(spread_program(indices), len(indices)) == expected(list(indices))


def test_program_refuses_what_it_cannot_express() -> None:
    """Empty sets, out-of-range indices and sets too fragmented for 4096 instructions raise."""
    with pytest.raises(ValueError, match="cannot refuse"):
        spread_program([])
    with pytest.raises(ValueError, match="65534"):
        spread_program([-1, 2])
    with pytest.raises(ValueError, match="65534"):
        spread_program([65535])
    fragmented = [i for i in range(20000) if i % 3]
    with pytest.raises(steer.ProgramTooLarge, match="limit 4096"):
        spread_program(fragmented)


@pytest.mark.parametrize(
    ("ops", "order"),
    [
        ([("join", "a"), ("join", "b"), ("join", "c")], "abc"),
        ([("join", "a"), ("join", "b"), ("join", "c"), ("leave", "a")], "cb"),
        ([("join", "a"), ("join", "b"), ("join", "c"), ("leave", "c")], "ab"),
        ([("join", "a"), ("join", "b"), ("join", "c"), ("leave", "b"), ("join", "d")], "acd"),
        ([("join", "a"), ("leave", "a"), ("join", "b")], "b"),
    ],
    ids=["appends", "last-fills-first", "last-leaves", "fill-then-append", "refill"],
)
def test_group_model_table(ops: list[tuple[str, str]], order: str) -> None:
    """Joins append; a leave moves the last member into the freed index."""
    group: ReuseportGroup[str] = ReuseportGroup()
    for op, key in ops:
        getattr(group, op)(key)
    assert "".join(group.members()) == order
    assert [group.index_of(key) for key in order] == list(range(len(order)))


def test_group_model_reports_an_empty_group_and_rejects_strangers() -> None:
    """The last leave says the kernel freed the group; unknown or doubled keys raise."""
    group: ReuseportGroup[int] = ReuseportGroup()
    group.join(1)
    group.join(2)
    assert group.leave(1) is False
    with pytest.raises(ValueError, match="already"):
        group.join(2)
    with pytest.raises(ValueError, match="not in the group"):
        group.index_of(1)
    assert group.leave(2) is True
    assert len(group) == 0


# --- the model against the kernel -------------------------------------------------------


def reuseport_socket(port: int) -> socket.socket:
    """A bound, not yet listening SO_REUSEPORT socket on loopback."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((LOOPBACK, port))
    return sock


def receiver(members: dict[str, socket.socket]) -> str:
    """Make one connection and name the listener it reached (it is accepted and closed)."""
    port = next(iter(members.values())).getsockname()[1]
    with socket.create_connection((LOOPBACK, port), timeout=CONNECT_TIMEOUT_S):
        ready, _, _ = select.select(list(members.values()), [], [], CONNECT_TIMEOUT_S)
        assert len(ready) == 1, f"expected one listener to get the connection, got {ready}"
        conn, _ = ready[0].accept()
        conn.close()
    return next(key for key, sock in members.items() if sock is ready[0])


def assert_model_matches(group: ReuseportGroup[str], members: dict[str, socket.socket]) -> None:
    """For every member, `ret #index_of(member)` sends a connection to that member."""
    anchor = next(iter(members.values()))
    for key in group.members():
        steer.attach(anchor, [(steer.BPF_RET_K, 0, 0, group.index_of(key))])
        assert receiver(members) == key


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Sockets a test opens, all closed at its end."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


@pytest.fixture
def port() -> Iterator[int]:
    """A free loopback port, held by a bound socket that never listens (so never in a group).

    The tests bind to it explicitly, as the master does: a socket bound to port 0 gives its
    port back on shutdown(SHUT_RD), and a later listen() picks a new ephemeral port.
    """
    holder = reuseport_socket(0)
    yield holder.getsockname()[1]
    holder.close()


def test_model_matches_kernel_on_listen_order_not_bind_order(
    sockets: list[socket.socket], port: int
) -> None:
    """Indices follow listen(), not bind(): c, a, b listened in that order get 0, 1, 2."""
    a, b, c = (reuseport_socket(port) for _ in range(3))
    sockets.extend([a, b, c])
    members = {"a": a, "b": b, "c": c}
    group: ReuseportGroup[str] = ReuseportGroup()
    for key in "cab":
        members[key].listen(16)
        group.join(key)
    assert_model_matches(group, members)
    assert group.members() == ("c", "a", "b")


def test_model_matches_kernel_through_random_joins_and_leaves(
    sockets: list[socket.socket], port: int
) -> None:
    """Over 30 seeded listen/close/shutdown steps the model names every socket's index."""
    rng = random.Random(13)
    first = reuseport_socket(port)
    first.listen(16)
    sockets.append(first)
    members = {"k0": first}
    group: ReuseportGroup[str] = ReuseportGroup()
    group.join("k0")
    for step in range(1, 31):
        if len(members) < 2 or (len(members) < 6 and rng.random() < 0.55):
            sock = reuseport_socket(port)
            sock.listen(16)
            sockets.append(sock)
            members[f"k{step}"] = sock
            group.join(f"k{step}")
        else:
            key = rng.choice(sorted(members))
            leaving = members.pop(key)
            if rng.random() < 0.3:
                leaving.shutdown(socket.SHUT_RD)  # leaves the group, keeps the port bound
            else:
                leaving.close()
            group.leave(key)
        assert_model_matches(group, members)


def test_shut_down_listener_rejoins_at_the_end(sockets: list[socket.socket], port: int) -> None:
    """shutdown(SHUT_RD) leaves the group like close; listen() again appends it."""
    a, b, c = (reuseport_socket(port) for _ in range(3))
    sockets.extend([a, b, c])
    group: ReuseportGroup[str] = ReuseportGroup()
    for key, sock in zip("abc", (a, b, c), strict=True):
        sock.listen(16)
        group.join(key)
    a.shutdown(socket.SHUT_RD)
    group.leave("a")
    assert_model_matches(group, {"b": b, "c": c})
    a.listen(16)
    group.join("a")
    assert group.members() == ("c", "b", "a")
    assert_model_matches(group, {"a": a, "b": b, "c": c})


def test_out_of_range_return_falls_back_to_the_hash(
    sockets: list[socket.socket], port: int
) -> None:
    """A program returning an index past the group's end is ignored: the hash spreads over all."""
    a, b, c = (reuseport_socket(port) for _ in range(3))
    sockets.extend([a, b, c])
    for sock in (a, b, c):
        sock.listen(64)
    steer.attach(a, [(steer.BPF_RET_K, 0, 0, 7)])
    reached = Counter(receiver({"a": a, "b": b, "c": c}) for _ in range(60))
    assert set(reached) == {"a", "b", "c"}  # all three: P(one misses 60) is about 1e-10


def test_group_forgets_its_program_when_the_last_socket_leaves(
    sockets: list[socket.socket], port: int
) -> None:
    """With every listener shut down clients are refused; listening again gives no program."""
    a, b = reuseport_socket(port), reuseport_socket(port)
    sockets.extend([a, b])
    a.listen(64)
    b.listen(64)
    steer.attach(a, [(steer.BPF_RET_K, 0, 0, 0)])
    a.shutdown(socket.SHUT_RD)
    b.shutdown(socket.SHUT_RD)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, port), timeout=CONNECT_TIMEOUT_S).close()
    b.listen(64)
    a.listen(64)
    assert steer.detach(a) is False  # the new group has no program to remove
    reached = Counter(receiver({"a": a, "b": b}) for _ in range(40))
    assert set(reached) == {"a", "b"}


def test_attach_and_detach_refuse_sockets_outside_a_group(
    sockets: list[socket.socket], port: int
) -> None:
    """Not listening, or no SO_REUSEPORT: a SteerError naming the socket, not a kernel surprise."""
    unbound = reuseport_socket(0)
    plain = socket.socket()
    plain.bind((LOOPBACK, 0))
    plain.listen(4)
    sockets.extend([unbound, plain])
    with pytest.raises(steer.SteerError, match="not listening") as caught:
        steer.attach(unbound, spread_program([0]))
    assert caught.value.errno == errno.EINVAL
    with pytest.raises(steer.SteerError, match="SO_REUSEPORT is not set"):
        steer.detach(plain)
    with pytest.raises(ValueError, match="1 to 4096"):
        steer.attach(plain, [])


def test_detach_reports_whether_a_program_was_there(
    sockets: list[socket.socket], port: int
) -> None:
    """detach returns True once after an attach, then False."""
    sock = reuseport_socket(0)
    sock.listen(4)
    sockets.append(sock)
    assert steer.detach(sock) is False
    steer.attach(sock, spread_program([0]))
    assert steer.detach(sock) is True
    assert steer.detach(sock) is False


def test_kernel_rejects_a_malformed_program_with_a_clear_error(
    sockets: list[socket.socket], port: int
) -> None:
    """A program that does not end in a return is refused by the kernel as EINVAL."""
    sock = reuseport_socket(0)
    sock.listen(4)
    sockets.append(sock)
    with pytest.raises(steer.SteerError, match="1-instruction reuseport program") as caught:
        steer.attach(sock, [(steer.BPF_ALU_ADD_K, 0, 0, 1)])
    assert caught.value.errno == errno.EINVAL


def test_failed_attach_keeps_the_previous_program(sockets: list[socket.socket], port: int) -> None:
    """A program the kernel refuses changes nothing: the old one still steers."""
    a, b = reuseport_socket(port), reuseport_socket(port)
    sockets.extend([a, b])
    a.listen(16)
    b.listen(16)
    steer.attach(a, [(steer.BPF_RET_K, 0, 0, 1)])
    with pytest.raises(steer.SteerError):
        steer.attach(a, [(steer.BPF_ALU_ADD_K, 0, 0, 1)])
    assert {receiver({"a": a, "b": b}) for _ in range(10)} == {"b"}


def test_shutdown_gives_back_a_port_zero_binding(sockets: list[socket.socket]) -> None:
    """A listener bound to port 0 relistens on a new port after shutdown: bind explicitly."""
    sock = reuseport_socket(0)
    sockets.append(sock)
    sock.listen(4)
    before = sock.getsockname()[1]
    sock.shutdown(socket.SHUT_RD)
    sock.listen(4)
    assert sock.getsockname()[1] != before
