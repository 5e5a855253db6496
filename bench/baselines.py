"""Train one ranking baseline (SASRec or BPR-MF) under a budget and report full-ranking test figures.

    python bench/baselines.py <data> [--model sasrec|bpr] [--loss ce|bce] [--epochs 200] [--patience 10] ...

<data> is `ml100k` or a folder in the sequences + items format (e.g. Amazon Beauty). The split is `leave_one_out`
(seed 0): the model trains on the training part, is early-stopped on validation NDCG@10, and is evaluated once on the
test users (full ranking over all items, history excluded, as `eval_sequential`). The last line is one JSON object:
test HR@5 / NDCG@5 / HR@10 / NDCG@10, epochs run, best epoch, fit seconds, the validation curve, and the standard
error sqrt(p (1 - p) / n) of each hit rate. With --paper beauty the published SASRec row (paper Table 4) is printed
beside.
"""
import argparse, json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PUBLISHED = {'beauty': {'HR@5': 0.0387, 'NDCG@5': 0.0249, 'HR@10': 0.0605, 'NDCG@10': 0.0318}}   # paper Table 4, SASRec


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('data', help="'ml100k' or a folder with sequences.jsonl + items.json")
    ap.add_argument('--model', choices=['sasrec', 'bpr'], default='sasrec')
    ap.add_argument('--loss', choices=['ce', 'bce'], default='ce')
    ap.add_argument('--epochs', type=int, default=200); ap.add_argument('--patience', type=int, default=10)
    ap.add_argument('--eval-every', type=int, default=1)
    ap.add_argument('--dim', type=int, default=64); ap.add_argument('--max-len', type=int, default=50)
    ap.add_argument('--blocks', type=int, default=2); ap.add_argument('--heads', type=int, default=1)
    ap.add_argument('--dropout', type=float, default=0.5); ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--reg', type=float, default=1e-4, help='BPR-MF L2')
    ap.add_argument('--batch', type=int, default=None); ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--seed', type=int, default=0); ap.add_argument('--paper', choices=sorted(PUBLISHED), default=None)
    a = ap.parse_args(argv)
    from recsysllm_nb.data import load_ml100k, leave_one_out
    from recsysllm_nb.sequences import load_sequences
    from recsysllm_nb.baselines import BPRMF, Budget, eval_sequential
    from recsysllm_nb.sasrec import SASRec
    tables = load_ml100k() if a.data == 'ml100k' else load_sequences(a.data)
    split = leave_one_out(tables, seed=0)
    budget = Budget(a.epochs, a.patience, a.eval_every)
    if a.model == 'sasrec':
        m = SASRec(dim=a.dim, max_len=a.max_len, n_blocks=a.blocks, n_heads=a.heads, dropout=a.dropout, loss=a.loss,
                   lr=a.lr, batch_size=a.batch or 256, budget=budget, threads=a.threads)
    else: m = BPRMF(dim=a.dim, lr=a.lr, reg=a.reg, batch_size=a.batch or 2048, budget=budget, threads=a.threads)
    print(f'{tables.name}: {len(tables.users):,} users, {len(tables.items):,} items,',
          f'{len(split.train):,} training rows;',
          m, vars(a))
    m.fit(tables, split, seed=a.seed)
    res = eval_sequential(m, tables, split, 'test')
    out = {k: round(res[k], 4) for k in ('HR@5', 'NDCG@5', 'HR@10', 'NDCG@10')}
    n = res['n']
    se = {f'se_{k}': round((res[k] * (1 - res[k]) / n) ** 0.5, 4) for k in ('HR@5', 'HR@10')}
    out.update(n=n, **se, epochs=m.epochs_, best_epoch=m.best_epoch_, best_valid_NDCG10=round(m.best_valid_, 4),
               fit_s=round(m.fit_seconds_, 1),
               s_per_epoch=round(m.fit_seconds_ / m.epochs_, 2), args=vars(a),
               valid_curve=[(e, round(l, 4), round(v, 4)) for e, l, v in m.history_])
    if a.paper:
        pub = PUBLISHED[a.paper]
        print('published SASRec (paper Table 4):', pub)
        print('(ours - published) / SE:', {k: round((out[k] - pub[k]) / out[f'se_{k}'], 2) for k in ('HR@5', 'HR@10')})
    print(json.dumps(out))


if __name__ == '__main__': main()
