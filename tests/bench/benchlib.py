"""What the benchmarks share: running gw-sim, sampling a process from /proc, counting its
syscalls with perf, the slope of a delivered count, raw control requests.

Only measurement helpers live here; the servers are gwtest's fixtures (tests/integration).
"""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import gwtest  # noqa: E402

USER_HZ = os.sysconf("SC_CLK_TCK")


def sim(uri, *args, timeout=1800):
    """Runs gw-sim to completion (records to /dev/null); its `sent=… rate=…` summary as a dict.

    In a process group of its own. (What continued a stopped gatewayd during pi_bench's first
    drain was the kernel's SIGHUP + SIGCONT to the bench's process group when it became orphaned
    with gatewayd stopped in it: the shell that started the bench in the background exited.
    gatewayd now has a group of its own there: gwtest.Gatewayd(own_group=True).)"""
    p = subprocess.run([str(gwtest.GW_SIM), "--uri", uri, "--out", "/dev/null", *map(str, args)],
                       capture_output=True, timeout=timeout, process_group=0)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.decode())
    line = [l for l in p.stdout.decode().splitlines() if l.startswith("sent=")][-1]
    return dict(kv.split("=", 1) for kv in line.split())


def unit_env(extra=None):
    """The environment the shipped systemd unit gives gatewayd (its `Environment=` lines, e.g.
    GNUTLS_NO_IMPLICIT_INIT=1), plus extra: the benches run gatewayd as it runs on a device."""
    unit = Path(__file__).resolve().parents[2] / "systemd" / "iot-gateway.service"
    env = {}
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            k, _, v = line[len("Environment="):].partition("=")
            env[k] = v
    return {**env, **(extra or {})}


def proc_state(pid):
    """The state letter of /proc/PID/stat ('T': stopped by a signal, 'S', 'R', ...)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def cpu_seconds(pid):
    """utime + stime of the whole process (every thread), seconds."""
    st = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / USER_HZ


def memory_kib(pid):
    """(VmHWM, VmRSS) in KiB."""
    hwm = rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
        elif line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return hwm, rss


def proc_figures(pid):
    """(CPU seconds, VmHWM KiB, VmRSS KiB)."""
    hwm, rss = memory_kib(pid)
    return cpu_seconds(pid), hwm, rss


def write_bytes(pid):
    """Bytes this process caused to be sent to the storage layer (/proc/PID/io write_bytes)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/PID/io")


def context_switches(pid):
    """(voluntary, involuntary) context switches summed over every thread of the process."""
    vol = invol = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    vol += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    invol += int(line.split()[1])
        except OSError:
            pass  # a thread that ended meanwhile
    return vol, invol


class Sample:
    """Counters of one process at one instant; `b - a` gives the deltas."""

    def __init__(self, pid):
        self.t = time.monotonic()
        self.cpu = cpu_seconds(pid)
        self.written = write_bytes(pid)
        self.vol, self.invol = context_switches(pid)

    def __sub__(self, o):
        return {"seconds": self.t - o.t, "cpu_s": self.cpu - o.cpu, "written": self.written - o.written,
                "voluntary_switches": self.vol - o.vol, "involuntary_switches": self.invol - o.invol}


class AllocCounter:
    """Heap allocations of a process per thread, from tests/tools/alloc_count's shim
    (liballoc_count.so, preloaded with ALLOC_COUNT_FILE=path; see alloc_count.cpp for the file's
    layout). read() gives {"all": n, "main": n}: every thread, and the main thread (tid = pid:
    gatewayd's event loop, where readings are decoded and journaled)."""

    LIB = gwtest.BUILD / "tests" / "tools" / "alloc_count" / "liballoc_count.so"
    MAGIC = 0x31544E434F4C4C41

    @classmethod
    def env(cls, path):
        if not cls.LIB.exists():
            raise SystemExit(f"{cls.LIB} is missing: build the tree first (scripts/build)")
        return {"LD_PRELOAD": str(cls.LIB), "ALLOC_COUNT_FILE": str(path)}

    def __init__(self, path, pid):
        self.path, self.pid = Path(path), pid

    def read(self):
        data = self.path.read_bytes()
        magic, used, capacity = struct.unpack_from("=QII", data, 0)
        if magic != self.MAGIC:
            raise RuntimeError(f"{self.path}: not an alloc_count file (is the shim preloaded?)")
        out = {"all": 0, "main": 0}
        for i in range(min(used, capacity)):
            tid, _, n, _ = struct.unpack_from("=iIQQ", data, 16 + 24 * i)
            out["all"] += n
            if tid == self.pid:
                out["main"] += n
        return out


class SyscallCounter:
    """Counts a process's system calls (every thread) with `perf stat` on the raw_syscalls
    tracepoint: a counter in the kernel, far cheaper than strace's stop per call. Also fsync and
    fdatasync separately. Needs perf and permission to use tracepoints (root, or
    kernel.perf_event_paranoid <= -1)."""

    EVENTS = ["raw_syscalls:sys_enter", "syscalls:sys_enter_fsync", "syscalls:sys_enter_fdatasync",
              "syscalls:sys_enter_pwrite64", "syscalls:sys_enter_epoll_wait",
              "syscalls:sys_enter_recvfrom", "syscalls:sys_enter_read", "syscalls:sys_enter_write",
              "syscalls:sys_enter_sendto", "syscalls:sys_enter_sendmsg", "syscalls:sys_enter_futex"]

    def __init__(self, pid):
        fd, self.out = tempfile.mkstemp(prefix="perf-stat-", suffix=".csv")
        os.close(fd)
        self.p = subprocess.Popen(["perf", "stat", "-x", ",", "-o", self.out, "-e", ",".join(self.EVENTS),
                                   "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  process_group=0)  # see sim()
        time.sleep(0.3)  # perf opens its counters (not a synchronisation of the test kind)
        if self.p.poll() is not None:
            raise RuntimeError("perf stat failed: " + self.p.stderr.read().decode())
        self.t0 = time.monotonic()

    def stop(self):
        """{event short name: count, "seconds": counted time}."""
        self.p.send_signal(signal.SIGINT)
        self.p.wait(timeout=30)
        t = time.monotonic() - self.t0
        counts = {"seconds": t}
        for line in Path(self.out).read_text().splitlines():
            parts = line.split(",")
            if len(parts) >= 3 and parts[2] in self.EVENTS:
                name = parts[2].split(":")[1].replace("sys_enter_", "").replace("sys_enter", "all")
                counts[name] = int(parts[0]) if parts[0].isdigit() else 0
        os.unlink(self.out)
        return counts


def slope(points, lo_frac=0.1, hi_frac=0.9):
    """Rate between lo_frac and hi_frac of the final count of (monotonic time, count) points."""
    total = points[-1][1]
    lo = [p for p in points if p[1] >= lo_frac * total][0]
    hi = [p for p in points if p[1] >= hi_frac * total][0]
    return (hi[1] - lo[1]) / (hi[0] - lo[0]) if hi[0] > lo[0] else float("nan")


def report(res, json_path=None):
    """Prints a bench's results as JSON, and writes them to json_path when given."""
    print(json.dumps(res, indent=2))
    if json_path:
        Path(json_path).write_text(json.dumps(res, indent=2))


def request(sock_path, line, timeout=30.0):
    """One raw control request (any gatewayd version answers); (seconds, answer bytes)."""
    t0 = time.monotonic()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(sock_path))
    s.sendall(line.encode() + b"\n")
    chunks = []
    while True:
        b = s.recv(1 << 16)
        if not b:
            break
        chunks.append(b)
    s.close()
    return time.monotonic() - t0, b"".join(chunks)


class LoopDisk:
    """A directory on an ext4 file system of its own, on a loop device (as a Pi's SD-card
    partition): `written()` is what the file system sent to the device (/sys/block/loopN/stat,
    sectors written): file data, metadata and ext4's journal, what wears an SD card. The
    /proc/PID/io write_bytes of a process counts page-cache pages it dirtied instead, and on
    kernels that cache ext4 files in large folios (6.16 on) a few KiB written into a cached
    folio count as the whole folio, while only the dirty blocks go to the device (issue 16).
    Needs root (mkfs.ext4, losetup, mount). `close()` unmounts and frees the device."""

    def __init__(self, mountpoint, size_mib=2048):
        self.mountpoint = Path(mountpoint)
        self.image = self.mountpoint.parent / (self.mountpoint.name + ".ext4")
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        with open(self.image, "wb") as f:
            f.truncate(size_mib << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(self.image)], check=True)
        self.device = subprocess.run(["losetup", "--find", "--show", str(self.image)], check=True,
                                     capture_output=True, text=True).stdout.strip()
        try:
            subprocess.run(["mount", self.device, str(self.mountpoint)], check=True)
        except subprocess.CalledProcessError:
            subprocess.run(["losetup", "-d", self.device], check=False)
            raise

    def written(self):
        stat = Path(f"/sys/block/{Path(self.device).name}/stat").read_text().split()
        return int(stat[6]) * 512  # sectors written (512 bytes whatever the device's block size)

    def close(self):
        subprocess.run(["umount", str(self.mountpoint)], check=False)
        subprocess.run(["losetup", "-d", self.device], check=False)
        self.image.unlink(missing_ok=True)
