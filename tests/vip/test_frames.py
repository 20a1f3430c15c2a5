"""Pure tests of the announcement frames and their schedule (no kernel needed)."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from viplab import parse_announcement

from talos_vip.arp import (
    ALL_NODES_MAC,
    BROADCAST_MAC,
    Schedule,
    announcement_frames,
    garp_frame,
    parse_mac,
    unsolicited_na_frame,
)

MAC = parse_mac("02:66:00:00:00:01")
V4 = ipaddress.IPv4Address("10.66.0.100")
V6 = ipaddress.IPv6Address("fd66::100")


@pytest.mark.parametrize(("reply", "op", "tha"), [(False, 1, BROADCAST_MAC), (True, 2, MAC)])
def test_garp_layout(reply: bool, op: int, tha: bytes) -> None:
    frame = garp_frame(MAC, V4, reply=reply)
    assert len(frame) == 42
    assert frame[:6] == BROADCAST_MAC and frame[6:12] == MAC
    htype, ptype, hlen, plen, got_op, sha, spa, got_tha, tpa = struct.unpack(
        "!HHBBH6s4s6s4s", frame[14:42]
    )
    assert (htype, ptype, hlen, plen, got_op) == (1, 0x0800, 6, 4, op)
    assert sha == MAC and got_tha == tha
    assert spa == tpa == V4.packed


def test_na_layout_and_checksum() -> None:
    frame = unsolicited_na_frame(MAC, V6)
    assert frame[:6] == ALL_NODES_MAC
    parsed = parse_announcement(frame)
    assert parsed is not None
    kind, src, ip, detail = parsed
    assert (kind, src, ip) == ("na", "02:66:00:00:00:01", str(V6))
    assert detail["hop_limit"] == 255
    assert detail["dst"] == "ff02::1"
    assert detail["flags"] == 0x20000000  # override only: not solicited, not a router
    assert detail["lladdr"] == "02:66:00:00:00:01"
    assert detail["checksum_ok"]


def test_checksum_check_catches_corruption() -> None:
    """Negative control for the checksum verifier used above."""
    frame = bytearray(unsolicited_na_frame(MAC, V6))
    frame[-1] ^= 0x01
    parsed = parse_announcement(bytes(frame))
    assert parsed is not None and not parsed[3]["checksum_ok"]


def test_announcement_forms() -> None:
    assert [len(f) for _, f in announcement_frames(MAC, V4)] == [42, 42]
    assert len(announcement_frames(MAC, V6)) == 1


def test_schedule_burst_then_refresh() -> None:
    s = Schedule(burst=(0.0, 0.25, 1.0), refresh=5.0)
    assert not s.due(0.0) and s.next_due() is None  # idle before start
    s.start(100.0)
    fired = [
        t for t in (100.0, 100.1, 100.25, 100.3, 101.0, 101.1, 105.9, 106.0, 111.0) if s.due(t)
    ]
    assert fired == [100.0, 100.25, 101.0, 106.0, 111.0]
    s.stop()
    assert not s.due(200.0)


def test_schedule_without_refresh() -> None:
    s = Schedule(burst=(0.0,), refresh=0.0)
    s.start(0.0)
    assert s.due(0.0)
    assert not s.due(1000.0) and s.next_due() is None
