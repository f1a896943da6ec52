#!/usr/bin/env python3
"""Where the journal's bytes go (issue 16): WAL frames per commit, by table, and what the
checkpoints write into journal.db.

  analyze DB WAL   parses a copy of a -wal (frame headers: page number, commit marker; only the
                   frames of the current WAL generation, salts and checksums checked) and maps each
                   frame's page to what it holds: a table's or index's leaf or interior page
                   (SQLite's dbstat virtual table on a copy of DB + WAL), page 1, a free-list trunk
                   page (followed from page 1), or a free page. Prints frames per commit by
                   table and what a checkpoint of these frames would write (distinct pages).
  live             runs a pi_bench-like load (gw-sim, --devices devices, --rate readings/s in all
                   (default: 1 reading/s each),
                   QoS 1, through Mosquitto to gatewayd with its default buffer settings and
                   the Kafka test broker), snapshots the -wal and journal.db --snapshots times
                   during it and analyzes each, then traces gatewayd's pwrite64 / fdatasync /
                   fsync / pread64 for --trace seconds with strace and sums them per file (what the
                   checkpoints copy into journal.db and how often each file is synced).
                   `--gatewayd PATH` runs another build.

A snapshot copies the -wal first, then journal.db: a checkpoint between the two copies can make
the page map of a few pages wrong (tables are mapped from the state at the end of the copy).
"""
import argparse
import collections
import json
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HEADER = 32
FRAME_HEADER = 24


def _checksum(data, s0, s1, big_endian):
    """SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from (s0, s1)."""
    n = len(data) // 4
    words = struct.unpack((">" if big_endian else "<") + f"{n}I", data)
    m = 0xFFFFFFFF
    for i in range(0, n, 2):
        s0 = (s0 + words[i] + s1) & m
        s1 = (s1 + words[i + 1] + s0) & m
    return s0, s1


def parse_wal(path):
    """(page_size, frames): frames of the current generation as (pgno, db_size_if_commit, data),
    up to the last valid commit frame."""
    raw = Path(path).read_bytes()
    if len(raw) < HEADER:
        return 4096, []
    magic, _version, page_size, _ckpt, salt1, salt2, c0, c1 = struct.unpack(">8I", raw[:HEADER])
    if magic not in (0x377F0682, 0x377F0683):
        raise ValueError(f"{path}: not a WAL file (magic {magic:#x})")
    big = magic & 1
    s0, s1 = _checksum(raw[:24], 0, 0, big)
    if (s0, s1) != (c0, c1):
        return page_size, []  # header not valid: no frames
    frames, pending = [], []
    at = HEADER
    size = FRAME_HEADER + page_size
    while at + size <= len(raw):
        pgno, commit, fs1, fs2, fc0, fc1 = struct.unpack(">6I", raw[at:at + FRAME_HEADER])
        if (fs1, fs2) != (salt1, salt2) or pgno == 0:
            break
        s0, s1 = _checksum(raw[at:at + 8], s0, s1, big)
        data = raw[at + FRAME_HEADER:at + size]
        s0, s1 = _checksum(data, s0, s1, big)
        if (s0, s1) != (fc0, fc1):
            break
        pending.append((pgno, commit, data))
        if commit:
            frames.extend(pending)
            pending = []
        at += size
    return page_size, frames


def page_map(db_copy):
    """{pgno: (name, pagetype)} of every b-tree page, from dbstat on db_copy (+ its -wal)."""
    con = sqlite3.connect(str(db_copy))
    try:
        return {pg: (name, kind) for name, pg, kind in
                con.execute("SELECT name, pageno, pagetype FROM dbstat")}
    finally:
        con.close()


def category(name, kind):
    if re.fullmatch(r"r_\d+", name):
        name = "r_<n> (segment rows)"
    elif re.fullmatch(r"r_\d+_alerts", name):
        name = "r_<n>_alerts (index)"
    elif name.startswith("sqlite_autoindex_"):
        name = name[len("sqlite_autoindex_"):].rsplit("_", 1)[0] + " (autoindex)"
    return f"{name} {kind}"


def analyze(db, wal):
    """Frames per commit by what the page holds; distinct pages (a checkpoint's writes)."""
    with tempfile.TemporaryDirectory(prefix="wal-frames-") as tmp:
        db_copy, wal_copy = Path(tmp) / "j.db", Path(tmp) / "j.db-wal"
        shutil.copyfile(wal, wal_copy)
        shutil.copyfile(db, db_copy)
        page_size, frames = parse_wal(wal_copy)
        raw_db = db_copy.read_bytes()
        pages = page_map(db_copy)  # its close may checkpoint the copies: read them first

    latest = {}
    for pgno, _commit, data in frames:
        latest[pgno] = data

    def page(pgno):
        if pgno in latest:
            return latest[pgno]
        return raw_db[(pgno - 1) * page_size:pgno * page_size]

    trunks = set()
    p1 = page(1)
    t = struct.unpack(">I", p1[32:36])[0] if len(p1) >= 36 else 0
    while t and t not in trunks and len(trunks) < 100000:
        trunks.add(t)
        d = page(t)
        t = struct.unpack(">I", d[:4])[0] if len(d) >= 4 else 0

    per_cat = collections.Counter()
    per_commit = []
    n = 0
    for pgno, commit, _data in frames:
        if pgno == 1:
            cat = "page 1 (header; schema)"
        elif pgno in trunks:
            cat = "free-list trunk"
        elif pgno in pages:
            cat = category(*pages[pgno])
        else:
            cat = "free page (freed since)"
        per_cat[cat] += 1
        n += 1
        if commit:
            per_commit.append(n)
            n = 0
    commits = len(per_commit)
    # What a checkpoint after the first n frames would write (distinct pages), for the policy.
    prefix, seen, at = {}, set(), 0
    for i, (pgno, _c, _d) in enumerate(frames, 1):
        seen.add(pgno)
        if i in (500, 1000, 2000, 4000, 8000, 16000, 32000):
            prefix[i] = len(seen)
    return {
        "distinct_pages_in_first_frames": prefix,
        "page_size": page_size,
        "frames": len(frames),
        "commits": commits,
        "frames_per_commit": len(frames) / commits if commits else 0.0,
        "distinct_pages": len(latest),
        "by_category_per_commit": {k: v / commits for k, v in per_cat.most_common()} if commits else {},
        "frames_per_commit_quartiles": (sorted(per_commit)[len(per_commit) // 4],
                                        sorted(per_commit)[len(per_commit) // 2],
                                        sorted(per_commit)[3 * len(per_commit) // 4]) if commits else None,
    }


def print_analysis(a, title):
    print(f"{title}: {a['commits']} commits, {a['frames']} frames of {a['page_size']} bytes, "
          f"{a['frames_per_commit']:.2f} frames per commit (quartiles {a['frames_per_commit_quartiles']}); "
          f"a checkpoint of them writes {a['distinct_pages']} distinct pages "
          f"({a['distinct_pages'] / max(a['frames'], 1):.2f} per frame)")
    for k, v in a["by_category_per_commit"].items():
        print(f"    {v:6.2f}  {k}")
    if a["distinct_pages_in_first_frames"]:
        print("    a checkpoint after the first n frames: " + ", ".join(
            f"{n}: {d} pages ({d / n:.2f})" for n, d in a["distinct_pages_in_first_frames"].items()))


STRACE_LINE = re.compile(r"^(?:\[pid\s+\d+\]\s+)?(?:\d+\s+)?(\w+)\((\d+)<([^>]*)>(.*)\)\s+=\s+(-?\d+)")


def summarize_strace(path, seconds):
    """{file: {call: [count, bytes]}} per second from `strace -f -y` output."""
    out = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0]))
    for line in Path(path).read_text(errors="replace").splitlines():
        m = STRACE_LINE.match(line)
        if not m:
            continue
        call, _fd, name, _rest, ret = m.groups()
        r = out[Path(name).name][call]
        r[0] += 1
        if call.startswith("p") and int(ret) > 0:
            r[1] += int(ret)
    return {f: {c: [v[0] / seconds, v[1] / seconds] for c, v in calls.items()} for f, calls in out.items()}


def live(a):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
    import gwtest  # noqa: E402
    from benchlib import sim  # noqa: E402
    from gwtest import Gatewayd, KafkaBroker, Mosquitto, Workdir  # noqa: E402

    if a.gatewayd:
        gwtest.GATEWAYD = Path(a.gatewayd).resolve()
    wd = Workdir("wal-frames")
    ok = False
    try:
        mq = Mosquitto(wd, persistence=False)
        kafka = KafkaBroker(wd)
        env = dict(kv.split("=", 1) for kv in a.env) if a.env else None
        gw = Gatewayd(wd, mq.uri, kafka=kafka, client_id="wal-frames-gw", commit_interval=None, env=env)
        db = wd.path / "state" / "journal.db"
        wal = Path(str(db) + "-wal")
        seconds = a.warmup + a.snapshots * a.every + a.trace + 5
        rate = a.rate or a.devices
        load = threading.Thread(target=sim, args=(mq.uri, "--devices", a.devices, "--metrics", "temp",
                                                  "--count", rate * seconds, "--rate", rate,
                                                  "--qos", 1, "--seed", 7, "--client-id", "wal-frames-sim"))
        load.start()
        time.sleep(a.warmup)
        results = []
        for i in range(a.snapshots):
            r = analyze(db, wal)
            results.append(r)
            print_analysis(r, f"snapshot {i + 1}")
            time.sleep(a.every)
        trace = wd.path / "strace.txt"
        st = subprocess.Popen(["strace", "-f", "-y", "-qq", "-s", "0", "-o", str(trace), "-e",
                               "trace=pwrite64,pwritev,pread64,fdatasync,fsync", "-p", str(gw.proc.p.pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(a.trace)
        st.terminate()
        st.wait(timeout=30)
        per_file = summarize_strace(trace, a.trace)
        load.join()
        print(f"per second, {a.trace} s under strace -f (calls, bytes):")
        for f, calls in sorted(per_file.items()):
            print(f"  {f}: " + ", ".join(f"{c} {v[0]:.1f} ({v[1] / 1024:.0f} KiB)" for c, v in sorted(calls.items())))
        tot = collections.Counter()
        for r in results:
            for k, v in r["by_category_per_commit"].items():
                tot[k] += v / len(results)
        summary = {"frames_per_commit": sum(r["frames_per_commit"] for r in results) / len(results),
                   "distinct_per_frame": sum(r["distinct_pages"] / max(r["frames"], 1) for r in results) / len(results),
                   "by_category_per_commit": dict(tot.most_common()), "per_file_per_s": per_file,
                   "snapshots": results}
        print(f"mean of {len(results)} snapshots: {summary['frames_per_commit']:.2f} frames per commit, "
              f"{summary['distinct_per_frame']:.2f} distinct pages per frame")
        for k, v in tot.most_common():
            print(f"    {v:6.2f}  {k}")
        if a.json:
            Path(a.json).write_text(json.dumps(summary, indent=2))
        gw.proc.stop()
        ok = True
    finally:
        wd.close(failed=not ok)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    an = sub.add_parser("analyze")
    an.add_argument("db")
    an.add_argument("wal")
    lv = sub.add_parser("live")
    lv.add_argument("--devices", type=int, default=10000)
    lv.add_argument("--rate", type=int, help="readings/s in all (default: --devices, 1/s each)")
    lv.add_argument("--warmup", type=int, default=15)
    lv.add_argument("--snapshots", type=int, default=4)
    lv.add_argument("--every", type=int, default=3)
    lv.add_argument("--trace", type=int, default=15)
    lv.add_argument("--gatewayd")
    lv.add_argument("--env", action="append", help="NAME=VALUE for gatewayd's environment")
    lv.add_argument("--json")
    a = ap.parse_args()
    if a.cmd == "analyze":
        print_analysis(analyze(a.db, a.wal), a.wal)
    else:
        live(a)


if __name__ == "__main__":
    main()
