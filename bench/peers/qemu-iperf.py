#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""ferry, QEMU's own migration and iperf3 side by side, in one run.

For the same guest RAM (the bytes of ferry's synthetic guest, written with
`ferry bench --dump-ram`), on loopback TCP:
  ferry    `ferry bench` with an idle guest, channels 0 (the main stream) and N
  QEMU     qemu-system-x86_64 (TCG) with the RAM in a file-backed memory backend,
           paused (-S), migrated to a second QEMU (-incoming defer): single
           channel, then multifd with N channels; max-bandwidth lifted; the
           destination's RAM file is compared with the source's afterwards
  iperf3   -P 1 and -P N, 1 MiB writes (its largest; ferry sends 2 MiB)
Each measured --reps times (median). Writes OUT/peers.jsonl and OUT/peers.md
with every figure and the ratios (ferry/QEMU, each against iperf3).

Usage: bench/peers/qemu-iperf.py --ferry BUILD/ferry [--ram 512M] [--channels 2]
                                 [--reps 3] [--out DIR]
Exit status: 0, 1 when a run failed or did not verify, 77 when QEMU or iperf3 is missing.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_size(s):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    s = s.strip().lower()
    if s[-1] in units:
        return int(s[:-1]) * units[s[-1]]
    return int(s)


class Qmp:
    """A minimal QMP client over a unix socket (one command at a time)."""

    def __init__(self, path, timeout=30):
        deadline = time.time() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        self.f = self.sock.makefile("rw")
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError(f"{name}: {r['error']}")
            # an event: skip it

    def close(self):
        self.sock.close()


def qemu_once(qemu, ram, src_file, work, channels, multifd):
    """One QEMU migration of a paused guest; returns its figures."""
    port = free_port()
    dst_file = os.path.join(work, "dst-ram.bin")
    if os.path.exists(dst_file):
        os.unlink(dst_file)
    procs = []
    common = ["-accel", "tcg", "-M", "pc,memory-backend=mem", "-m", f"{ram >> 20}M",
              "-nodefaults", "-display", "none", "-S"]
    try:
        for role in ("dst", "src"):
            mem = src_file if role == "src" else dst_file
            args = [qemu] + common + [
                "-object", f"memory-backend-file,id=mem,size={ram},mem-path={mem},share=on",
                "-qmp", f"unix:{work}/{role}.qmp,server=on,wait=off"]
            if role == "dst":
                args += ["-incoming", "defer"]
            procs.append(subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        dst, src = Qmp(f"{work}/dst.qmp"), Qmp(f"{work}/src.qmp")
        for q in (dst, src):
            if multifd:
                q.cmd("migrate-set-capabilities",
                      capabilities=[{"capability": "multifd", "state": True}])
                q.cmd("migrate-set-parameters", **{"multifd-channels": channels})
        # QEMU's default bandwidth limit (128 MiB/s) would make this a test of the limit.
        src.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
        dst.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
        src.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        deadline = time.time() + 600
        while True:
            st = src.cmd("query-migrate")
            if st.get("status") in ("completed", "failed", "cancelled"):
                break
            if time.time() > deadline:
                raise RuntimeError("QEMU migration did not end in 600 s")
            time.sleep(0.05)
        # The destination has loaded everything once its status says so.
        for _ in range(200):
            if dst.cmd("query-migrate").get("status") in ("completed", "failed"):
                break
            time.sleep(0.05)
        dst.close()
        src.close()
    finally:
        for p in procs:
            p.kill()
            p.wait()
    res = {"status": st.get("status")}
    if res["status"] == "completed":
        r = st.get("ram", {})
        total, setup = st.get("total-time", 0), st.get("setup-time", 0)
        res.update(total_ms=total, setup_ms=setup, downtime_ms=st.get("downtime", 0),
                   transferred=r.get("transferred", 0), normal_pages=r.get("normal", 0),
                   zero_pages=r.get("duplicate", 0))
        res["throughput_bps"] = res["transferred"] * 1000.0 / max(total - setup, 1)
        res["verified"] = subprocess.run(["cmp", "-s", src_file, dst_file]).returncode == 0
    else:
        res["verified"] = False
    return res


def iperf_once(streams, secs=3):
    port = free_port()
    srv = subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Wait for the listener without connecting to it (iperf3 -1 serves one client).
        for _ in range(100):
            ss = subprocess.run(["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True)
            if ss.stdout.strip():
                break
            time.sleep(0.05)
        out = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-P", str(streams),
                              "-t", str(secs), "-l", "1M", "-J"],
                             capture_output=True, text=True, timeout=secs + 30)
        j = json.loads(out.stdout)
        return j["end"]["sum_received"]["bits_per_second"] / 8
    finally:
        srv.kill()
        srv.wait()


def ferry_runs(ferry, ram, channels, reps, out):
    d = os.path.join(out, "ferry")
    cmd = [ferry, "bench", "--ram", f"{ram >> 20}M", "--channels", f"0,{channels}",
           "--reps", str(reps), "--ceiling-time", "1000", "--out", d, "--quiet"]
    rc = subprocess.run(cmd).returncode
    runs = {}
    with open(os.path.join(d, "results.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if j.get("type") == "run":
                runs.setdefault(j["channels"], []).append(j)
    return rc, " ".join(cmd), runs


def med(xs):
    return statistics.median(xs) if xs else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ferry", required=True)
    ap.add_argument("--ram", default="512M")
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default="peers-out")
    a = ap.parse_args()
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu or not shutil.which("iperf3"):
        print("peers: qemu-system-x86_64 and iperf3 are needed "
              "(apt-get install qemu-system-x86 iperf3)", file=sys.stderr)
        return 77
    ram = parse_size(a.ram)
    n = a.channels
    os.makedirs(a.out, exist_ok=True)
    if os.path.exists(os.path.join(a.out, "peers.jsonl")):
        os.unlink(os.path.join(a.out, "peers.jsonl"))
    work = tempfile.mkdtemp(prefix="ferry-peers-", dir="/dev/shm")
    rows, ok = [], True
    try:
        src_file = os.path.join(work, "src-ram.bin")
        subprocess.run([a.ferry, "bench", "--dump-ram", src_file, "--ram", f"{ram >> 20}M"],
                       check=True)
        load0 = os.getloadavg()[0]
        print(f"peers: ferry bench, {a.reps} reps", file=sys.stderr)
        rc, ferry_cmd, fr = ferry_runs(a.ferry, ram, n, a.reps, a.out)
        ok &= rc == 0
        for ch in (0, n):
            xs = [r for r in fr.get(ch, []) if r["verified"]]
            rows.append({"tool": "ferry", "mode": "main stream" if ch == 0 else "data path",
                         "channels": max(ch, 1), "runs": len(fr.get(ch, [])), "verified": len(xs),
                         "throughput_bps": med([r["throughput_bps"] for r in xs]),
                         "total_ms": med([r["total_ms"] for r in xs])})
        for mode, multifd in (("single channel", False), ("multifd", True)):
            chans = n if multifd else 1
            res = []
            for rep in range(a.reps):
                print(f"peers: QEMU {mode} x{chans}, rep {rep + 1}/{a.reps}", file=sys.stderr)
                r = qemu_once(qemu, ram, src_file, work, chans, multifd)
                res.append(r)
                with open(os.path.join(a.out, "peers.jsonl"), "a") as f:
                    f.write(json.dumps({"tool": "qemu", "mode": mode, "channels": chans,
                                        "rep": rep, **r}) + "\n")
            xs = [r for r in res if r["verified"]]
            ok &= len(xs) == len(res)
            rows.append({"tool": "qemu", "mode": mode, "channels": chans, "runs": len(res),
                         "verified": len(xs),
                         "throughput_bps": med([r["throughput_bps"] for r in xs]),
                         "total_ms": med([r["total_ms"] for r in xs])})
        iperf = {}
        for streams in sorted({1, n}):
            print(f"peers: iperf3 -P {streams}", file=sys.stderr)
            iperf[streams] = med([iperf_once(streams) for _ in range(a.reps)])
            with open(os.path.join(a.out, "peers.jsonl"), "a") as f:
                f.write(json.dumps({"tool": "iperf3", "streams": streams,
                                    "bps": iperf[streams]}) + "\n")
        load1 = os.getloadavg()[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def gbit(b):
        return b * 8 / 1e9

    with open(os.path.join(a.out, "peers.md"), "w") as f:
        f.write(f"# ferry, QEMU and iperf3 side by side\n\n"
                f"- guest RAM {ram >> 20} MiB (the same bytes for ferry and QEMU), loopback "
                f"TCP, {a.reps} reps each, medians\n"
                f"- ferry: `{ferry_cmd}`\n"
                f"- QEMU: {subprocess.run([qemu, '--version'], capture_output=True, text=True).stdout.splitlines()[0]}, "
                f"TCG, paused guest, file-backed RAM, max-bandwidth lifted\n"
                f"- load average {load0:.2f} at the start, {load1:.2f} at the end\n\n"
                "| tool | mode | streams | verified | Gbit/s | total ms | / iperf3 same streams |"
                " ferry / this |\n|---|---|---|---|---|---|---|---|\n")
        ferry_by = {r["channels"] if r["mode"] != "main stream" else 0: r
                    for r in rows if r["tool"] == "ferry"}
        for r in rows:
            ip = iperf.get(r["channels"], 0)
            ratio = r["throughput_bps"] / ip if ip else 0
            if r["tool"] == "qemu":
                fe = ferry_by[0] if r["mode"] == "single channel" else ferry_by[n]
                vs = f"{fe['throughput_bps'] / r['throughput_bps']:.2f}" if r["throughput_bps"] else "-"
            else:
                vs = ""
            f.write(f"| {r['tool']} | {r['mode']} | {r['channels']} | {r['verified']}/{r['runs']} "
                    f"| {gbit(r['throughput_bps']):.2f} | {r['total_ms']:.0f} | {ratio:.2f} | {vs} |\n")
        for s, b in sorted(iperf.items()):
            f.write(f"| iperf3 | -P {s} -l 1M | {s} | | {gbit(b):.2f} | | 1.00 | |\n")
    print(open(os.path.join(a.out, "peers.md")).read())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
