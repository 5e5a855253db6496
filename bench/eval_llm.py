"""Benchmark: evaluation at a real pre-trained LLM's size (SmolLM2-135M, vocabulary 49k) on MovieLens-100K, on the CPU.

- direct: scoring each user's 1 positive + 99 saved negatives by title log-likelihood with `decode.rank_candidates`
  (Part A runs once and its KV cache serves every candidate; logits only at the scored positions, log p = logit -
  logsumexp), against the naive scorer measured in the same run: one full sequence (Part A + [sop] + title) per
  candidate, batched, full log-softmax. Both give the same scores (checked: relative difference 1e-4, 2e-2 under bf16).
- sequential: constrained beam search (`decode.generate_entities`, 20 beams over the 1,682 titles, the user's items
  excluded), users per second.

The model is SmolLM2-135M behind the position adapter with the pre-trained layout (`models.PRETRAINED_LAYOUT`), untrained
2D tables: speed does not depend on training. Prompts: the users' next-item prompts (`decode.next_item_prompt`).
Medians over users. `--bf16` runs every forward under CPU bf16 autocast (AMX on this machine).

Last line: one JSON object with `candidates_per_s`, `naive_candidates_per_s`, `ratio`, `beam_users_per_s`.
"""
import argparse, json, statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np
import torch
from recsysllm_nb.data import load_ml100k, leave_one_out
from recsysllm_nb.textualize import item_names
from recsysllm_nb.tokenizer import special_ids
from recsysllm_nb.pretrained import load_pretrained
from recsysllm_nb.adapter import RecAdapterForCausalLM
from recsysllm_nb.models import PRETRAINED_LAYOUT, PRETRAINED_PREFIX_LM
from recsysllm_nb.trie import EntityTrie
from recsysllm_nb.decode import next_item_prompt, rank_candidates, generate_entities

ap = argparse.ArgumentParser()
ap.add_argument('--users', type=int, default=4)
ap.add_argument('--naive_candidates', type=int, default=24, help='candidates of each user scored the naive way')
ap.add_argument('--beam_users', type=int, default=3)
ap.add_argument('--bf16', action='store_true')
a = ap.parse_args()

torch.manual_seed(0)
lm, tok, _ = load_pretrained()
model = RecAdapterForCausalLM.from_base(lm, layout=PRETRAINED_LAYOUT, prefix_lm=PRETRAINED_PREFIX_LM).eval()
ids = special_ids(tok)
tables = load_ml100k(); split = leave_one_out(tables); names = item_names(tables.items)
trie = EntityTrie.from_names(names, tok)
negs = split.negatives.set_index('user_id')['items']
users = [str(u) for u in range(1, a.users + 1)]
ctx = (lambda: torch.autocast('cpu', dtype=torch.bfloat16)) if a.bf16 else torch.no_grad


def naive(prompt, cands, bs=8):
    "One full sequence per candidate: Part A + [sop] + title, then [eop] scored; full log-softmax at every position."
    out = []
    for c0 in range(0, len(cands), bs):
        seqs = [trie.tokens_of[c] for c in cands[c0:c0 + bs]]
        la, L = len(prompt.part_a), max(len(s) for s in seqs) + 1
        inp = np.full((len(seqs), la + L), ids.pad); pos = np.zeros((len(seqs), 3, la + L), np.int64)
        tgt = np.full((len(seqs), la + L), -100); am = np.zeros((len(seqs), la + L), np.int64)
        for k, s in enumerate(seqs):
            n = len(s) + 1
            inp[k, :la], inp[k, la:la + n] = prompt.part_a, (ids.sop,) + s
            tgt[k, la:la + n] = s + (ids.eop,); am[k, :la + n] = 1
            pa = prompt.positions(PRETRAINED_LAYOUT)
            pos[k, :, :la + 1] = pa
            pos[k, 0, la:la + n] = prompt.mask_pos
            from recsysllm_nb.positions import part_b_intra
            pos[k, 1, la:la + n] = part_b_intra(np.r_[False, False, np.ones(n - 2, bool)][:n], np.r_[True, np.zeros(n - 1, bool)])
            pos[k, 2, la:la + n] = prompt.part_b_base(PRETRAINED_LAYOUT, n)
        with torch.no_grad(), ctx():
            lg = model(input_ids=torch.tensor(inp), position_ids=torch.tensor(pos), attention_mask=torch.tensor(am),
                       prefix_len=torch.full((len(seqs),), la)).logits
        lp = torch.log_softmax(lg.float(), -1)
        t = torch.tensor(tgt)
        out += ((lp.gather(2, t.clamp(min=0)[..., None])[..., 0]) * (t >= 0)).sum(1).tolist()
    return out


fast_t, naive_t, diffs = [], [], []
for u in users:
    p = next_item_prompt(tables, split, u, tok, names=names)
    cands = [p.target, *negs[u]]
    t0 = time.perf_counter()
    with torch.no_grad(), ctx(): hits = rank_candidates(model, p, trie, cands, ids)
    fast_t.append((time.perf_counter() - t0) / len(cands))
    sc = {h.keys[0]: h.score for h in hits}
    sub = cands[:a.naive_candidates]
    t0 = time.perf_counter(); nv = naive(p, sub); naive_t.append((time.perf_counter() - t0) / len(sub))
    diffs.append(max(abs(sc[c] - v) / (1 + abs(v)) for c, v in zip(sub, nv)))   # relative: titles sum 5-30 tokens
    print(f'user {u}: prompt {len(p.part_a)} tokens, fast {1 / fast_t[-1]:.1f} cand/s, naive {1 / naive_t[-1]:.1f} cand/s, '
          f'max relative diff {diffs[-1]:.2e}', flush=True)

beam_t = []
for u in users[:a.beam_users]:
    p = next_item_prompt(tables, split, u, tok, names=names)
    t0 = time.perf_counter()
    with ctx(): generate_entities(model, p, trie, ids, k=10, num_beams=20, exclude_seen=True)
    beam_t.append(time.perf_counter() - t0)
    print(f'user {u}: beam search {beam_t[-1]:.1f} s', flush=True)

tol = 2e-2 if a.bf16 else 1e-4   # bf16 rounds each logit (~3 significant digits)
assert max(diffs) < tol, f'the two scorers disagree: {max(diffs)}'
res = dict(candidates_per_s=1 / statistics.median(fast_t), naive_candidates_per_s=1 / statistics.median(naive_t),
           beam_users_per_s=1 / statistics.median(beam_t), max_score_diff=max(diffs), bf16=a.bf16, users=len(users),
           model='smollm2-135m', layout=PRETRAINED_LAYOUT)
res['ratio'] = res['candidates_per_s'] / res['naive_candidates_per_s']
print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}))
