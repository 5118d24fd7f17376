"""The test bed starts beside other services: a second Ceph and SeaweedFS on this machine (here: a
second bed while the suite's own runs) and something already listening on Ceph's and the old fixed ports."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.bed.stores import PORTS, http_status

DEFAULT_PORTS = [6789, 18000, 18443, 18080, 8000, 8443, 8333, 9333, 8181, 9101]


def test_a_second_bed_starts_beside_the_running_one(bed, tmp_path):
    held = []
    for port in DEFAULT_PORTS:  # whatever of them is free, someone else now holds
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
            held.append(s)
        except OSError:
            s.close()
    try:
        # A separate process chooses its own ports, as a second run on the machine would.
        code = f"""
import json, sys
from pathlib import Path
sys.path.insert(0, {str(ROOT)!r})
from tests.bed import stores
b = stores.Bed(Path({str(tmp_path / 'second')!r})).start()
try:
    print(json.dumps({{"ports": stores.PORTS, "http": b.rgw.http_endpoint}}))
finally:
    b.stop()
"""
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        import json
        second = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        for s in held:
            s.close()
    ports = set(second["ports"].values())
    assert not ports & set(DEFAULT_PORTS), second["ports"]
    assert not ports & set(PORTS.values()), (second["ports"], PORTS)
    # The suite's own store kept answering throughout.
    assert http_status(bed.rgw.http_endpoint + "/") in (200, 403)


def test_ports_lie_below_the_kernels_range_for_outgoing_connections():
    """A port the bed picks, and SeaweedFS's gRPC port beside it, stay out of the range the kernel
    gives outgoing connections, so no client can take one between the pick and the bind."""
    from tests.bed import stores
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    assert low > 21000 + stores.SW_GRPC_OFFSET, f"this machine's range starts at {low}: the test needs room"
    names = [f"p{i}" for i in range(40)]
    paired = set(names[:20])
    ports = stores.free_ports(names, paired, stores.SW_GRPC_OFFSET)
    assert sorted(ports) == sorted(names)
    needed = list(ports.values()) + [ports[n] + stores.SW_GRPC_OFFSET for n in paired]
    assert len(set(needed)) == 60, "two names share a port"
    assert all(20000 <= p < low for p in needed), sorted(needed)
    assert set(PORTS) >= {"sw_master", "rgw_http"} and all(p < low for p in PORTS.values())


def test_runs_started_together_pick_disjoint_ports(monkeypatch):
    """tests/run.sh starts two lines' runs at once, each with its own port slice: no port (nor a
    SeaweedFS gRPC port beside one) of one run can be another's, and a malformed slice is refused
    with the setting's name."""
    from tests.bed import stores
    names = [f"p{i}" for i in range(12)]
    paired = set(names[:4])
    picked = []
    for k in range(2):
        monkeypatch.setenv("SEALCOMMIT_BED_PORT_SLICE", f"{k}/2")
        ports = stores.free_ports(names, paired, stores.SW_GRPC_OFFSET)
        needed = set(ports.values()) | {ports[n] + stores.SW_GRPC_OFFSET for n in paired}
        assert len(needed) == 16 and all(p % 2 == k for p in needed), sorted(needed)
        picked.append(needed)
    assert not picked[0] & picked[1]
    for bad in ["2/2", "1/3", "x"]:
        monkeypatch.setenv("SEALCOMMIT_BED_PORT_SLICE", bad)
        with pytest.raises(RuntimeError, match="SEALCOMMIT_BED_PORT_SLICE"):
            stores.free_ports(names, paired, stores.SW_GRPC_OFFSET)
