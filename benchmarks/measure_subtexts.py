"""Rule-based sub-text splitting and the prototype vocabulary on the real KIT-ML captions.

    python benchmarks/measure_subtexts.py                       # ../shared/fixtures/kitml
    python benchmarks/measure_subtexts.py --annotations PATH    # any TMR-layout annotations.json

Reports: number of captions, how many split into more than one sub-text, the histogram of N, how
many captions have no detected verb, time per caption (cold: lemma cache empty; warm: second
pass), ~15 varied example splits, and the lemmatised vocabulary size (the paper's K: 1,191 for
KIT-ML) on all captions and on the train split. Writes benchmarks/results/subtexts_kitml.json and
prints a Markdown snippet.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from common import environment, write_results

from mate.text.subtexts import has_verb, split_subtexts
from mate.text.vocab import build_vocabulary, lemmatize, split_words

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ANNOTATIONS = REPO_ROOT.parent / "shared" / "fixtures" / "kitml" / "annotations.json"

# Connectives the examples should cover, so the printed sample shows each rule at work.
EXAMPLE_MARKERS = ("then", "before", "after", "while", "and", ",", "as", "when")


def load_captions(path: Path) -> list[tuple[str, str, str]]:
    """(motion id, seg_id, text) of every caption of a TMR-layout annotations.json."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    out = []
    for motion_id, entry in data.items():
        for ann in entry.get("annotations", []):
            out.append((motion_id, ann["seg_id"], ann["text"]))
    return out


def pick_examples(splits: dict[str, list[str]], rng: random.Random, count: int) -> list[dict]:
    """A varied sample: each N > 1 seen, each connective, single-action and verb-less captions."""
    texts = sorted(splits)
    chosen: list[str] = []

    def take(pool: list[str], k: int) -> None:
        pool = [t for t in pool if t not in chosen]
        chosen.extend(rng.sample(pool, min(k, len(pool))))

    by_n: dict[int, list[str]] = {}
    for t in texts:
        by_n.setdefault(len(splits[t]), []).append(t)
    for n in sorted(by_n):
        if n > 1:
            take(by_n[n], 1)
    # A reordered "after"-clause and a "before"-clause, then one caption per other connective.
    for marker in ("after", "before"):
        take([t for t in texts if any(sub.lower().startswith(marker + " ") for sub in splits[t])], 1)
    for marker in EXAMPLE_MARKERS:
        pattern = f" {marker} " if marker.isalpha() else marker
        take([t for t in texts if pattern in f" {t.lower()} "], 1)
    take([t for t in texts if not has_verb(t)], 1)
    take(by_n.get(1, []), 2)
    take(texts, max(0, count - len(chosen)))
    return [{"caption": t, "subtexts": splits[t]} for t in chosen[:count]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", type=Path, default=DEFAULT_ANNOTATIONS,
                        help="TMR-layout annotations.json (default: ../shared/fixtures/kitml/annotations.json)")
    parser.add_argument("--output-name", default="subtexts_kitml", help="results/<name>.json")
    parser.add_argument("--examples", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if not args.annotations.is_file():
        print(f"annotations not found: {args.annotations}", file=sys.stderr)
        return 2
    records = load_captions(args.annotations)
    texts = [t for _, _, t in records]

    # Cold pass (lemma cache empty) then two warm passes; time per caption from each.
    lemmatize.cache_clear()
    t0 = time.perf_counter()
    results = [split_subtexts(t) for t in texts]
    cold_s = time.perf_counter() - t0
    warm = []
    for _ in range(2):
        t0 = time.perf_counter()
        for t in texts:
            split_subtexts(t)
        warm.append(time.perf_counter() - t0)
    warm_s = statistics.median(warm)

    counts = Counter(len(r) for r in results)
    no_verb = sum(not has_verb(t) for t in texts)
    invariant_ok = all(
        Counter(w.lower() for s in r for w in split_words(s)) == Counter(w.lower() for w in split_words(t))
        for t, r in zip(texts, results))
    splits = {t: r for t, r in zip(texts, results)}
    examples = pick_examples(splits, random.Random(args.seed), args.examples)

    vocab_all = build_vocabulary(texts)
    split_file = args.annotations.parent / "splits" / "train.txt"
    vocab_train_size = None
    if split_file.is_file():
        train_ids = set(split_file.read_text().split())
        vocab_train_size = len(build_vocabulary([t for m, _, t in records if m in train_ids]))

    n = len(texts)
    payload = {
        "annotations": str(args.annotations),
        "num_captions": n,
        "num_unique_captions": len(set(texts)),
        "num_split": sum(len(r) > 1 for r in results),
        "fraction_split": sum(len(r) > 1 for r in results) / n,
        "histogram_num_subtexts": {str(k): counts[k] for k in sorted(counts)},
        "num_no_verb_detected": no_verb,
        "word_multiset_invariant_holds": invariant_ok,
        "time_per_caption_us": {"cold": cold_s / n * 1e6, "warm": warm_s / n * 1e6},
        "vocabulary_size_all_captions": len(vocab_all),
        "vocabulary_size_train_split": vocab_train_size,
        "vocabulary_size_paper_kitml": 1191,
        "vocabulary_top20": vocab_all.index_to_word[:20],
        "examples": examples,
        "environment": environment(),
    }
    path = write_results(args.output_name, payload)

    hist = " · ".join(f"N={k}: {counts[k]}" for k in sorted(counts))
    print(f"### Sub-texts on {args.annotations.parent.name} ({n:,} captions)\n")
    print("| measure | value |\n|---|---|")
    print(f"| captions split into > 1 sub-text | {payload['num_split']:,} ({payload['fraction_split']:.1%}) |")
    print(f"| histogram of N | {hist} |")
    print(f"| captions with no detected verb | {no_verb:,} |")
    print(f"| word-multiset invariant | {'holds' if invariant_ok else 'BROKEN'} |")
    print(f"| time per caption | {payload['time_per_caption_us']['cold']:.0f} µs cold, "
          f"{payload['time_per_caption_us']['warm']:.0f} µs warm |")
    print(f"| vocabulary (lemmas, content words) | {len(vocab_all):,} all captions; "
          f"{vocab_train_size if vocab_train_size is not None else 'n/a'} train split (paper: 1,191) |")
    print("\n| caption | sub-texts |\n|---|---|")
    for ex in examples:
        subs = " ‖ ".join(ex["subtexts"])
        print(f"| {ex['caption']} | {subs} |")
    print(f"\nwrote {path}")
    return 0 if invariant_ok else 1


if __name__ == "__main__":
    sys.exit(main())
