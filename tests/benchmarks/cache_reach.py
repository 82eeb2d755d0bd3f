"""How much data this host's caches keep from one pass to the next: the reach a fused kernel or a
windowed optimizer pass can count on, which a guest's nominal cache sizes do not tell.

    python tests/benchmarks/cache_reach.py [--sizes 2,4,8,16,32,64,128] [--repeats 7]

For each size, an fp32 tensor of that many MiB is summed right after a 256 MiB pass has evicted
it (cold), then summed again at once (re-read), on torch's threads; it prints the GB/s of each,
the median of the repeats. Where the re-read runs no faster than the cold pass, the data did not
stay in any cache the threads share. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

EVICT_MIB = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2,4,8,16,32,64,128", help="MiB, comma-separated")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        raise SystemExit(f"--sizes {args.sizes!r}: expected MiB as integers, comma-separated") from None
    if not sizes or min(sizes) < 1:
        raise SystemExit(f"--sizes {args.sizes!r}: expected positive MiB")
    evict = torch.ones(EVICT_MIB * 2**20 // 4)
    print(f"{torch.get_num_threads()} threads; each size summed after a {EVICT_MIB} MiB pass, then again")
    print(f"{'MiB':>6} {'cold GB/s':>10} {'re-read GB/s':>13}")
    for mib in sizes:
        x = torch.ones(mib * 2**20 // 4)
        cold, again = [], []
        for _ in range(args.repeats):
            evict.add_(1.0)
            start = time.perf_counter()
            x.sum()
            middle = time.perf_counter()
            x.sum()
            cold.append(middle - start)
            again.append(time.perf_counter() - middle)
        gb = x.numel() * 4 / 1e9
        print(f"{mib:6d} {gb / statistics.median(cold):10.1f} {gb / statistics.median(again):13.1f}")


if __name__ == "__main__":
    main()
