"""Benchmark: LoRA training speed of RecSysLLM on a real pre-trained LLM (SmolLM2-135M) on the CPU.

Ours: SmolLM2 behind the position adapter with the pre-trained defaults (`models.PRETRAINED_LAYOUT`,
`models.PRETRAINED_PREFIX_LM`: 3 position rows, the 4-D attention mask built from `positions.prefix_lm_mask`, the inter /
intra tables and the new token rows trained), LoRA r=8 on q/k/v/o/gate/up/down through `models.apply_lora`, the
blank-infilling loss. Baseline, same run: plain peft LoRA (same rank and modules) on the same `LlamaForCausalLM`,
ordinary causal-LM training (2-D padding mask, shifted loss) on the same token ids. Batches: RecCollator on real
ML-100K users. Each round runs one optimizer step of each, alternating; tokens/s counts the non-padding tokens.
Medians over rounds; `ratio` = ours / baseline (target >= 0.9). `peak_mb`: peak resident memory of the process.

Last line: JSON with `tokens_per_s`, `baseline_tokens_per_s`, `ratio`, `peak_mb`.
"""
import argparse, copy, json, resource, statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
from peft import LoraConfig, get_peft_model
from recsysllm_nb.pretrained import load_pretrained
from recsysllm_nb.adapter import RecAdapterForCausalLM, lora_targets
from recsysllm_nb.models import apply_lora, PRETRAINED_LAYOUT, PRETRAINED_PREFIX_LM
from recsysllm_nb.masking import MaskConfig
from recsysllm_nb.collate import RecCollator
from recsysllm_nb.layouts import ml100k_examples

ap = argparse.ArgumentParser()
ap.add_argument('--rounds', type=int, default=6)
ap.add_argument('--batch_size', type=int, default=4)
ap.add_argument('--max_length', type=int, default=128)
ap.add_argument('--bf16', action='store_true')
a = ap.parse_args()

torch.manual_seed(0)
lm, tok, new = load_pretrained()
base_lm = copy.deepcopy(lm)
ours = apply_lora(RecAdapterForCausalLM.from_base(lm, layout=PRETRAINED_LAYOUT, prefix_lm=PRETRAINED_PREFIX_LM),
                  rank=8, dropout=0.0, token_indices=new).train()
plain = get_peft_model(base_lm, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=lora_targets(base_lm))).train()
col = RecCollator(tok, MaskConfig(), a.max_length, 0, layout=PRETRAINED_LAYOUT)
ex = ml100k_examples(tok, range(1, a.batch_size * (a.rounds + 1) + 1))
batches = [col(ex[i:i + a.batch_size]) for i in range(0, len(ex), a.batch_size)]
opt_o = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=1e-4)
opt_p = torch.optim.AdamW([p for p in plain.parameters() if p.requires_grad], lr=1e-4)
ctx = (lambda: torch.autocast('cpu', dtype=torch.bfloat16)) if a.bf16 else (lambda: torch.autocast('cpu', enabled=False))


def step(model, opt, kw):
    t = time.perf_counter()
    with ctx(): loss = model(**kw).loss
    loss.backward(); opt.step(); opt.zero_grad()
    return time.perf_counter() - t


ts_o, ts_p = [], []
for r, b in enumerate(batches):
    n = int(b['attention_mask'].sum())
    plain_kw = dict(input_ids=b['input_ids'], attention_mask=b['attention_mask'],
                    labels=b['input_ids'].masked_fill(b['attention_mask'] == 0, -100))
    o = step(ours, opt_o, b); p = step(plain, opt_p, plain_kw)
    if r: ts_o.append(n / o); ts_p.append(n / p)      # round 0 is the warm-up
    print(f'round {r}: {n} tokens, ours {n / o:.0f} tok/s, plain LoRA {n / p:.0f} tok/s', flush=True)
res = dict(tokens_per_s=statistics.median(ts_o), baseline_tokens_per_s=statistics.median(ts_p),
           peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, bf16=a.bf16,
           batch=f'{a.batch_size}x{a.max_length}', layout=PRETRAINED_LAYOUT, prefix_lm=PRETRAINED_PREFIX_LM)
res['ratio'] = res['tokens_per_s'] / res['baseline_tokens_per_s']
print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}))
