"""Every listener of one app, as its slots come and go (edge: sockets, no event loop).

`shared` sharing: one socket per `listen:` address, inherited by every worker.
`reuseport` sharing: one `SO_REUSEPORT` socket per slot per TCP address (Unix addresses
are always shared: the kernel does not balance them). The kernel picks one socket of the
port's group for each new connection; `steer` attaches a classic BPF program
(`runtime.proc.steer`) so that only the slots the app names receive new connections: a
slot whose worker is stopped, errored or waiting out a backoff swallows none.

The app owns the decisions (`runtime.policy.steering`); this class does what they say:

- `open_pending(slot)` binds a replacement's own sockets during a reload; `promote` makes
  them the slot's, and hands back the old ones to drain (`queued` reads their accept
  queues) and then `retire`, so no connection queued on them is reset;
- `release_slot` closes a removed slot's sockets once drained (scale down);
- `suspend` closes every socket when no worker will serve again (a stopped or errored
  app): clients are refused instead of left hanging; `ensure_slot` binds them again.

Closing a socket moves the group's last socket into its index (the kernel's compaction,
mirrored by `ReuseportGroup`), so the program is attached again after every close.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from runtime.config.spec import AppSpec
from runtime.errors import ConfigError
from runtime.proc.backlog import tcp_backlog
from runtime.proc.sockets import (
    DEFAULT_BACKLOG,
    ListenAddress,
    Listener,
    ListenError,
    Sharing,
    bind_listener,
    parse_listen,
)
from runtime.proc.steer import ReuseportGroup, attach


@dataclass(eq=False, slots=True)
class AppListeners:
    """The sockets one app's workers inherit: shared ones, per-slot ones, a reload's own."""

    addresses: tuple[ListenAddress, ...]  # as bound (real ports), in `listen:` order
    sharing: Sharing
    backlog: int = DEFAULT_BACKLOG
    shared: list[Listener] = field(default_factory=list)
    per_slot: dict[int, list[Listener]] = field(default_factory=dict)
    pending: dict[int, list[Listener]] = field(default_factory=dict)  # replacements' own
    groups: list[ReuseportGroup[Listener]] = field(default_factory=list)  # per slot address
    receiving: frozenset[int] | None = None  # the slots steered to, None: not steered yet
    suspended: bool = False  # every socket closed until a worker starts again
    # called before a per-slot socket is closed: other processes may be serving it
    before_close: Callable[[Listener], None] | None = None

    # ----- what a worker inherits ---------------------------------------------------

    def _is_per_slot(self, addr: ListenAddress) -> bool:
        return self.sharing == "reuseport" and addr.kind != "unix"

    @property
    def steered(self) -> bool:
        """Whether connections are steered between slots (reuseport with a TCP address)."""
        return any(self._is_per_slot(a) for a in self.addresses)

    def listeners_for_slot(self, slot: int, *, pending: bool = False) -> list[Listener]:
        """The listeners a worker of `slot` inherits (its replacement's with `pending`)."""
        own_sockets = (self.pending if pending else self.per_slot).get(slot)
        if self.steered and own_sockets is None:
            raise KeyError(f"slot {slot} has no sockets bound (call ensure_slot first)")
        shared: Iterator[Listener] = iter(self.shared)
        own: Iterator[Listener] = iter(own_sockets or [])
        return [next(own if self._is_per_slot(a) else shared) for a in self.addresses]

    def fds_for_slot(self, slot: int, *, pending: bool = False) -> list[int]:
        """The fds to dup onto 3, 4, ... in a worker of `slot`."""
        return [lst.fileno() for lst in self.listeners_for_slot(slot, pending=pending)]

    def names_for_slot(self, slot: int, *, pending: bool = False) -> list[str]:
        """The `LISTEN_FDNAMES` entries matching `fds_for_slot`."""
        return [lst.name for lst in self.listeners_for_slot(slot, pending=pending)]

    # ----- binding ------------------------------------------------------------------

    def _bind(self, addr: ListenAddress, *, reuseport: bool, sole: bool = False) -> Listener:
        return bind_listener(addr, reuseport=reuseport, backlog=self.backlog, sole=sole)

    def _bind_slot_sockets(self) -> list[Listener]:
        """One socket per per-slot address, each joined to its address's group; the first
        of a group refuses a port someone else listens on (`bind_listener`'s `sole`)."""
        bound: list[Listener] = []
        per_slot = [a for a in self.addresses if self._is_per_slot(a)]
        try:
            for addr, group in zip(per_slot, self.groups, strict=True):
                bound.append(self._bind(addr, reuseport=True, sole=len(group) == 0))
        except ListenError:
            for listener in bound:
                listener.close()
            raise
        for group, listener in zip(self.groups, bound, strict=True):
            group.join(listener)
        first = iter(bound)  # a port 0 is fixed by the first socket bound: the rest take it
        self.addresses = tuple(
            next(first).address if self._is_per_slot(a) else a for a in self.addresses
        )
        return bound

    def ensure_slot(self, slot: int) -> None:
        """Bind what `slot`'s next worker needs and is missing: the slot's own sockets (a new
        slot), or everything after `suspend`. ListenError if an address is taken meanwhile."""
        if self.suspended:
            shared = [
                self._bind(a, reuseport=False) for a in self.addresses if not self._is_per_slot(a)
            ]
            self.shared, self.suspended = shared, False
        if self.steered and slot not in self.per_slot:
            self.per_slot[slot] = self._bind_slot_sockets()

    def open_pending(self, slot: int) -> bool:
        """Bind a replacement's own sockets for `slot` (True), or nothing to do (False: the
        replacement shares the slot's sockets, in `shared` mode)."""
        if not self.steered:
            return False
        self.ensure_slot(slot)
        self.pending[slot] = self._bind_slot_sockets()
        return True

    # ----- moving connections ---------------------------------------------------------

    def steer(self, slots: Iterable[int]) -> None:
        """Send new connections only to these slots' current sockets (SteerError on failure)."""
        self.receiving = frozenset(slots)
        self._apply()

    def _apply(self) -> None:
        if not self.steered or self.receiving is None:
            return
        for position, group in enumerate(self.groups):
            live = [self.per_slot[s][position] for s in self.receiving if s in self.per_slot]
            if live and len(group):
                attach(group.members()[0].sock, group.program_for(live))

    def promote(self, slot: int) -> list[Listener]:
        """The replacement's sockets become the slot's; the old ones are returned, to drain
        (new connections go to the new ones from now on) and then `retire`."""
        old = self.per_slot.get(slot, [])
        self.per_slot[slot] = self.pending.pop(slot)
        self._apply()
        return old

    def renew_slot(self, slot: int) -> None:
        """Close `slot`'s own sockets and bind it fresh ones, for a slot whose worker died.

        Only with `migrate_req_enabled()` and while another slot's sockets are listening
        and receiving: the kernel then moves what was queued on the old sockets to those,
        where it is served now instead of waiting for the slot's next worker. The old ones
        are closed before the new ones listen, so nothing moves onto the new ones, which
        get connections once the slot is steered to again.
        """
        for listener in self.per_slot.pop(slot, []):
            self._close(listener)
        try:  # ListenError leaves the slot unbound: its next worker's ensure_slot retries
            self.per_slot[slot] = self._bind_slot_sockets()
        finally:
            self._apply()  # the group's indices moved with the close

    def queued(self, listeners: Iterable[Listener]) -> int:
        """Connections waiting in the accept queues of these TCP listeners."""
        total = 0
        for listener in listeners:
            if listener.address.kind != "unix":
                try:
                    total += tcp_backlog(listener.sock)[0]
                except (OSError, ValueError):  # closed meanwhile, or no longer listening
                    continue
        return total

    def retire(self, listeners: Sequence[Listener]) -> None:
        """Close drained sockets that no slot owns any more, and steer again."""
        for listener in listeners:
            self._close(listener)
        self._apply()

    def _close(self, listener: Listener) -> None:
        """Close a listener; one of a reuseport group is shut down first, because a leftover
        process of its worker may still hold the fd: `close` alone would then leave the
        socket in the kernel's group, out of step with ours (the steering's indices).
        `before_close` comes first: a node process serving a shut-down listener is woken
        on every turn of its loop by an accept that fails (libuv never reports it), so the
        ones covering it are told to let go before it is shut down."""
        for group in self.groups:
            if listener in group.members():
                if self.before_close is not None:
                    self.before_close(listener)
                group.leave(listener)
                with contextlib.suppress(OSError):
                    listener.sock.shutdown(socket.SHUT_RD)
        listener.close()

    def discard_pending(self, slot: int) -> None:
        """A failed replacement's sockets (nothing was steered to them)."""
        self.retire(self.pending.pop(slot, []))

    def slot_sockets(self, slot: int) -> list[Listener]:
        """The slot's own sockets (reuseport), to drain before its worker stops."""
        return list(self.per_slot.get(slot, []))

    def release_slot(self, slot: int) -> None:
        """Close a removed slot's sockets; drain them first, or what is queued is reset
        (unless net.ipv4.tcp_migrate_req=1)."""
        self.retire([*self.per_slot.pop(slot, []), *self.pending.pop(slot, [])])

    def suspend(self) -> None:
        """Close every socket: no worker will serve, so clients are refused, not kept
        waiting. `ensure_slot` binds them again (the addresses keep their real ports)."""
        if self.suspended:
            return
        for slot in list(self.per_slot):
            self.release_slot(slot)
        for listener in self.shared:
            listener.close()
        self.shared.clear()
        self.suspended = True

    def close(self) -> None:
        """Close every listener (master shutdown, or the app deleted)."""
        self.suspend()


def bind_app_listeners(
    addresses: Sequence[ListenAddress],
    sharing: Sharing,
    slots: Iterable[int],
    *,
    backlog: int = DEFAULT_BACKLOG,
) -> AppListeners:
    """Bind everything one app listens on, or close what was bound and raise ListenError.

    A port 0 is fixed by the first socket bound for it; the others bind that port.
    """
    app = AppListeners(addresses=tuple(addresses), sharing=sharing, backlog=backlog)
    try:
        bound: list[ListenAddress] = []
        for addr in addresses:
            if app._is_per_slot(addr):
                app.groups.append(ReuseportGroup())
                bound.append(addr)
            else:
                listener = app._bind(addr, reuseport=False)
                app.shared.append(listener)
                bound.append(listener.address)
        app.addresses = tuple(bound)
        for slot in slots:
            app.per_slot[slot] = app._bind_slot_sockets()
    except ListenError:
        app.close()
        raise
    return app


def _where(addr: ListenAddress) -> tuple[str, str, int]:
    """What two apps may not both bind: a TCP host and port, or a Unix path."""
    if addr.kind == "unix":
        return ("unix", addr.path, 0)
    return (addr.kind, addr.host, addr.port)


def bind_app(
    file: str, spec: AppSpec, taken: dict[tuple[str, str, int], str] | None = None
) -> AppListeners | None:
    """Every listener of one app, or a ConfigError naming its `listen` key (exit 78).

    `taken` maps what other apps bound to their names: two apps on one address would
    split its connections between them (SO_REUSEPORT lets the kernel allow it).
    """
    if not spec.listen:
        return None
    taken = {} if taken is None else taken
    key = f"{spec.name}.listen"
    try:
        addresses = [parse_listen(text, environ=os.environ) for text in spec.listen]
        for addr in addresses:
            owner = taken.get(_where(addr))
            if owner is not None and (addr.port or addr.kind == "unix"):
                raise ConfigError(file, f"{addr}: already {owner}'s listen", key=key)
        listeners = bind_app_listeners(addresses, spec.socket_sharing, range(spec.instances))
    except (ValueError, ListenError) as exc:
        raise ConfigError(file, str(exc), key=key) from None
    taken.update(dict.fromkeys(map(_where, listeners.addresses), spec.name))
    return listeners


def bind_apps(
    file: str, specs: tuple[AppSpec, ...], running: Mapping[str, AppListeners | None] | None = None
) -> dict[str, AppListeners | None]:
    """Bind every listener before any worker starts; all or nothing. `running`: the
    listeners of apps already serving (a SIGHUP adds apps beside them)."""
    taken = {
        _where(addr): name
        for name, listeners in (running or {}).items()
        if listeners is not None
        for addr in listeners.addresses
    }
    bound: dict[str, AppListeners | None] = {}
    try:
        for spec in specs:
            bound[spec.name] = bind_app(file, spec, taken)
    except ConfigError:
        for listeners in bound.values():
            if listeners is not None:
                listeners.close()
        raise
    return bound
