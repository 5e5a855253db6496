"""Benchmark: `masking.mask_batch` (spans drawn per sample, Part A / Part B built for the whole batch at once) against
one `mask_sample` call per sample, on 16 real MovieLens-100K users cut to 512 tokens (demo tokenizer).

    .venv/bin/python bench/masking.py [--rounds 15] [--calls 20]

For RecSysLLM's masking and GLM's (token-level): the median over rounds of the mean ms per batch of 16, and the ratio
per-sample / batched (same samples, same configuration). The last line printed is one JSON object.
"""
import argparse, json, os, statistics, sys, time
from pathlib import Path

os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402
from recsysllm_nb.data import load_ml100k, leave_one_out  # noqa: E402
from recsysllm_nb.textualize import textualize_corpus  # noqa: E402
from recsysllm_nb.entities import TokenizedSample, tokenize_samples  # noqa: E402
from recsysllm_nb.tokenizer import demo_tokenizer, special_ids  # noqa: E402
from recsysllm_nb.masking import MaskConfig, mask_batch, mask_sample  # noqa: E402


def long_samples(n=16, length=512):
    "`n` real users with at least `length` tokens of training history, cut to `length`."
    tables = load_ml100k(); split = leave_one_out(tables); tok = demo_tokenizer()
    users = tables.users['user_id'].tolist()[:60]
    full = tokenize_samples(textualize_corpus(tables, split, users=users, n_items=None), tok)
    out = [TokenizedSample(input_ids=t.input_ids[:length], entity=t.entity[:length], sentence=t.sentence[:length])
           for t in full if len(t.input_ids) >= length][:n]
    if len(out) < n: raise SystemExit(f'only {len(out)} of the first 60 users have {length} tokens')
    return out, special_ids(tok)


def median_ms(f, rounds, calls):
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls): f()
        ts.append((time.perf_counter() - t0) / calls * 1e3)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=15); ap.add_argument('--calls', type=int, default=20)
    a = ap.parse_args()
    samples, sid = long_samples()
    print(f'{len(samples)} samples of {len(samples[0].input_ids)} tokens')
    res = {}
    for name, cfg in (('recsysllm', MaskConfig()), ('glm', MaskConfig.glm())):
        rng = np.random.default_rng(0)
        batched = median_ms(lambda: mask_batch(samples, sid, rng, cfg), a.rounds, a.calls)
        single = median_ms(lambda: [mask_sample(t, sid, rng, cfg) for t in samples], a.rounds, a.calls)
        res[name] = dict(batch_ms=round(batched, 3), per_sample_ms=round(single, 3), ratio=round(single / batched, 2))
        print(f'{name:9s} mask_batch {batched:.2f} ms per batch; one mask_sample per sample {single:.2f} ms '
              f'({single / batched:.2f}x)')
    print(json.dumps(res))


if __name__ == '__main__':
    main()
