"""A seeded run gives the same numbers in every process: the method's new embedding rows, the LoRA matrices and the
candidate scores do not depend on what drew random numbers before, nor on Python's string-hash seed (set order)."""
import json, os, subprocess, sys

SCRIPT = r'''
import hashlib, json, sys, numpy as np, torch
from transformers import AutoModelForCausalLM
torch.rand(int(sys.argv[1]))                                  # a different amount of earlier random draws per process
from recsysllm_nb.pretrained import load_pretrained
from recsysllm_nb.adapter import RecAdapterForCausalLM, tiny_base_config
from recsysllm_nb.models import apply_lora
from recsysllm_nb.tokenizer import SpecialIds
from recsysllm_nb.trie import EntityTrie
from recsysllm_nb.decode import Prompt, rank_candidates
digest = lambda ts: hashlib.md5(b''.join(t.detach().float().numpy().tobytes() for t in ts)).hexdigest()
lm, tok, new = load_pretrained()
out = dict(rows=digest([lm.get_input_embeddings().weight[new]]))
torch.manual_seed(0)
base = AutoModelForCausalLM.from_config(tiny_base_config('llama', vocab_size=40, max_positions=64))
m = RecAdapterForCausalLM.from_base(base).eval()
torch.rand(int(sys.argv[1]))
out['lora'] = digest([p for n, p in apply_lora(m, 4).named_parameters() if 'lora_A' in n])
rng = np.random.default_rng(0)
seqs = [tuple(rng.integers(10, 30, rng.integers(1, 5)).tolist()) for _ in range(40)]
ids = SpecialIds(mask=0, smask=1, gmask=2, sop=3, eop=4, pad=5, eos=6)
trie = EntityTrie(seqs, [f'k{i}' for i in range(40)], [f'name {i}' for i in range(40)], eop=ids.eop)
p = Prompt(np.array([7, 8, 0, 9, 11]), np.full(5, -1, np.int32), 2)
calls = []                                                    # the candidate batches, in the order they run
m.register_forward_pre_hook(lambda mod, a, kw: calls.append(kw['input_ids'].tolist()), with_kwargs=True)
cands = [f'k{i}' for i in range(40)]
with torch.autocast('cpu', dtype=torch.bfloat16):
    out['scores'] = {h.keys[0]: h.score for h in rank_candidates(m, p, trie, cands, ids, batch_size=3)}
out['batches'] = calls
calls.clear(); rank_candidates(m, p, trie, cands[::-1], ids, batch_size=3)
out['same_batches_reversed'] = calls == out['batches']
print(json.dumps(out))
'''


def _run(hash_seed, draws):
    env = dict(os.environ, PYTHONHASHSEED=str(hash_seed), OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, '-c', SCRIPT, str(draws)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_same_numbers_in_every_process():
    a, b = _run(1, 3), _run(2, 1000)
    assert a['rows'] == b['rows'], 'the new tokens\' embedding rows depend on earlier random draws'
    assert a['lora'] == b['lora'], 'the LoRA matrices depend on earlier random draws'
    assert a['batches'] == b['batches'], 'candidates are batched in an order that depends on the hash seed'
    assert a['scores'] == b['scores'], 'candidate scores depend on the process'
    assert a['same_batches_reversed'], 'the batches depend on the order the candidates are given in'
