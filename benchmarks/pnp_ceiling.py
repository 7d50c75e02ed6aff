"""How much can a text encoder gain under the plug-and-play protocol (``mate.plug_and_play``)?

The positive control (``pnp_positive_control.py``) shows the protocol sees a word-table change that
must hurt. This one asks the opposite question, which bounds what MATE can show: how much does
the protocol reward an encoder that knows the antonym words *better* than MiniLM does?

* ``separated xA``: MiniLM with each antonym pair's rows pushed apart along their difference,
  WE(a) += A/2 (WE(a) - WE(b)), WE(b) -= A/2 (WE(a) - WE(b)) (multi-token words: every token row
  by the difference of the words' mean rows). A = 1 doubles the pair's difference vector; A = 4
  makes it 5 times as long: far beyond what any fine-tuning moves the table. This is the kind of
  change MATE makes (the paper's Fig. 5), made by hand and large.
* ``word oracle``: MiniLM's pooled feature with the caption's antonym words appended as 0/1
  indicators (found in the token ids): a text side that cannot confuse the words at all. If it
  scores like the original, the errors left are not about knowing the words (they are about which
  clause a word belongs to, or what the motion side can see), and no word table can remove them.

    python benchmarks/pnp_ceiling.py --probe-data tune_set --seeds 3

writes ``benchmarks/results/pnp_ceiling_cpu.json``. Use a tuning probe set (another seed than the
one the headline is read on).
"""
from __future__ import annotations

import argparse
import time

import torch

from common import environment, write_results
from mate import plug_and_play as P
from mate.text.antonyms import ANTONYM_WORD_PAIRS
from mate.text.encoders import build_text_encoder


def separated_encoder(spec: str, alpha: float):
    """``spec``'s encoder with every antonym pair pushed apart by ``alpha`` times its difference."""
    encoder = build_text_encoder(spec)
    with torch.no_grad():
        table = encoder.word_embeddings.weight
        for a, b in ANTONYM_WORD_PAIRS:
            ia, ib = encoder.word_token_ids([a])[0], encoder.word_token_ids([b])[0]
            difference = table[ia].mean(0) - table[ib].mean(0)
            table[ia] += alpha / 2 * difference
            table[ib] -= alpha / 2 * difference
    return encoder


class WordOracleEncoder(torch.nn.Module):
    """A frozen encoder whose pooled feature [B, E + W] is the base encoder's with W 0/1 indicators
    appended: whether each antonym word's token sequence occurs in the caption. Token features are
    the base encoder's."""

    def __init__(self, base):
        super().__init__()
        self.base = base
        self.words = sorted({w for pair in ANTONYM_WORD_PAIRS for w in pair})
        self.word_ids = [torch.tensor(ids) for ids in base.word_token_ids(self.words)]

    def tokenize(self, texts):
        return self.base.tokenize(texts)

    def word_token_ids(self, words):
        return self.base.word_token_ids(words)

    def embed_words(self, token_ids):
        return self.base.embed_words(token_ids)

    def indicators(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(input_ids.shape[0], len(self.words))
        for k, ids in enumerate(self.word_ids):
            windows = input_ids.unfold(1, len(ids), 1)                  # [B, L - n + 1, n]
            out[:, k] = (windows == ids).all(-1).any(-1).float()
        return out

    def forward(self, input_ids, attention_mask=None):
        return torch.cat([self.base(input_ids, attention_mask), self.indicators(input_ids)], 1)

    def sentence_and_token_features(self, input_ids, attention_mask=None):
        pooled, tokens, mask = self.base.sentence_and_token_features(input_ids, attention_mask)
        return torch.cat([pooled, self.indicators(input_ids)], 1), tokens, mask


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--probe-data", required=True, help="dataset of the probes (a 2,100-motion synthetic set)")
    p.add_argument("--encoder", default="minilm")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--probes", default="pooled")
    p.add_argument("--name", default="pnp_ceiling_cpu")
    args = p.parse_args()
    started = time.time()
    encoders = {"original": lambda: build_text_encoder(args.encoder),
                "separated x1": lambda: separated_encoder(args.encoder, 1.0),
                "separated x4": lambda: separated_encoder(args.encoder, 4.0),
                "word oracle": lambda: WordOracleEncoder(build_text_encoder(args.encoder))}
    config = P.ProbeConfig(seeds=tuple(range(args.seeds)), probes=tuple(args.probes.split(",")))
    results = P.compare_encoders(encoders, args.probe_data, config, progress=False)
    print("\n".join(P.report_lines(results)))
    path = write_results(args.name, {"results": results, "environment": environment(),
                                     "seconds": round(time.time() - started, 1), "argv": vars(args)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
