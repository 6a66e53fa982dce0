"""Normalizer speed: `PersianNormalizer` on a megabyte of text, and whether the time is linear.

Every prompt and every document goes through the normalizer, so its time must grow with the
text's length and no faster. At d058e49 the 'می' rule sliced the whole text around each match,
and a prompt of 'می رود ' repeated took 10–40 s for a megabyte (quadratic: twice the text,
four times the time). Two texts, each normalized at `--chars` characters and at twice that:

* 'می رود ' repeated: the worst case for the 'می' rule (every other word is a candidate);
* the embedded Hafez corpus (`sokhan.data.sources.iter_documents("hafez")`), its documents
  joined by blank lines and repeated: real Persian, with its diacritics, ZWNJs and line breaks.

For each it prints the median time of `--repeats` runs at each size (the sizes alternate), characters per second,
and the ratio of the two times: about 2 for linear work, about 4 for quadratic. The ratio,
measured in one run, is the figure to compare; seconds move with the machine's load.

    python benchmarks/normalize_speed.py                 # 1,000,000 characters and 2,000,000
    python benchmarks/normalize_speed.py --chars 250000 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

from sokhan.data.sources import iter_documents
from sokhan.text.normalize import PersianNormalizer


def repeated(text: str, chars: int) -> str:
    """`text` repeated and cut to exactly `chars` characters."""
    return (text * (chars // len(text) + 1))[:chars]


def seconds(normalizer: PersianNormalizer, text: str) -> float:
    start = time.perf_counter()
    normalizer(text)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chars", type=int, default=1_000_000, help="the smaller size, in characters")
    p.add_argument("--repeats", type=int, default=5, help="runs per text and size (the median is printed)")
    args = p.parse_args()

    normalizer = PersianNormalizer()  # the defaults: Persian digits, diacritics kept, affixes joined
    texts = {"'می رود ' repeated": "می رود ", "Hafez repeated": "\n\n".join(iter_documents("hafez")) + "\n\n"}
    print(f"{'text':<20} {'chars':>10} {'median s':>9} {'chars/s':>12}   2× / 1× time")
    for name, unit in texts.items():
        small, large = repeated(unit, args.chars), repeated(unit, 2 * args.chars)
        normalizer(small[:10_000])  # warm the regex and translation caches
        # The sizes alternate, so a neighbour loading the machine slows both alike.
        pairs = [(seconds(normalizer, small), seconds(normalizer, large)) for _ in range(args.repeats)]
        t_small = statistics.median(s for s, _ in pairs)
        t_large = statistics.median(t for _, t in pairs)
        print(f"{name:<20} {len(small):>10,} {t_small:>9.3f} {len(small) / t_small:>12,.0f}")
        print(f"{name:<20} {len(large):>10,} {t_large:>9.3f} {len(large) / t_large:>12,.0f}   "
              f"{t_large / t_small:.2f} (2 = linear, 4 = quadratic)")


if __name__ == "__main__":
    main()
