"""recsysllm_nb.train: LoRA / QLoRA training, save / load / merge, exact resume, the command line, shipped configs."""
import json, os, subprocess, sys, warnings
from pathlib import Path
import numpy as np
import pytest
import torch
import transformers
from recsysllm_nb.train import MixedDataset, TrainConfig, train
from recsysllm_nb.lora_gpu import check_deepspeed_config
from recsysllm_nb.models import apply_lora, build_model, is_quantized, trainable_parameters
from recsysllm_nb.collate import RecCollator, RecDataset
from recsysllm_nb.entities import tokenize_samples
from recsysllm_nb.tokenizer import demo_tokenizer
from recsysllm_nb.data import load_ml100k, leave_one_out
from recsysllm_nb.textualize import textualize_corpus

ROOT = Path(__file__).resolve().parents[1]
transformers.logging.set_verbosity_error()
warnings.filterwarnings('ignore', category=FutureWarning)

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "Demo tokenizer and the tokenized users of the ML-100K training split."
    d = tmp_path_factory.mktemp('tok')
    tok = demo_tokenizer(d / 'tokenizer')
    tables = load_ml100k()
    toks = tokenize_samples(textualize_corpus(tables, leave_one_out(tables), users=tables.users['user_id'][:64]), tok)
    return tok, d / 'tokenizer', RecDataset(toks)

def _fixed(ds, n_items=8, steps=10, batch=8):
    "A fixed set of `n_items` users with fixed masks (idx repeats), enough for `steps` batches in one epoch."
    return [ds[i % n_items] for i in range(steps * batch)]

def _falls(losses, by):
    return np.mean(losses[-3:]) < np.mean(losses[:3]) - by

@pytest.mark.parametrize('kind', ['glm', 'llama', 'gpt2'])
def test_lora_loss_falls(data, tmp_path, kind):
    tok, _, ds = data
    res = train(TrainConfig(model=kind, steps=10, lr=1e-2, batch_size=8, lora_rank=8, output_dir=str(tmp_path), progress=False),
                dataset=_fixed(ds), tokenizer=tok)
    assert _falls(res.losses, 0.1), res.losses
    n_train, n_all = trainable_parameters(res.trainer.model)
    assert 0 < n_train < n_all / 5
    assert (res.final_dir / 'adapter_model.safetensors').exists()

def test_qlora_loss_falls(data, tmp_path):
    tok, _, ds = data
    model = build_model('glm', vocab_size=len(tok), qlora=True)
    assert is_quantized(model)
    assert {type(m).__name__ for n, m in model.named_modules() if n.endswith('query_key_value')} == {'Linear4bit'}
    model = apply_lora(model, rank=8)
    res = train(TrainConfig(model='glm', steps=10, lr=1e-2, batch_size=8, qlora=True, output_dir=str(tmp_path), progress=False),
                dataset=_fixed(ds), tokenizer=tok, model=model)
    assert _falls(res.losses, 0.1), res.losses

def test_full_training_loss_falls(data, tmp_path):
    tok, _, ds = data
    res = train(TrainConfig(model='glm', steps=10, lr=3e-3, batch_size=8, lora_rank=0, output_dir=str(tmp_path), progress=False),
                dataset=_fixed(ds), tokenizer=tok)
    assert _falls(res.losses, 1.0), res.losses
    assert (res.final_dir / 'model.safetensors').exists()

@pytest.mark.parametrize('kind', ['glm', 'llama'])
def test_save_load_merge_roundtrip(data, tmp_path, kind):
    from peft import PeftModel
    tok, _, ds = data
    batch = RecCollator(tok, max_length=256)([ds[i] for i in range(4)])
    res = train(TrainConfig(model=kind, steps=4, lr=1e-2, batch_size=8, lora_rank=8, output_dir=str(tmp_path), progress=False),
                dataset=_fixed(ds, steps=4), tokenizer=tok)
    peft_model = res.trainer.model.eval()
    with torch.no_grad(): want = peft_model(**batch).logits
    assert any(p.abs().sum() > 0 for n, p in peft_model.named_parameters() if 'lora_B' in n)   # the adapters moved
    base = build_model(kind, vocab_size=len(tok), seed=0, pad_token_id=tok.pad_token_id)   # the same fresh base (seeded)
    loaded = PeftModel.from_pretrained(base, str(res.final_dir)).eval()
    with torch.no_grad(): got = loaded(**batch).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    merged = loaded.merge_and_unload().eval()
    assert not any('lora_' in n for n, _ in merged.named_parameters())
    with torch.no_grad(): got = merged(**batch).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)

def test_resume_equals_uninterrupted(data, tmp_path):
    "12 steps in one go == 6 steps, interrupted (checkpoint), resumed to 12; 40 items / batch 8 crosses epochs; dropout on."
    tok, _, ds = data
    mix = MixedDataset({'a': ds, 'b': RecDataset(ds.samples[:10])}, {'a': 3, 'b': 1}, length=40, seed=0)
    base = dict(model='glm', steps=12, lr=3e-3, batch_size=8, lora_rank=8, dropout=0.1, save_steps=6, progress=False)
    full = train(TrainConfig(**base, output_dir=str(tmp_path / 'full')), dataset=mix, tokenizer=tok)
    part = train(TrainConfig(**base, output_dir=str(tmp_path / 'part'), stop_at=6), dataset=mix, tokenizer=tok)
    assert len(part.losses) == 6 and part.final_dir is None
    again = train(TrainConfig(**base, output_dir=str(tmp_path / 'part'), resume='last'), dataset=mix, tokenizer=tok)
    assert len(again.losses) == 12
    np.testing.assert_allclose(again.losses, full.losses, rtol=0, atol=1e-6)

def test_resume_full_training(data, tmp_path):
    tok, _, ds = data
    base = dict(model='llama', steps=6, lr=3e-3, batch_size=4, lora_rank=0, save_steps=3, progress=False)
    full = train(TrainConfig(**base, output_dir=str(tmp_path / 'full')), dataset=ds, tokenizer=tok)
    train(TrainConfig(**base, output_dir=str(tmp_path / 'part'), stop_at=3), dataset=ds, tokenizer=tok)
    again = train(TrainConfig(**base, output_dir=str(tmp_path / 'part'), resume=str(tmp_path / 'part' / 'checkpoint-3')),
                  dataset=ds, tokenizer=tok)
    np.testing.assert_allclose(again.losses, full.losses, rtol=0, atol=1e-6)

def test_mixed_dataset():
    a, b = [dict(x=i) for i in range(5)], [dict(x=-i) for i in range(3)]
    m = MixedDataset({'a': a, 'b': b}, {'a': 1, 'b': 3}, length=2000, seed=0)
    assert abs(m.counts()['b'] / 2000 - 0.75) < 0.04
    assert [m[i] for i in range(50)] == [MixedDataset({'a': a, 'b': b}, {'a': 1, 'b': 3}, length=2000, seed=0)[i] for i in range(50)]
    firsts = m.index[m.source == 1][:3]
    assert sorted(firsts) == [0, 1, 2]   # a source is read in passes: a permutation before any repeat
    k, j = int(m.source[7]), int(m.index[7])
    assert m[7] == {**(a, b)[k][j], 'idx': 7}   # the source's item and its place in the stream, nothing more
    with pytest.raises(TypeError, match='expected a dict'): MixedDataset([[1, 2]])[0]
    with pytest.raises(ValueError, match='empty'): MixedDataset({'a': a, 'b': []})

def test_train_config_errors():
    with pytest.raises(ValueError, match='lora_rank'): TrainConfig(qlora=True, lora_rank=0)
    with pytest.raises(ValueError, match='model'): TrainConfig(model='bert')
    with pytest.raises(FileNotFoundError, match='checkpoint'):
        train(TrainConfig(resume='/nonexistent/checkpoint-1', steps=1, progress=False), dataset=[dict(x=1)], tokenizer=None,
              model=torch.nn.Linear(1, 1), collator=lambda x: x)

def test_shipped_configs():
    import yaml
    z2, z3 = (check_deepspeed_config(ROOT / 'configs' / f) for f in ('ds_zero2.json', 'ds_zero3.json'))
    assert (z2['zero_optimization']['stage'], z3['zero_optimization']['stage']) == (2, 3)
    for f in ('accelerate_multi_gpu.yaml', 'accelerate_deepspeed_zero2.yaml', 'accelerate_deepspeed_zero3.yaml'):
        cfg = yaml.safe_load((ROOT / 'configs' / f).read_text())
        assert cfg['num_processes'] >= 2 and cfg['distributed_type'] in ('MULTI_GPU', 'DEEPSPEED')
        if cfg['distributed_type'] == 'DEEPSPEED': assert (ROOT / cfg['deepspeed_config']['deepspeed_config_file']).exists()

def _cli():
    exe = Path(sys.executable).parent / 'recsysllm_train'
    return [str(exe)] if exe.exists() else [sys.executable, '-m', 'recsysllm_nb.train']

def test_cli_single_process(data, tmp_path):
    "The launchers' entry point, one CPU process: a few LoRA steps on a tiny model, then a resume to more steps."
    _, tok_dir, _ = data
    env = dict(os.environ, TOKENIZERS_PARALLELISM='false', HF_HUB_OFFLINE='1', CUDA_VISIBLE_DEVICES='')
    args = ['--model', 'glm', '--size', 'tiny', '--batch_size', '4', '--max_length', '128', '--tokenizer', str(tok_dir),
            '--output_dir', str(tmp_path / 'run'), '--save_steps', '2', '--no_progress']
    res = subprocess.run(_cli() + args + ['--steps', '2'], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out['steps'] == 2 and np.isfinite(out['last_loss'])
    assert (tmp_path / 'run' / 'final' / 'adapter_config.json').exists() and (tmp_path / 'run' / 'checkpoint-2').is_dir()
    res = subprocess.run(_cli() + args + ['--steps', '4', '--resume', 'last'], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])['steps'] == 4
    assert len(json.loads((tmp_path / 'run' / 'losses.json').read_text())) == 4

def test_cli_help():
    res = subprocess.run(_cli() + ['--help'], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and '--lora_rank' in res.stdout and '--qlora' in res.stdout

def test_cpu_processes():
    "A launcher's several processes on a machine without CUDA train data-parallel over gloo (tests/test_ddp.py runs them)."
    from recsysllm_nb.train import cpu_processes, training_args
    assert cpu_processes({'WORLD_SIZE': '2'}) == (not torch.cuda.is_available())
    assert not cpu_processes({}) and not cpu_processes({'WORLD_SIZE': '1'})
    assert training_args(TrainConfig(output_dir='unused', progress=False)).use_cpu is False   # one process: as before
