"""Benchmark: ranking throughput (users per second) on MovieLens-100K, for the two ranking protocols of the evaluation.

- sequential: full ranking of all 1,682 items for each test user (history excluded, HR/NDCG@5/10 computed), and
- direct: ranking each test user's 1 positive + 99 saved negatives (HR@1/5/10, NDCG@5/10 computed).

Baselines (measured on all 943 test users, the whole `eval_sequential` / `eval_direct` call, median of REPEATS after a
warm-up): SASRec for sequential, BPR-MF for direct. They are fitted briefly first (1 epoch: throughput does not depend on
how well they are trained; fit time is not counted).

RecSysLLM (`recsysllm_nb.experiments`, exactly what the evaluation runs): the demo's model size (`small` GLM preset,
4 layers x 128, randomly initialised: throughput does not depend on training) with the offline demo tokenizer, on the
seen-template test prompts of N_LLM_USERS users (drawn with seed 0); sequential = `score_sequential` (constrained beam
search over the trie of all 1,682 titles, 20 beams, top 10, the user's earlier items excluded, 8 prompts per
`generate` call), direct = `score_direct` on the choose-from-candidates prompts (log-likelihood of each of the 1 + 99
titles, Part A once per user through the KV cache). Median of 3 after a warm-up; prompt construction (`eval_prompts`)
is not counted. If the experiments module is missing, those keys are null.

Last line: one JSON object with `sequential_users_per_s`, `direct_users_per_s` (RecSysLLM) and
`baseline_sequential_users_per_s`, `baseline_direct_users_per_s`.
"""
import json, statistics, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recsysllm_nb.data import load_ml100k, leave_one_out
from recsysllm_nb.baselines import BPRMF, eval_sequential, eval_direct, user_histories
from recsysllm_nb.sasrec import SASRec

REPEATS = 5
N_LLM_USERS = 16        # users for the (much slower) RecSysLLM measurements
BEAMS = 20


def timed(fn, repeats=REPEATS):
    "Median seconds of `fn()` over `repeats` runs after one warm-up; also the last result."
    res = fn(); ts = []
    for _ in range(repeats):
        t = time.perf_counter(); res = fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts), res


def baseline_throughput(tables, split):
    "Users per second of SASRec full ranking and BPR-MF candidate ranking over all test users (metrics included)."
    sas = SASRec(epochs=1, progress=False).fit(tables, split, seed=0)
    bpr = BPRMF(epochs=1, progress=False).fit(tables, split, seed=0)
    n = len(split.test)
    ts, rs = timed(lambda: eval_sequential(sas, tables, split, 'test'))
    td, rd = timed(lambda: eval_direct(bpr, tables, split, 'test'))
    return dict(baseline_sequential_users_per_s=n / ts, baseline_direct_users_per_s=n / td,
                baseline_users=n, baseline_sequential_s=ts, baseline_direct_s=td)


def recsysllm_throughput(tables, split, n_users=N_LLM_USERS):
    "Users per second of RecSysLLM's evaluation: constrained beam search (sequential) and 1 + 99 candidate scoring (direct), small GLM."
    try:
        import torch
        from recsysllm_nb.textualize import item_names
        from recsysllm_nb.tokenizer import demo_tokenizer
        from recsysllm_nb.trie import EntityTrie
        from recsysllm_nb.models import build_model
        from recsysllm_nb.experiments import eval_users, eval_prompts, score_sequential, score_direct
    except ImportError as e:
        print(f'RecSysLLM evaluation not available ({e}); its keys are null')
        return dict(sequential_users_per_s=None, direct_users_per_s=None)
    tok = demo_tokenizer()
    names = item_names(tables.items)
    trie = EntityTrie.from_names(names, tok)
    users = eval_users(split, n_users, seed=0)
    t = time.perf_counter()
    sets = eval_prompts(tables, split, users, ('sequential', 'direct'), names=names)
    t_prompt = (time.perf_counter() - t) / len(users)
    seq, direct = sets[('sequential', 'seen', 'beam')], sets[('direct', 'seen', 'candidates')]
    seen = dict(zip(users, map(tuple, user_histories(split, users, 'test'))))
    glm = build_model('glm', 'small', len(tok), max_length=256, seed=0, pad_token_id=tok.pad_token_id).eval()  # = the demo's model
    ts, (_, tops) = timed(lambda: score_sequential(glm, tok, seq, trie, seen, beams=BEAMS), repeats=3)
    td, _ = timed(lambda: score_direct(glm, tok, direct, trie, names), repeats=3)
    assert all(len(x) == 10 for x in tops)
    return dict(sequential_users_per_s=len(users) / ts, direct_users_per_s=len(users) / td, llm_users=len(users),
                llm_prompt_s_per_user=t_prompt, llm_threads=torch.get_num_threads())


def main():
    tables = load_ml100k(); split = leave_one_out(tables)
    out = baseline_throughput(tables, split)
    print(f"baselines, {out['baseline_users']} test users, median of {REPEATS}: SASRec full ranking "
          f"{out['baseline_sequential_users_per_s']:.0f} users/s ({out['baseline_sequential_s']:.3f} s); BPR-MF 1+99 candidates "
          f"{out['baseline_direct_users_per_s']:.0f} users/s ({out['baseline_direct_s']:.3f} s)")
    llm = recsysllm_throughput(tables, split)
    if llm['sequential_users_per_s'] is not None:
        print(f"RecSysLLM (small GLM, {llm['llm_users']} users, {llm['llm_threads']} threads, median of 3): beam search {BEAMS} beams "
              f"{llm['sequential_users_per_s']:.2f} users/s; 1+99 candidate scoring {llm['direct_users_per_s']:.2f} users/s; "
              f"prompt building {llm['llm_prompt_s_per_user'] * 1000:.1f} ms/user (not counted)")
    res = {**{k: llm[k] for k in ('sequential_users_per_s', 'direct_users_per_s')},
           **{k: out[k] for k in ('baseline_sequential_users_per_s', 'baseline_direct_users_per_s')}}
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}))


if __name__ == '__main__':
    main()
