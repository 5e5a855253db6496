"""Benchmark: load MovieLens-100K (`load_ml100k`), split it (`leave_one_out`) and textualize all 943 users (`textualize_corpus`).

Repeats the whole pipeline REPEATS times (after one warm-up) and prints the median of each stage. Baseline, measured in the
same run: a naive per-user pandas loop that filters the training rows of each user, keeps the 20 most recent titles and
joins them into text (no entity spans, no period sampling), on the same loaded tables. The last line is one JSON object:
`seconds` = median total (load + split + textualize), `peak_mb` = peak resident memory of this process
(resource.getrusage ru_maxrss, so it includes the Python interpreter and imported libraries).
"""
import json, resource, statistics, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recsysllm_nb.data import load_ml100k, leave_one_out
from recsysllm_nb.textualize import textualize_corpus, check_sample

REPEATS = 7


def naive(tables, split):
    "Baseline: a per-user pandas loop, the obvious way to write it."
    title = tables.items.set_index('item_id')['title']
    out = []
    for u in tables.users['user_id']:
        h = split.train[split.train['user_id'] == u].sort_values('timestamp').tail(20)
        out.append('The user rated ' + '; '.join(title.loc[h['item_id']].tolist()) + '.')
    return out


def once():
    t0 = time.perf_counter(); tables = load_ml100k()
    t1 = time.perf_counter(); split = leave_one_out(tables)
    t2 = time.perf_counter(); corpus = textualize_corpus(tables, split)
    t3 = time.perf_counter()
    assert len(corpus) == 943
    return dict(load=t1 - t0, split=t2 - t1, textualize=t3 - t2, total=t3 - t0), tables, split, corpus


def main():
    _, tables, split, corpus = once()     # warm-up (imports, file cache)
    for s in corpus: check_sample(s)
    runs, base = [], []
    for _ in range(REPEATS):
        runs.append(once()[0])
        t = time.perf_counter(); naive(tables, split); base.append(time.perf_counter() - t)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    b = statistics.median(base)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f'MovieLens-100K, 943 users, {REPEATS} runs, median seconds:')
    for k in ('load', 'split', 'textualize', 'total'): print(f'  {k:11} {med[k]:.3f}  (min {min(r[k] for r in runs):.3f}, max {max(r[k] for r in runs):.3f})')
    print(f'  baseline (naive per-user pandas loop, 20 titles, no spans): {b:.3f} s; '
          f'textualize_corpus is {b / med["textualize"]:.1f}x faster')
    print(f'  target total < 3 s: {"met" if med["total"] < 3 else "MISSED"}; peak RSS (getrusage ru_maxrss) {peak:.0f} MB')
    print(json.dumps(dict(seconds=round(med['total'], 4), peak_mb=round(peak, 1))))


if __name__ == '__main__':
    main()
