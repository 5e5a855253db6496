"""Benchmark: `RecCollator` on batches of 16 samples x 512 tokens of textualized MovieLens-100K users.

Real pipeline: load_ml100k -> leave_one_out -> textualize_corpus (the 64 users with the longest training histories,
whole history, 1,600-3,500 tokens each) -> demo tokenizer -> tokenize_samples. Pre-tokenized samples go in; one
collator call does truncation to 512 (left, at a unit boundary), masking (per-sample seeded draws), 2D positions, labels
and padding. Two masking settings: entity level only, and the GLM-10B mixture (50% entity / 30% sentence / 20%
document). Every call uses another batch or another epoch (fresh draws); each figure is the median over calls.
Baseline, measured in the same run: `collate_oracle`, the plain per-sample, per-token implementation (same tensors).
GLM's own reference collator (span level, pure Python) needs about 12-20 ms for such a batch on a 2-core machine.

    .venv/bin/python bench/collate.py [--calls 300] [--oracle-calls 24]

The last line printed is one JSON object: entity_ms_per_batch, mixture_ms_per_batch (medians, ms per batch of 16),
speedup_vs_oracle (oracle median / fast median, entity level, same batches).
"""
import argparse, json, os, statistics, sys, time
from pathlib import Path

os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests'))   # the per-sample oracle is test code
import numpy as np  # noqa: E402
import torch  # noqa: E402
from recsysllm_nb.data import load_ml100k, leave_one_out  # noqa: E402
from recsysllm_nb.textualize import textualize_corpus  # noqa: E402
from recsysllm_nb.entities import tokenize_samples
from recsysllm_nb.tokenizer import demo_tokenizer, special_ids  # noqa: E402
from recsysllm_nb.masking import MaskConfig  # noqa: E402
from recsysllm_nb.collate import RecCollator  # noqa: E402
from collate_oracle import collate_oracle  # noqa: E402

BATCH, MAX_LEN, N_USERS = 16, 512, 64


def load():
    tables = load_ml100k(); split = leave_one_out(tables)
    tok = demo_tokenizer()
    users = split.train['user_id'].value_counts().index[:N_USERS].tolist()
    samples = tokenize_samples(textualize_corpus(tables, split, users=users, n_items=None), tok)
    ex = [dict(input_ids=s.input_ids, entity=s.entity, sentence=s.sentence, idx=i) for i, s in enumerate(samples)]
    return tok, ex


def time_calls(fn, batches, calls, set_epoch=None):
    "Median (and all) seconds of `calls` calls, cycling over batches; a new epoch after each full cycle."
    out = []
    for c in range(calls):
        if set_epoch is not None and c % len(batches) == 0: set_epoch(c // len(batches))
        b = batches[c % len(batches)]
        t = time.perf_counter(); fn(b, c // len(batches)); out.append(time.perf_counter() - t)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--calls', type=int, default=300)
    ap.add_argument('--oracle-calls', type=int, default=24)
    a = ap.parse_args()
    torch.set_num_threads(1)
    tok, ex = load()
    ids = special_ids(tok)
    batches = [ex[i:i + BATCH] for i in range(0, len(ex), BATCH)]
    lengths = [len(e['input_ids']) for e in ex]
    cfgs = dict(entity=MaskConfig(level_probs=(1, 0, 0)), mixture=MaskConfig())
    res, fill = {}, {}
    for name, cfg in cfgs.items():
        coll = RecCollator(tok, cfg, max_length=MAX_LEN, seed=0)
        warm = coll(batches[0])
        fill[name] = float(warm['attention_mask'].float().mean())
        res[name] = time_calls(lambda b, e: coll(b), batches, a.calls, coll.set_epoch)
        # same batches, same epochs: the oracle returns the same tensors
        res[name + '_oracle'] = time_calls(lambda b, e: collate_oracle(b, ids, cfg, MAX_LEN, 0, e), batches, a.oracle_calls)
        for e in (0, 1):
            coll.set_epoch(e)
            f, o = coll(batches[1]), collate_oracle(batches[1], ids, cfg, MAX_LEN, 0, e)
            assert all(torch.equal(f[k], o[k]) for k in o), f'{name}: fast collator and oracle disagree'
    med = {k: 1e3 * statistics.median(v) for k, v in res.items()}
    q = {k: (1e3 * np.percentile(v, 10), 1e3 * np.percentile(v, 90)) for k, v in res.items()}
    print(f'RecCollator, {len(ex)} ML-100K users ({min(lengths)}-{max(lengths)} tokens each), batches of {BATCH} x {MAX_LEN}, '
          f'{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}')
    for name in cfgs:
        print(f'  {name:8} fast   {med[name]:7.3f} ms/batch  (p10 {q[name][0]:.3f}, p90 {q[name][1]:.3f}; {a.calls} calls; '
              f'{100 * fill[name]:.0f}% of the padded batch is real tokens)')
        print(f'  {name:8} oracle {med[name + "_oracle"]:7.3f} ms/batch  ({a.oracle_calls} calls) -> speedup '
              f'{med[name + "_oracle"] / med[name]:.1f}x')
    print('  target: <= 1.5 ms median per batch; GLM reference collator (span level, pure Python): about 12-20 ms')
    print(json.dumps(dict(entity_ms_per_batch=round(med['entity'], 4), mixture_ms_per_batch=round(med['mixture'], 4),
                          speedup_vs_oracle=round(med['entity_oracle'] / med['entity'], 2))))


if __name__ == '__main__':
    main()
