"""Positive control of the plug-and-play protocol (``mate.plug_and_play``): can it see a word-table
change that must matter?

The "collapsed" encoder is the original MiniLM with each tested antonym's row copied over its
partner's (WE(right) := WE(left), WE(slowly) := WE(quickly), ...; pairs whose words have different
token counts, clockwise/counterclockwise here, are left alone and serve as an inner control). A
caption and its antonym-swapped copy then encode identically, so a probe trained on the collapsed
encoder must fail those swaps (a tie is a failure), whatever it learns; the protocol should report
a large, clearly non-zero paired drop for the collapsed pairs and none for the untouched pair.

    python benchmarks/pnp_positive_control.py --probe-data probe_set --seeds 3

writes ``benchmarks/results/pnp_positive_control_cpu.json``.
"""
from __future__ import annotations

import argparse
import time

import torch

from common import environment, write_results
from mate import plug_and_play as P
from mate.text.antonyms import ANTONYM_WORD_PAIRS
from mate.text.encoders import build_text_encoder


def collapsed_encoder(spec: str):
    """``spec``'s encoder with WE(b) := WE(a) for every (a, b) of ANTONYM_WORD_PAIRS whose two
    words have the same number of tokens. Returns (encoder, the pairs collapsed)."""
    encoder = build_text_encoder(spec)
    done = []
    with torch.no_grad():
        table = encoder.word_embeddings.weight
        for a, b in ANTONYM_WORD_PAIRS:
            ia, ib = encoder.word_token_ids([a])[0], encoder.word_token_ids([b])[0]
            if len(ia) == len(ib):
                table[ib] = table[ia]
                done.append(f"{a}/{b}")
    return encoder, done


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--probe-data", required=True, help="dataset of the probes (e.g. a 2,100-motion synthetic set)")
    p.add_argument("--encoder", default="minilm")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--name", default="pnp_positive_control_cpu")
    args = p.parse_args()
    started = time.time()
    collapsed_pairs = collapsed_encoder(args.encoder)[1]
    results = P.compare_encoders({"original": lambda: build_text_encoder(args.encoder),
                                  "antonyms collapsed": lambda: collapsed_encoder(args.encoder)[0]},
                                 args.probe_data, P.ProbeConfig(seeds=tuple(range(args.seeds))), progress=False)
    print("\n".join(P.report_lines(results)))
    per_pair = {name: {probe: {pair: round(v["accuracy"], 1) for pair, v in m["antonym_per_pair"].items()}
                       for probe, m in per_probe.items()} for name, per_probe in results["encoders"].items()}
    for name, probes in per_pair.items():
        print(name, probes)
    path = write_results(args.name, {"collapsed_pairs": collapsed_pairs, "per_pair_accuracy": per_pair,
                                     "results": results, "environment": environment(),
                                     "seconds": round(time.time() - started, 1), "argv": vars(args)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
