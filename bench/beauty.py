"""Benchmark on the paper's own data, Amazon Beauty (22,363 users, 12,101 items, 198,502 interactions).

The data is not in the repository (research-use terms): pass its folder as the first argument, or set RECSYSLLM_BEAUTY,
or keep it at ../shared/data/amazon-beauty beside the repository. Without it the script says so, prints nulls, exits 0.

Measured (median of REPEATS runs after one warm-up, wall time, this process):
- load_textualize_s: `load_sequences` (both files, validated, titles decoded and capped) + `leave_one_out` (99 negatives,
  rejection sampling: cost ~ users x 99) + `item_names` + `textualize_corpus` of all 22,363 users (default TextConfig:
  20 items, 10/30/60% periods). Target: < 2 s.
- trie_build_s: `EntityTrie.from_names` over the 12,101 item names: each name tokenized in its training context by the
  offline demo-style tokenizer (byte-level BPE, 6,000 tokens) trained on the textualized Beauty training split
  (training it is not timed), then the pygtrie built. The split between tokenizing and building is printed too.
- eval_users_per_s: users per second of RecSysLLM's evaluation of one test user on both families, as
  `recsysllm_beauty` runs it: `score_sequential` (constrained beam search over the trie of all 12,101 names, 20 beams,
  top 10, the user's earlier items excluded) + `score_direct` (log-likelihood of the 1 + 99 candidate titles), seen
  prompts of EVAL_USERS test users (seed 0), the CPU preset's model (`small` GLM, randomly initialised: throughput does
  not depend on training, except that a trained model's beams may end sooner). Median of 3 after a warm-up. The same run
  times SASRec full ranking + BPR-MF candidate ranking of the same users (fitted for 1 epoch) as the baseline ratio.
The last line is one JSON object with these three keys (and the baseline's users per second).
`--load-only` measures load_textualize_s alone (the other two stay null).
"""
import json, os, statistics, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REPEATS = 5
EVAL_USERS = 32


def data_folder() -> Path:
    args = [a for a in sys.argv[1:] if a != '--load-only']
    if args: return Path(args[0])
    return Path(os.environ.get('RECSYSLLM_BEAUTY', ROOT.parent / 'shared' / 'data' / 'amazon-beauty'))


def main():
    d = data_folder()
    out = dict(load_textualize_s=None, trie_build_s=None, eval_users_per_s=None)
    if not ((d / 'sequences.jsonl').exists() and (d / 'items.json').exists()):
        print(f'Amazon Beauty not found at {d} (sequences.jsonl + items.json): nothing measured. '
              'Pass the folder as the first argument or set RECSYSLLM_BEAUTY.')
        print(json.dumps(out)); return
    from recsysllm_nb.sequences import load_sequences
    from recsysllm_nb.data import leave_one_out
    from recsysllm_nb.textualize import item_names, textualize_corpus, check_sample

    def once():
        t0 = time.perf_counter(); t = load_sequences(d)
        t1 = time.perf_counter(); sp = leave_one_out(t, n_neg=99, seed=0)
        t2 = time.perf_counter(); names = item_names(t.items); corpus = textualize_corpus(t, sp, names=names)
        t3 = time.perf_counter()
        assert (len(t.users), len(t.items), len(t.interactions)) == (22363, 12101, 198502) and len(corpus) == 22363
        return dict(load=t1 - t0, split=t2 - t1, textualize=t3 - t2, total=t3 - t0), t, sp, names, corpus

    _, tables, split, names, corpus = once()          # warm-up (imports, file cache)
    for s in corpus[:2000]: check_sample(s)
    runs = [once()[0] for _ in range(REPEATS)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out['load_textualize_s'] = round(med['total'], 4)
    print(f'Amazon Beauty ({d}), {len(tables.users):,} users, {len(tables.items):,} items, '
          f'{len(tables.interactions):,} interactions; {REPEATS} runs, median seconds:')
    for k in ('load', 'split', 'textualize', 'total'):
        print(f'  {k:11} {med[k]:.3f}  (min {min(r[k] for r in runs):.3f}, max {max(r[k] for r in runs):.3f})')
    print(f'  target load_textualize_s < 2 s: {"met" if med["total"] < 2 else "MISSED"}')
    if '--load-only' in sys.argv[1:]:
        print(json.dumps(out)); return

    try:
        from recsysllm_nb.trie import EntityTrie, entity_token_ids
        from recsysllm_nb.tokenizer import train_tokenizer, special_ids
    except ImportError as e:
        print(f'  trie: recsysllm_nb.trie not importable ({e}); trie_build_s left null')
    else:
        t0 = time.perf_counter()
        tok = train_tokenizer([s.text for s in textualize_corpus(tables, split, names=names, n_items=None)], vocab_size=6000)
        print(f'  tokenizer: byte-level BPE, {len(tok):,} tokens, trained on the Beauty training split in {time.perf_counter() - t0:.1f} s (not timed below)')
        eop = special_ids(tok).eop
        EntityTrie.from_names(names, tok, eop)        # warm-up
        build, tokn, pure = [], [], []
        for _ in range(REPEATS):
            t0 = time.perf_counter(); trie = EntityTrie.from_names(names, tok, eop); build.append(time.perf_counter() - t0)
            t0 = time.perf_counter(); ids = entity_token_ids(list(names.values()), tok); tokn.append(time.perf_counter() - t0)
            t0 = time.perf_counter(); EntityTrie(ids, list(names), list(names.values()), eop); pure.append(time.perf_counter() - t0)
        assert len(trie) == 12101
        lens = sorted(len(trie.tokens_of[k]) for k in names)
        out['trie_build_s'] = round(statistics.median(build), 4)
        print(f'  trie: {trie}; tokens per name median {lens[len(lens) // 2]}, max {lens[-1]}')
        print(f'  trie_build (EntityTrie.from_names: tokenize in context + build) {statistics.median(build):.3f} s '
              f'= tokenize {statistics.median(tokn):.3f} s + pygtrie build {statistics.median(pure):.3f} s')
        out.update(eval_throughput(tables, split, names, tok, trie))
    print(json.dumps(out))


def eval_throughput(tables, split, names, tok, trie) -> dict:
    "RecSysLLM users/s (sequential beam search + direct candidates) and the SASRec + BPR-MF users/s on the same users."
    import torch
    from recsysllm_nb.models import build_model
    from recsysllm_nb.baselines import BPRMF, user_histories, eval_sequential, eval_direct
    from recsysllm_nb.sasrec import SASRec
    from recsysllm_nb.experiments import eval_users, eval_prompts, score_sequential, score_direct, subset_split
    users = eval_users(split, EVAL_USERS, seed=0)
    sets = eval_prompts(tables, split, users, ('sequential', 'direct'), names=names)
    seq, direct = sets[('sequential', 'seen', 'beam')], sets[('direct', 'seen', 'candidates')]
    seen = dict(zip(users, map(tuple, user_histories(split, users, 'test'))))
    glm = build_model('glm', 'small', len(tok), max_length=256, seed=0, pad_token_id=tok.pad_token_id).eval()
    def llm():
        t0 = time.perf_counter(); score_sequential(glm, tok, seq, trie, seen, beams=20)
        t1 = time.perf_counter(); score_direct(glm, tok, direct, trie, names, seen=seen)
        return t1 - t0, time.perf_counter() - t1
    llm(); runs = [llm() for _ in range(3)]
    ts, td = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    sas = SASRec(epochs=1, progress=False).fit(tables, split, seed=0)
    bpr = BPRMF(epochs=1, progress=False).fit(tables, split, seed=0)
    sub = subset_split(split, users)
    def base():
        t0 = time.perf_counter(); eval_sequential(sas, tables, sub, 'test'); eval_direct(bpr, tables, sub, 'test')
        return time.perf_counter() - t0
    base(); tb = statistics.median(base() for _ in range(3))
    ups, bups = len(users) / (ts + td), len(users) / tb
    print(f'  eval ({len(users)} users, seen prompts, {torch.get_num_threads()} threads, median of 3): sequential '
          f'{len(users) / ts:.2f} users/s (20 beams over {len(trie):,} names), direct {len(users) / td:.2f} users/s '
          f'(1 + 99 titles); both: {ups:.2f} users/s')
    print(f'  baseline SASRec full ranking + BPR-MF 1 + 99 on the same users: {bups:.1f} users/s; RecSysLLM / baseline = {ups / bups:.4f}')
    return dict(eval_users_per_s=round(ups, 3), baseline_eval_users_per_s=round(bups, 3))


if __name__ == '__main__':
    main()
