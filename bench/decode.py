"""Decoding benchmark (recsysllm_nb.trie).

1. Beam search with 20 beams over the 1,682 MovieLens-100K titles for a real user's next-item prompt, constrained by the
   trie against unconstrained, on the same model in the same run. Both runs make the same number of decoding steps
   (the unconstrained one gets min_new_tokens = max_new_tokens = the constrained run's steps), so the ratio measures the
   cost of the constraint (logits processor) per step; dynamic positions are on in both. Plain `generate` with the
   model's own position rule (no trie at all) is timed too. Each round times the variants back to back (alternating
   order); medians are reported, and `ratio` is the median of the per-round ratios, which cancels the drift of a
   machine shared with other jobs (the ratio of the medians is printed too).
2. Trie build time and memory for 100,000 synthetic titles (words of ML-100K titles, 1-5 words each).

Target: ratio <= 1.15, invalid_items == 0, trie_build_s_100k < 3. The LAST line printed is one JSON object.
Usage: python bench/decode.py [--rounds 15] [--size small] [--threads N]
"""
import argparse, json, statistics, time, tracemalloc

import numpy as np
import torch

from recsysllm_nb.data import load_ml100k, leave_one_out
from recsysllm_nb.tokenizer import demo_tokenizer, special_ids
from recsysllm_nb.glm import GLMForCausalLM, tiny_glm_config
from recsysllm_nb.textualize import item_names
from recsysllm_nb.trie import EntityTrie, TrieLogitsProcessor, entity_token_ids
from recsysllm_nb.decode import batch_prompts, generate_entities, next_item_prompt

SIZES = {'tiny': dict(num_layers=2, hidden_size=64, num_attention_heads=4),     # the train module's presets
         'small': dict(num_layers=4, hidden_size=128, num_attention_heads=4),
         'base': dict(num_layers=6, hidden_size=256, num_attention_heads=8)}


def synthetic_titles(words, n, seed=0):
    "n distinct titles of 1-5 words drawn from `words`."
    rng, out, seen = np.random.default_rng(seed), [], set()
    W = np.array(words)
    while len(out) < n:
        t = ' '.join(W[rng.integers(0, len(W), rng.integers(1, 6))])
        if t not in seen: seen.add(t); out.append(t)
    return out


def fast_token_ids(titles, tok):
    """Token ids of ' ' + title in one batched call, minus a leading whitespace-only token: in the training text such a
    token (a space the vocabulary cannot merge with the title's first word) lies outside the entity. Checked against
    `entity_token_ids` (the training path) on a sample below."""
    enc = tok([' ' + t for t in titles], add_special_tokens=False)['input_ids']
    bare = {i for t, i in tok.get_vocab().items() if not tok.convert_tokens_to_string([t]).strip()}
    return [np.asarray(x[1:] if x and x[0] in bare else x, np.int64) for x in enc]


def main(rounds=15, size='small', threads=None, n_titles=100_000, user='1'):
    if threads: torch.set_num_threads(threads)
    tok = demo_tokenizer(); ids = special_ids(tok)
    tables = load_ml100k(); split = leave_one_out(tables); names = item_names(tables.items)
    t0 = time.perf_counter(); trie = EntityTrie.from_names(names, tok); t_small = time.perf_counter() - t0
    torch.manual_seed(0)
    model = GLMForCausalLM(tiny_glm_config(vocab_size=len(tok), max_sequence_length=256, **SIZES[size])).eval()
    prompt = next_item_prompt(tables, split, user, tok, names=names)

    calls = []
    hook = model.register_forward_pre_hook(lambda *a: calls.append(1))
    calls.clear(); generate_entities(model, prompt, trie, ids, k=20, num_beams=20)          # warm-up, count the steps
    steps = len(calls)                 # forward passes (prefill included) = the most tokens a beam got
    hook.remove()

    def constrained():
        return generate_entities(model, prompt, trie, ids, k=20, num_beams=20, valid_only=False)   # stops by itself

    def unconstrained():
        return generate_entities(model, prompt, trie, ids, k=20, num_beams=20, constrain=False, valid_only=False,
                                 max_new_tokens=steps, min_new_tokens=steps)

    inputs = batch_prompts([prompt], ids)
    def plain():   # the model's own generate: no trie, no position hook (GLM's rule: intra + 1 per token)
        with torch.no_grad():
            return model.generate(**inputs, num_beams=20, num_return_sequences=20, max_new_tokens=steps,
                                  min_new_tokens=steps, eos_token_id=ids.eop, pad_token_id=ids.pad, length_penalty=0.0)

    times = {'constrained': [], 'unconstrained': [], 'plain': []}
    cpus = {k: [] for k in times}
    fns = {'constrained': constrained, 'unconstrained': unconstrained, 'plain': plain}
    unconstrained(); plain()                                                                # warm-up
    hits = None
    for r in range(rounds):
        order = list(fns) if r % 2 == 0 else list(fns)[::-1]
        for name in order:
            t0, c0 = time.perf_counter(), time.process_time()
            out = fns[name]()
            times[name].append(time.perf_counter() - t0); cpus[name].append(time.process_time() - c0)
            if name == 'constrained': hits = out
    med = {k: statistics.median(v) for k, v in times.items()}
    # the constraint's own cost, without the model: one processor call on 20 beams in the middle of titles
    rows = [trie.tokens_of[h.keys[0]][:2] for h in hits if h.valid][:20]
    rows = [r + (0,) * (2 - len(r)) for r in rows]
    ids_in = torch.cat([inputs['input_ids'].repeat(len(rows), 1), torch.tensor(rows)], 1)
    proc, sc = TrieLogitsProcessor(trie, inputs['input_ids'].shape[1]), torch.zeros(len(rows), len(tok))
    t0 = time.perf_counter()
    for _ in range(200): proc(ids_in, sc)
    proc_ms = (time.perf_counter() - t0) / 200 * 1000
    invalid = sum(not h.valid for h in hits)
    free = unconstrained()

    # 100,000 synthetic titles
    words = sorted({w for t in tables.items['title'] for w in t.replace(',', ' ').replace(':', ' ').split() if w.isalpha()})
    titles = synthetic_titles(words, n_titles)
    t0 = time.perf_counter()
    seqs = fast_token_ids(titles, tok)
    t_tok = time.perf_counter() - t0
    check = entity_token_ids(titles[:5000], tok)             # the training-context path (slow) on a sample
    if not all(np.array_equal(a, b) for a, b in zip(check, seqs)):
        print('   (fast tokenization disagrees with entity_token_ids on the sample: using entity_token_ids for all)')
        t0 = time.perf_counter(); seqs = entity_token_ids(titles, tok); t_tok = time.perf_counter() - t0
    keys = [str(i) for i in range(n_titles)]
    builds, cpu = [], []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        big = EntityTrie(seqs, keys, titles, ids.eop)
        builds.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
        del big
    tracemalloc.start()
    big = EntityTrie(seqs, keys, titles, ids.eop)
    mb = tracemalloc.get_traced_memory()[0] / 2 ** 20
    tracemalloc.stop()
    t_build = statistics.median(builds)

    ratio = statistics.median(c / u for c, u in zip(times['constrained'], times['unconstrained']))
    print(f'== decoding: GLM {size} ({sum(p.numel() for p in model.parameters()):,} parameters), torch threads '
          f'{torch.get_num_threads()}, user {user}, prompt {len(prompt.part_a) + 1} tokens, 20 beams, {steps} forward passes each')
    print(f'   pool: {trie} (built in {t_small:.2f} s)')
    for k in ('constrained', 'unconstrained', 'plain'):
        print(f'   {k:>13}: median {med[k]:.3f} s over {rounds} rounds ({med[k] / steps * 1000:.1f} ms per forward); '
              f'CPU median {statistics.median(cpus[k]):.3f} s')
    print(f'   ratio constrained / unconstrained = {ratio:.3f} (target <= 1.15), the median of the per-round ratios (each '
          f"round times both back to back, so load drift cancels); ratio of the medians {med['constrained'] / med['unconstrained']:.3f}; "
          f"constrained / plain generate {statistics.median(c / p for c, p in zip(times['constrained'], times['plain'])):.3f}")
    print(f'   the trie logits processor alone: {proc_ms:.2f} ms per step for {len(rows)} beams')
    print(f'   invalid items: constrained {invalid} of {len(hits)}, unconstrained {sum(not h.valid for h in free)} of {len(free)}')
    print(f'== trie of {n_titles:,} synthetic titles ({np.mean([len(s) for s in seqs]):.1f} tokens each, tokenized in '
          f'{t_tok:.2f} s): build median {t_build:.2f} s of {[round(b, 2) for b in builds]} (CPU {statistics.median(cpu):.2f} s; '
          f'target < 3 s), '
          f'{mb:.1f} MB traced ({big})')
    print(json.dumps(dict(constrained_s=round(med['constrained'], 4), unconstrained_s=round(med['unconstrained'], 4),
                          ratio=round(ratio, 4), invalid_items=int(invalid), trie_build_s_100k=round(t_build, 3),
                          trie_mb_100k=round(mb, 1))))


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=15, help='timed rounds per variant (medians reported)')
    ap.add_argument('--size', default='small', choices=list(SIZES), help='GLM size preset (random weights)')
    ap.add_argument('--threads', type=int, default=None, help='torch threads (default: torch decides)')
    ap.add_argument('--n_titles', type=int, default=100_000, help='synthetic titles for the trie build')
    ap.add_argument('--user', default='1', help='MovieLens-100K user of the prompt')
    a = ap.parse_args()
    main(a.rounds, a.size, a.threads, a.n_titles, a.user)
