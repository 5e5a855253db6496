"""Regenerate `data_samples/glm_parity/` from the public Hugging Face GLM code. Run by hand, never by the tests:

    .venv/bin/python tools/make_glm_parity_fixture.py <folder> [--out data_samples/glm_parity] [--origin URL]

<folder> holds the public GLM remote code, `modeling_glm.py` and `configuration_glm.py`, as published with THUDM's
glm-large / glm-10b checkpoints on the Hugging Face hub (or a repository that mirrors them). Nothing of it is copied
into this repository: the script imports it from <folder>, builds a tiny random GLM with it in float64 and saves

- `model.safetensors` + `config.json`: the weights in the Hugging Face GLM layout (keys `glm.*`) and GLM's own config,
- `reference.safetensors`: input ids, 2-D positions, the two mask forms and the logits the public code computes:
  `sep` form (attention_mask = Part A length per sample), full form (a [b, 1, l, l] 0/1 mask), and greedy
  incremental decoding through the public code's `mems` cache,
- `source.json`: where the code came from (sha256 of both files, git remote and commit when <folder> is a checkout),
  the torch / transformers versions, the seed and the weight scale.

The public code runs under transformers 5 as is; the one shim is how it is imported: its relative import of
`configuration_glm` (`.configuration_glm` on the hub, plain `configuration_glm` in some mirrors) is satisfied by
registering the config module under those names.
"""
from __future__ import annotations
import argparse, hashlib, importlib.util, json, subprocess, sys, types
from pathlib import Path
import torch
from recsysllm_nb.data import _atomic_dir

CONFIG = dict(num_layers=2, vocab_size=64, hidden_size=24, num_attention_heads=3, max_sequence_length=32,
              embedding_dropout_prob=0.0, attention_dropout_prob=0.0, output_dropout_prob=0.0,
              block_position_encoding=True, relative_encoding=False, output_predict=True, attention_scale=1.0)
SEED, SCALE, MASK, SOP, STEPS = 0, 0.5, 1, 2, 4
PUBLIC_FILES = ('modeling_glm.py', 'configuration_glm.py')
README = """# GLM parity fixture

A tiny GLM (2 layers, width 24, 3 heads, vocab 64, 32 positions) built in float64 with the public Hugging Face GLM
code (`modeling_glm.py` / `configuration_glm.py`, as published with THUDM's glm-large / glm-10b checkpoints; not
part of this repository), and the logits that code computes for it. Written by `tools/make_glm_parity_fixture.py`;
read by `tests/test_glm_parity.py` and `nbs/06a_glm_checkpoint.ipynb`.

- `model.safetensors`, `config.json`: the weights (Hugging Face GLM key names, `glm.*`) and GLM's own config fields.
  Weights are N(0, 0.5^2), LayerNorm weights 1 + N(0, 0.1^2), biases N(0, 0.1^2), seed 0: far from the init, so
  that the MLP's pre-activations reach the range where the tanh and erf forms of GELU differ.
- `reference.safetensors`:
  - `input_ids` [2, 16], `position_ids` [2, 2, 16] (inter, intra): two blank-infilling samples; sample 0 has Part A 10
    and one span of 6, sample 1 Part A 7 and spans of 4 and 5 (each span starts with [sop] = 2; [MASK] = 1);
  - `sep` [2] = Part A lengths; `logits_sep` [2, 16, 64]: the public code with `attention_mask=sep`;
  - `full_mask` [2, 1, 16, 16] 0/1 (sample 0: prefix-LM whose last 3 columns are padding; sample 1: Part A seen by
    all, each span causal and blind to the other span); `logits_full`: the public code with that mask;
  - `gen_input_ids` [2, 9] (Part A 8 with a [MASK] at 2 / 5, then [sop]), `gen_position_ids`, `gen_sep`:
    a prompt; `gen_prompt_logits` [2, 9, 64]: its logits; `gen_tokens` [2, 4]: the greedy tokens, fed one at a
    time through the public code's `mems` at `gen_step_position_ids` [2, 2, 4] (inter = the mask's position,
    intra 2, 3, ...); `gen_step_logits` [2, 4, 64]: the logits of those steps.
- `source.json`: sha256 of the two public files, where they came from, torch / transformers versions.
"""


def import_public(folder: Path):
    "The public `configuration_glm` and `modeling_glm` modules, imported from `folder` as package `public_glm`."
    pkg = types.ModuleType('public_glm'); pkg.__path__ = [str(folder)]
    sys.modules['public_glm'] = pkg
    mods = {}
    for name in ('configuration_glm', 'modeling_glm'):
        spec = importlib.util.spec_from_file_location(f'public_glm.{name}', folder / f'{name}.py')
        mod = importlib.util.module_from_spec(spec)
        for alias in (spec.name, name, f'glm_model.{name}'): sys.modules[alias] = mod   # relative / flat / mirrored
        if name == 'modeling_glm': sys.modules.setdefault('glm_model', pkg)
        spec.loader.exec_module(mod)
        mods[name] = mod
    return mods['configuration_glm'], mods['modeling_glm']


def randomize(model, gen):
    "Every weight N(0, SCALE^2); LayerNorm weights 1 + N(0, 0.1^2), every bias N(0, 0.1^2): far from the init."
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            r = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if 'layernorm' in name and name.endswith('weight'): p.copy_(1 + 0.1 * r)
            elif name.endswith('bias'): p.copy_(0.1 * r)
            else: p.copy_(SCALE * r)


def infill_inputs(gen, vocab):
    """Two samples of 16 tokens. 0: Part A 10 (mask at 3) + one span of 6; 1: Part A 7 (masks at 2, 5) + spans of 4, 5.
    Part B spans start with [sop]; inter-position = the span's mask, intra-position 1, 2, ..."""
    ids = torch.randint(5, vocab, (2, 16), generator=gen)
    pos = torch.zeros(2, 2, 16, dtype=torch.long)
    for i, (la, spans) in enumerate([(10, [(3, 6)]), (7, [(2, 4), (5, 5)])]):
        pos[i, 0, :la] = torch.arange(la)
        t = la
        for m, n in spans:
            ids[i, m], ids[i, t] = MASK, SOP
            pos[i, 0, t:t + n], pos[i, 1, t:t + n] = m, torch.arange(1, n + 1)
            t += n
    return ids, pos, torch.tensor([10, 7])


def full_mask():
    """[2, 1, 16, 16] 0/1. Sample 0: prefix-LM (Part A 10) whose last 3 columns are padding (no row sees them; the
    padding rows see Part A). Sample 1: Part A 7 seen by all, each Part B span causal and blind to the other span."""
    m = torch.zeros(2, 16, 16, dtype=torch.float64)
    m[0] = torch.tril(torch.ones(16, 16)); m[0, :, :10] = 1; m[0, :, 13:] = 0
    m[1, :, :7] = 1
    for a, b in [(7, 11), (11, 16)]: m[1, a:b, a:b] = torch.tril(torch.ones(b - a, b - a))
    return m[:, None]


@torch.no_grad()
def greedy_with_mems(model, ids, pos, sep, mask_pos, steps):
    "Prompt pass with the sep mask, then `steps` greedy tokens one at a time through the public code's `mems`."
    out = model(input_ids=ids, position_ids=pos, attention_mask=sep)
    prompt_logits, mems, toks, step_pos, step_logits = out.logits, out.mems, [], [], []
    nxt = prompt_logits[:, -1].argmax(-1)
    for k in range(steps):
        p = torch.stack([mask_pos, torch.full_like(mask_pos, 2 + k)], 1)[:, :, None]    # [b, 2, 1]
        out = model(input_ids=nxt[:, None], position_ids=p, attention_mask=sep, mems=mems)
        toks.append(nxt); step_pos.append(p); step_logits.append(out.logits); mems = out.mems
        nxt = out.logits[:, -1].argmax(-1)
    return prompt_logits, torch.stack(toks, 1), torch.cat(step_pos, -1), torch.cat(step_logits, 1)


def git_info(folder: Path) -> dict:
    def git(*a):
        r = subprocess.run(['git', '-C', str(folder), *a], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None
    return {'remote': git('remote', 'get-url', 'origin'), 'commit': git('rev-parse', 'HEAD')}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('folder', type=Path, help='folder with the public modeling_glm.py and configuration_glm.py')
    ap.add_argument('--out', type=Path, default=Path(__file__).resolve().parents[1] / 'data_samples/glm_parity')
    ap.add_argument('--origin', help='where <folder> came from, recorded in source.json (default: its git remote)')
    args = ap.parse_args(argv)
    for f in PUBLIC_FILES:
        if not (args.folder / f).exists(): sys.exit(f'error: {args.folder / f} does not exist')
    from safetensors.torch import save_file
    import transformers
    conf_mod, model_mod = import_public(args.folder.resolve())
    config = conf_mod.GLMConfig(**CONFIG)
    gen = torch.Generator().manual_seed(SEED)
    model = model_mod.GLMForConditionalGeneration(config).double().eval()
    randomize(model, gen)
    ids, pos, sep = infill_inputs(gen, CONFIG['vocab_size'])
    mask = full_mask()
    with torch.no_grad():
        logits_sep = model(input_ids=ids, position_ids=pos, attention_mask=sep).logits
        logits_full = model(input_ids=ids, position_ids=pos, attention_mask=mask).logits
    gl = 8                                                   # generation prompt: Part A 8 (mask at 2 / 5) + [sop]
    g_ids = torch.cat([torch.randint(5, CONFIG['vocab_size'], (2, gl), generator=gen), torch.full((2, 1), SOP)], 1)
    mask_pos = torch.tensor([2, 5]); g_ids[0, 2], g_ids[1, 5] = MASK, MASK
    g_pos = torch.stack([torch.cat([torch.arange(gl).expand(2, gl), mask_pos[:, None]], 1),
                         torch.cat([torch.zeros(2, gl, dtype=torch.long), torch.ones(2, 1, dtype=torch.long)], 1)], 1)
    g_sep = torch.tensor([gl, gl])
    g_prompt_logits, g_tokens, g_step_pos, g_step_logits = greedy_with_mems(model, g_ids, g_pos, g_sep, mask_pos, STEPS)
    with torch.no_grad():                                    # the public code agrees with itself without mems
        whole = model(input_ids=torch.cat([g_ids, g_tokens], 1), position_ids=torch.cat([g_pos, g_step_pos], -1),
                      attention_mask=g_sep).logits
    torch.testing.assert_close(whole[:, gl + 1:], g_step_logits, atol=1e-12, rtol=0)
    sha = {f: hashlib.sha256((args.folder / f).read_bytes()).hexdigest() for f in PUBLIC_FILES}
    git = git_info(args.folder)
    if args.origin: git['remote'] = args.origin
    src = dict(code=dict(sha256=sha, **git), torch=torch.__version__, transformers=transformers.__version__,
               seed=SEED, weight_scale=SCALE, dtype='float64', activation_in_public_code=repr(model_mod.gelu),
               generated_by='tools/make_glm_parity_fixture.py')

    def write(tmp: Path):
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / 'model.safetensors'))
        conf = {k: v for k, v in config.to_dict().items() if k in {*CONFIG, 'model_type', 'initializer_range'}}
        (tmp / 'config.json').write_text(json.dumps(conf, indent=1, sort_keys=True) + '\n')
        save_file(dict(input_ids=ids, position_ids=pos, sep=sep, full_mask=mask, logits_sep=logits_sep,
                       logits_full=logits_full, gen_input_ids=g_ids, gen_position_ids=g_pos, gen_sep=g_sep,
                       gen_prompt_logits=g_prompt_logits, gen_tokens=g_tokens, gen_step_position_ids=g_step_pos,
                       gen_step_logits=g_step_logits), str(tmp / 'reference.safetensors'))
        (tmp / 'source.json').write_text(json.dumps(src, indent=1) + '\n')
        (tmp / 'README.md').write_text(README)
    _atomic_dir(args.out, write)
    sizes = ', '.join(f'{p.name} {p.stat().st_size / 1024:.0f} KB' for p in sorted(args.out.iterdir()))
    print(f'wrote {args.out}: {sizes}')


if __name__ == '__main__': main()
