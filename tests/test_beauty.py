"""The Amazon Beauty runner: published figures, configurations, the command's errors, baselines on data without ratings."""
import json, os, subprocess, sys
from pathlib import Path
import pytest
from recsysllm_nb.beauty import (PUBLISHED, published_rows, inconsistent, beauty_config, comparison_tables, run_beauty,
                                 title_collisions)
from recsysllm_nb.baselines import run_baselines, Popularity, MF, BPRMF
from recsysllm_nb.data import leave_one_out
from recsysllm_nb.sequences import load_sequences

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / 'data_samples' / 'seq_fixture'
BEAUTY = Path(os.environ.get('RECSYSLLM_BEAUTY', ROOT.parent / 'shared' / 'data' / 'amazon-beauty'))


def test_published_rows_shape_and_marking():
    rows = published_rows()
    n = sum(len(PUBLISHED[f]['rows']) * len(PUBLISHED[f]['metrics']) for f in PUBLISHED)
    assert len(rows) == n
    assert all(r['model'].endswith('(published)') and r['users'] == 'published' for r in rows)
    assert {r['prompts'] for r in rows if r['model'].startswith(('P5', 'RecSysLLM'))} == {'seen', 'unseen'}


def test_inconsistent_flags_impossible_rankings():
    ok = [dict(family='direct', model='m', prompts='-', metric=k, value=v)
          for k, v in (('HR@1', 0.1), ('HR@5', 0.3), ('NDCG@5', 0.2), ('HR@10', 0.4), ('NDCG@10', 0.25))]
    assert inconsistent(ok) == []
    bad = [dict(r, value=0.5) if r['metric'] == 'NDCG@10' else r for r in ok]
    assert inconsistent(bad) == ['m, - prompts, direct: NDCG@10=0.5 > HR@10=0.4']
    assert len(inconsistent(published_rows())) == 1     # the paper's unseen-prompt RecSysLLM HR@1 on Beauty


def test_gpu_preset_needs_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match='checkpoint='): beauty_config('gpu')
    (tmp_path / 'config.json').write_text('{}')
    with pytest.raises(FileNotFoundError, match='no tokenizer there'): beauty_config('gpu', checkpoint=str(tmp_path))
    (tmp_path / 'tokenizer.json').write_text('{}')
    cfg = beauty_config('gpu', checkpoint=str(tmp_path))
    assert (cfg.lora_rank, cfg.n_users, cfg.bf16) == (8, None, True)


def test_command_names_a_missing_folder(tmp_path):
    exe = Path(sys.executable).with_name('recsysllm_beauty')
    cmd = [str(exe)] if exe.exists() else [sys.executable, '-c', 'from recsysllm_nb.beauty import recsysllm_beauty; recsysllm_beauty()']
    r = subprocess.run(cmd + [str(tmp_path / 'nowhere')], capture_output=True, text=True)
    assert r.returncode != 0 and 'no sequences.jsonl + items.json' in r.stderr and 'nowhere' in r.stderr


def test_rating_baselines_skip_data_without_ratings():
    t = load_sequences(FIXTURE); sp = leave_one_out(t, seed=0)
    res, fitted = run_baselines(t, sp, [Popularity(), MF(epochs=1, progress=False), BPRMF(epochs=1, progress=False)], parts=('test',))
    assert 'MF' not in set(res['model']) and 'MF' not in fitted        # nothing to fit: no rating column values
    assert set(res[res.task != 'fit']['task']) == {'sequential', 'direct'}


def test_comparison_marks_sources(tmp_path):
    r = run_beauty(FIXTURE, tmp_path, beauty_config(size='tiny', steps=2, batch_size=4, n_users=4, beams=10, vocab_size=800),
                   progress=False, baseline_models=[Popularity()])
    seq = r['comparison']['sequential']
    assert set(seq['source']) == {'measured (cpu config, 4 users)', 'published (paper), not reproduced'}
    assert set(seq[seq.source.str.startswith('measured')]['model']) == {'RecSysLLM', 'Popularity'}
    res = json.loads((tmp_path / 'results.json').read_text())
    assert res['published_inconsistent'] and len(res['users']) == 4 and res['config']['users_evaluated'] == 4
    assert comparison_tables(r['rows'], r['beauty_config'])['direct'].shape == r['comparison']['direct'].shape


@pytest.mark.skipif(not (BEAUTY / 'sequences.jsonl').exists(), reason=f'Amazon Beauty not found at {BEAUTY}')
def test_beauty_titles_collide_as_documented():
    t = load_sequences(BEAUTY)
    assert title_collisions(t) == dict(items_sharing_a_title=57, shared_titles=28)


def test_gpu_preset_path_lora_on_a_checkpoint(tmp_path):
    "The GPU preset's path on CPU at a toy budget: a saved model + tokenizer as the checkpoint, LoRA rank 8, merged for evaluation."
    from recsysllm_nb.beauty import corpus_tokenizer
    from recsysllm_nb.train import build_model
    t = load_sequences(FIXTURE); sp = leave_one_out(t, seed=0)
    ck = tmp_path / 'ck'
    tok = corpus_tokenizer(t, sp, ck, vocab_size=800)
    build_model('glm', 'tiny', len(tok), max_length=512, pad_token_id=tok.pad_token_id).save_pretrained(ck)
    r = run_beauty(FIXTURE, tmp_path / 'run', beauty_config('gpu', checkpoint=str(ck), steps=2, batch_size=4, n_users=4,
                                                            beams=10, bf16=False, max_length=256),
                   progress=False, baseline_models=[Popularity()])
    assert r['training']['model'].peft_config['default'].r == 8
    assert set(r['comparison']['sequential']['source']) >= {'measured (gpu config, 4 users)'}
    assert json.loads((tmp_path / 'run' / 'results.json').read_text())['run']['beauty_config']['lora_rank'] == 8
