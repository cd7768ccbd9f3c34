"""Kernels by total device time, from `ncu --print-summary per-kernel --csv`
with the gpu__time_duration.sum metric (scripts/gpu-kernels.sh).
usage: python3 scripts/ncu_summary.py NCU.csv [TOP]"""
import csv
import sys

UNIT_MS = {"ns": 1e-6, "nsecond": 1e-6, "us": 1e-3, "usecond": 1e-3, "ms": 1.0, "msecond": 1.0}


def number(text):
    return float(text.replace(",", ""))


def kernels(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head = next((i for i, r in enumerate(rows) if "Kernel Name" in r), None)
    if head is None:
        raise SystemExit("ncu_summary.py: %s has no per-kernel summary (did ncu fail?)" % path)
    names = rows[head]
    for r in rows[head + 1:]:
        d = dict(zip(names, r))
        if d.get("Metric Name") != "gpu__time_duration.sum":
            continue
        ms = UNIT_MS[d["Metric Unit"]]
        calls = int(d["Invocations"])
        yield (calls * number(d["Average"]) * ms, calls, number(d["Average"]) * ms,
               number(d["Minimum"]) * ms, number(d["Maximum"]) * ms, d["Kernel Name"],
               d["Block Size"], d["Grid Size"])


def main():
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    top = int(sys.argv[2]) if len(sys.argv) == 3 else 40
    ks = sorted(kernels(sys.argv[1]), reverse=True)
    total = sum(k[0] for k in ks)
    print("%.3f ms of kernels in %d launches" % (total, sum(k[1] for k in ks)))
    print("%9s %6s %6s %9s %9s %9s  %-44s %s" % ("ms", "share", "calls", "mean us", "min us",
                                                 "max us", "kernel", "block / grid"))
    for t, n, mean, lo, hi, name, block, grid in ks[:top]:
        print("%9.3f %5.1f%% %6d %9.1f %9.1f %9.1f  %-44s %s %s" % (
            t, 100 * t / total, n, mean * 1e3, lo * 1e3, hi * 1e3, name[:44], block, grid))


if __name__ == "__main__":
    main()
