#!/usr/bin/env python3
"""Draws bench_ce's JSON: GB/s against K per contender, one thread, log-log.

    plot.py bench.json bench.png

Left panel fwd+bwd, right panel fwd (fp32 logits; lossjit bf16 as a dashed line, in rows per
second on the fp32 GB/s scale). Exit status 3 when matplotlib is missing (Debian:
python3-matplotlib), so that bench_ce can say "skipped".
"""
import json
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("plot.py: matplotlib is not installed (Debian: python3-matplotlib)", file=sys.stderr)
    sys.exit(3)

STYLE = {  # contender: (label, colour, marker)
    "lossjit": ("lossjit", "tab:red", "o"),
    "naive": ("naive C++", "tab:gray", "v"),
    "careful": ("careful C++ (-ffast-math, libmvec)", "tab:blue", "s"),
    "pytorch": ("PyTorch (libtorch)", "tab:orange", "D"),
    "onednn": ("oneDNN logsoftmax", "tab:green", "^"),
    "read": ("streaming read", "black", None),
    "copy": ("read + write (copy)", "black", None),
}


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        rows = json.load(f)
    threads = 1
    fig, axes = plt.subplots(1, 2, figsize=(14, 5), sharey=True)
    legend = {}
    for ax, pas, title in ((axes[0], "fwdbwd", "loss + gradient"), (axes[1], "fwd", "loss only")):
        for name, (label, colour, marker) in STYLE.items():
            for dtype in ("f32", "bf16"):
                if dtype == "bf16" and name != "lossjit":
                    continue
                pts = sorted(
                    (int(r["shape"].split("x")[1]), r["gbps"])
                    for r in rows
                    if r["contender"] == name and r["pass"] == pas and r["dtype"] == dtype and r["threads"] == threads
                )
                if not pts:
                    continue
                ks, gb = zip(*pts)
                style = ":" if name in ("read", "copy") else "--" if dtype == "bf16" else "-"
                if name == "copy":
                    style = "-."
                name_shown = label + (" bf16" if dtype == "bf16" else "")
                (line,) = ax.plot(ks, gb, style, color=colour, marker=marker, label=name_shown)
                legend.setdefault(name_shown, line)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("K (row length; N x K = 655k to 16M logits)")
        ax.set_title(f"softmax cross-entropy, {title}, {threads} thread")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("GB/s of fp32 logits (higher is better)")
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    fig.legend(list(legend.values()), list(legend.keys()), loc="center right", fontsize=9)
    fig.savefig(sys.argv[2], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
