"""Training-step throughput: our GLM (2-D positions + prefix-LM mask) against a plain causal LM of the same size.

Forward + backward tokens per second of `recsysllm_nb.glm.GLMForCausalLM` on a blank-infilling batch (Part A + Part B,
2-D positions, prefix-LM mask built inside the model) against `transformers.GPT2LMHeadModel` (same width, depth, heads,
vocab and n_positions, SDPA attention, causal) on a batch of the same shape. The two run alternately in the same process
(the order flips every round) and each figure is the median over rounds.

    .venv/bin/python bench/train_step.py                 # 4 x 256 x 4 heads, batch 8 x 256, 2 CPU threads
    .venv/bin/python bench/train_step.py --layers 6 --hidden 384 --rounds 9

The last line printed is one JSON object: tokens_per_s, baseline_tokens_per_s (medians), ratio (their quotient,
ours / baseline), peak_mb (process peak RSS on CPU, peak CUDA allocation on GPU). The summary also gives the median of
the per-round ratios, which is steadier when other processes share the cores.
"""
import argparse, json, resource, statistics, sys, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402
from recsysllm_nb.glm import GLMConfig, GLMForCausalLM  # noqa: E402


def glm_batch(b, l, vocab, seed=0):
    "A blank-infilling batch as the collator makes it: Part A (~80%) then Part B spans ([sop] + span), 2-D positions."
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (b, l), generator=g)
    pos = torch.zeros(b, 2, l, dtype=torch.long)
    labels = torch.full((b, l), -100, dtype=torch.long)
    prefix = torch.randint(int(0.75 * l), int(0.85 * l), (b,), generator=g)
    for i in range(b):
        la = int(prefix[i])
        pos[i, 0, :la] = torch.arange(la)
        t, span = la, 0
        while t < l:                      # spans of 4..12 tokens, each at its own mask position in Part A
            n = min(int(torch.randint(4, 13, (1,), generator=g)), l - t)
            pos[i, 0, t:t + n] = (span * 7 + 3) % la
            pos[i, 1, t:t + n] = torch.arange(1, n + 1)
            labels[i, t:t + n - 1] = ids[i, t + 1:t + n]
            t, span = t + n, span + 1
    return dict(input_ids=ids, position_ids=pos, attention_mask=torch.ones(b, l, dtype=torch.long), prefix_len=prefix,
                labels=labels)


def step(model, batch):
    "One forward + backward; gradients are dropped afterwards."
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()


def timed(model, batch, device):
    "(wall seconds, process CPU seconds) of one step."
    if device.type == 'cuda': torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    step(model, batch)
    if device.type == 'cuda': torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--layers', type=int, default=4)
    ap.add_argument('--hidden', type=int, default=256)
    ap.add_argument('--heads', type=int, default=4)
    ap.add_argument('--vocab', type=int, default=8192)
    ap.add_argument('--positions', type=int, default=512)
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--length', type=int, default=256)
    ap.add_argument('--rounds', type=int, default=7, help='timed rounds (each runs both models once)')
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--dropout', type=float, default=0.1, help='same dropout in both models (GLM and GPT-2 default 0.1)')
    ap.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    ap.add_argument('--position-encoding', default='learned', choices=['learned', 'rotary2d'])
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    device = torch.device(a.device)

    ours = GLMForCausalLM(GLMConfig(vocab_size=a.vocab, hidden_size=a.hidden, num_layers=a.layers, num_attention_heads=a.heads,
                                    max_sequence_length=a.positions, embedding_dropout_prob=a.dropout,
                                    attention_dropout_prob=a.dropout, output_dropout_prob=a.dropout,
                                    position_encoding=a.position_encoding)).to(device).train()
    base = GPT2LMHeadModel(GPT2Config(vocab_size=a.vocab, n_embd=a.hidden, n_layer=a.layers, n_head=a.heads,
                                      n_positions=a.positions, resid_pdrop=a.dropout, embd_pdrop=a.dropout,
                                      attn_pdrop=a.dropout, bos_token_id=0, eos_token_id=0,
                                      attn_implementation='sdpa')).to(device).train()
    assert base.config._attn_implementation == 'sdpa', base.config._attn_implementation
    n_ours, n_base = (sum(p.numel() for p in m.parameters()) for m in (ours, base))
    gb = {k: v.to(device) for k, v in glm_batch(a.batch, a.length, a.vocab).items()}
    bb = dict(input_ids=gb['input_ids'], attention_mask=gb['attention_mask'], labels=gb['input_ids'])
    tokens = a.batch * a.length

    for _ in range(a.warmup): step(ours, gb); step(base, bb)
    r_ours, r_base = [], []
    for r in range(a.rounds):           # alternate, flipping the order every round
        pair = [(ours, gb, r_ours), (base, bb, r_base)]
        for m, batch, acc in (pair if r % 2 == 0 else pair[::-1]): acc.append(timed(m, batch, device))
    (t_ours, c_ours), (t_base, c_base) = zip(*r_ours), zip(*r_base)
    tps, btps = tokens / statistics.median(t_ours), tokens / statistics.median(t_base)
    paired = statistics.median(tb / to for to, tb in zip(t_ours, t_base))   # same round, adjacent: robust to load drift
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if device.type == 'cuda'
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f'device {device} ({a.threads} threads), batch {a.batch} x {a.length} tokens, {a.layers} layers x {a.hidden} wide x '
          f'{a.heads} heads, vocab {a.vocab}, dropout {a.dropout}, {a.rounds} alternating rounds after {a.warmup} warm-up')
    print(f'  GLM ({a.position_encoding}, 2-D positions, prefix-LM mask): {n_ours / 1e6:.2f} M params, '
          f'median {statistics.median(t_ours) * 1e3:.0f} ms/step, {tps:,.0f} tokens/s  (all: '
          + ' '.join(f'{t * 1e3:.0f}' for t in t_ours) + ' ms)')
    print(f'  GPT-2 (sdpa, causal)                     : {n_base / 1e6:.2f} M params, '
          f'median {statistics.median(t_base) * 1e3:.0f} ms/step, {btps:,.0f} tokens/s  (all: '
          + ' '.join(f'{t * 1e3:.0f}' for t in t_base) + ' ms)')
    if device.type == 'cpu':            # CPU seconds are steadier than wall seconds when other processes share the cores
        print(f'  by process CPU time: ours {statistics.median(c_ours) * 1e3:.0f} ms/step, baseline '
              f'{statistics.median(c_base) * 1e3:.0f} ms/step, ratio {statistics.median(c_base) / statistics.median(c_ours):.3f}')
    print(f'  ratio ours / baseline = {tps / btps:.3f} (target >= 0.9; median of per-round ratios {paired:.3f}); '
          f'peak memory {peak_mb:.0f} MB '
          f'({"CUDA allocated" if device.type == "cuda" else "process RSS"})')
    print(json.dumps(dict(tokens_per_s=round(tps, 1), baseline_tokens_per_s=round(btps, 1), ratio=round(tps / btps, 4),
                          peak_mb=round(peak_mb, 1))))


if __name__ == '__main__':
    main()
