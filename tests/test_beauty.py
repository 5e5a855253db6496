"""The paper's Amazon benchmarks: published figures of Sports, Beauty and Toys, configurations, the command on any folder
(published rows only when named), its errors, baselines on data without ratings."""
import json, os, subprocess, sys
from dataclasses import replace
from pathlib import Path
import pytest
from recsysllm_nb.published import (PAPER_DATASETS, PAPER_TABLES, PUBLISHED, paper_dataset, published_rows, inconsistent,
                                    check_transcription, paper_data_note)
from recsysllm_nb.beauty import (bench_config, comparison_tables, run_bench, title_collisions, bench_cli, beauty_argv,
                                 pick_baselines)
from recsysllm_nb.baselines import run_baselines, Popularity, MF, BPRMF
from recsysllm_nb.data import leave_one_out
from recsysllm_nb.sequences import load_sequences

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / 'data_samples' / 'seq_fixture'      # synthetic: not one of the paper's datasets
BEAUTY = Path(os.environ.get('RECSYSLLM_BEAUTY', ROOT.parent / 'shared' / 'data' / 'amazon-beauty'))
PAPER = ROOT.parent / 'shared' / 'paper' / 'RecSysLLM-2308.10837.txt'
TOY = ['--size', 'tiny', '--steps', '2', '--batch_size', '4', '--n_users', '4', '--beams', '5', '--vocab_size', '800',
       '--baselines', 'Popularity', '--no_progress']   # a toy budget: seconds, not minutes


def _command(name):
    exe = Path(sys.executable).with_name(name)
    return [str(exe)] if exe.exists() else [sys.executable, '-c', 'import sys; from recsysllm_nb.beauty import bench_cli; '
                                            'bench_cli(sys.argv[1:])']


def test_published_rows_of_each_dataset():
    for d in PAPER_DATASETS:
        rows = published_rows(d)
        assert len(rows) == sum(len(PUBLISHED[d][f]) * len(PAPER_TABLES[f][1]) for f in PAPER_TABLES)
        assert all(r['model'].endswith('(published)') and r['users'] == 'published' for r in rows)
        assert {r['method'] for r in rows} == {f'paper Table 4, {d.capitalize()}', f'paper Table 7, {d.capitalize()}'}
        assert {r['prompts'] for r in rows if r['model'].startswith(('P5', 'RecSysLLM'))} == {'seen', 'unseen'}
    get = lambda d, f, m, ps, k: next(r['value'] for r in published_rows(d) if r['family'] == f and r['prompts'] == ps
                                      and r['model'] == f'{m} (published)' and r['metric'] == k)
    assert get('sports', 'sequential', 'SASRec', '-', 'HR@10') == 0.0350
    assert get('beauty', 'sequential', 'RecSysLLM', 'seen', 'HR@10') == 0.0667
    assert get('toys', 'direct', 'RecSysLLM', 'unseen', 'NDCG@10') == 0.1028
    assert published_rows(None) == [] and published_rows('none') == []
    assert paper_dataset('TOYS') == 'toys'
    with pytest.raises(ValueError, match="one of \\['sports', 'beauty', 'toys'\\] or 'none'"): paper_dataset('kitchen')


@pytest.mark.skipif(not PAPER.exists(), reason=f'paper text not found at {PAPER}')
def test_transcription_matches_the_paper_text_column_group_by_group():
    text = PAPER.read_text()
    assert check_transcription(text) == []
    toys = text.replace('0.0327 0.1423 0.0825 0.1926 0.1028', '0.0327 0.1423 0.0825 0.1926 0.1029')   # Toys, last row
    assert check_transcription(toys) == ['Table 7 toys, RecSysLLM (unseen): typed (0.0327, 0.1423, 0.0825, 0.1926, 0.1028), '
                                         'the text has RecSysLLM (0.0327, 0.1423, 0.0825, 0.1926, 0.1029)']
    assert check_transcription(text.replace('#Items 18,357', '#Items 18,358'))[0].startswith('Table 1 sports: typed')


def test_inconsistent_flags_rows_no_ranking_could_produce():
    ok = [dict(family='direct', model='m', prompts='-', metric=k, value=v)      # ranks: 10% 1st, 20% 3rd, 10% 7th
          for k, v in (('HR@1', 0.1), ('HR@5', 0.3), ('NDCG@5', 0.2), ('HR@10', 0.4), ('NDCG@10', 0.2 + 0.1 / 3))]
    assert inconsistent(ok) == []
    bad = [dict(r, value=0.5) if r['metric'] == 'NDCG@10' else r for r in ok]
    assert inconsistent(bad)[0].startswith('m, - prompts, direct: NDCG@10=0.5 > HR@10=0.4')
    low = [dict(r, value=0.21) if r['metric'] == 'NDCG@10' else r for r in ok]   # the 7th rank adds at least 0.1/log2(11)
    assert inconsistent(low) == ['m, - prompts, direct: NDCG@10 - NDCG@5=0.0100 outside [0.0289, 0.0356] '
                                 'that HR@10 - HR@5=0.1000 allows']
    rounded = [dict(r, value=round(r['value'], 4)) for r in ok]                 # printed to 4 decimals: still fine
    assert inconsistent(rounded) == []
    beauty = inconsistent(published_rows('beauty'))
    assert beauty[-1].startswith('RecSysLLM (published), unseen prompts, direct: HR@1=0.6072 > HR@5=0.1502')
    assert {d: len(inconsistent(published_rows(d))) for d in PAPER_DATASETS} == dict(sports=4, beauty=2, toys=2)


def test_paper_data_note_compares_sizes_only():
    t = load_sequences(FIXTURE)
    assert paper_data_note(t, None) is None
    assert 'measured on other data' in paper_data_note(t, 'sports') and '35,598 users' in paper_data_note(t, 'sports')


def test_gpu_preset_needs_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match='checkpoint='): bench_config('gpu')
    (tmp_path / 'config.json').write_text('{}')
    with pytest.raises(FileNotFoundError, match='no tokenizer there'): bench_config('gpu', checkpoint=str(tmp_path))
    (tmp_path / 'tokenizer.json').write_text('{}')
    cfg = bench_config('gpu', checkpoint=str(tmp_path))
    assert (cfg.lora_rank, cfg.n_users, cfg.bf16) == (8, None, True)


def test_command_names_a_missing_folder(tmp_path):
    r = subprocess.run(_command('recsysllm_bench') + [str(tmp_path / 'nowhere')], capture_output=True, text=True)
    assert r.returncode == 2 and 'no sequences.jsonl + items.json' in r.stderr and 'nowhere' in r.stderr
    assert 'Traceback' not in r.stderr


def test_bad_options_stop_with_one_line(tmp_path, capsys):
    for argv, msg in (([FIXTURE, '--paper', 'kitchen'], 'invalid choice'),
                      ([FIXTURE, '--baselines', 'Popularity,GRU4Rec'], "unknown baseline(s) ['gru4rec']"),
                      ([FIXTURE, '--preset', 'tpu'], "unknown preset 'tpu'")):
        with pytest.raises(SystemExit) as e: bench_cli(argv + ['--out', tmp_path / 'x'])
        err = capsys.readouterr().err
        assert e.value.code == 2 and msg in err and 'Traceback' not in err
    assert not (tmp_path / 'x').exists()       # nothing written before the options are checked


def test_beauty_alias_names_beauty():
    assert beauty_argv(['d']) == ['d', '--paper', 'beauty', '--out', 'runs/beauty']
    assert beauty_argv(['d', '--paper', 'none', '--out=o']) == ['d', '--paper', 'none', '--out=o']
    assert [m.name for m in pick_baselines('popularity,SASRec', progress=False)] == ['Popularity', 'SASRec']


def test_rating_baselines_skip_data_without_ratings():
    t = load_sequences(FIXTURE); sp = leave_one_out(t, seed=0)
    res, fitted = run_baselines(t, sp, [Popularity(), MF(epochs=1, progress=False), BPRMF(epochs=1, progress=False)],
                                parts=('test',))
    assert 'MF' not in set(res['model']) and 'MF' not in fitted        # nothing to fit: no rating column values
    assert set(res[res.task != 'fit']['task']) == {'sequential', 'direct'}


def test_command_on_data_that_is_not_the_papers_prints_no_published_rows(tmp_path):
    "End to end through the console script, on the synthetic fixture, at a toy budget: our rows only."
    r = subprocess.run(_command('recsysllm_bench') + [str(FIXTURE), '--out', str(tmp_path)] + TOY,
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert '-- sequential' in r.stdout and '-- direct' in r.stdout and 'RecSysLLM' in r.stdout
    assert 'published' not in r.stdout
    res = json.loads((tmp_path / 'results.json').read_text())
    assert (res['paper'], res['published'], res['published_inconsistent'], res['paper_data_note']) == (None, [], [], None)
    assert {row['source'] for f in res['comparison'].values() for row in f} == {'measured (cpu config, 4 users)'}
    report = (tmp_path / 'report.md').read_text()
    assert '(published)' not in report and 'No published rows' in report and 'Protocol differences' not in report


def test_command_with_paper_sports_prints_sports_rows(tmp_path, capsys):
    bench_cli([FIXTURE, '--paper', 'sports', '--out', tmp_path] + TOY)
    out = capsys.readouterr().out
    assert out.count('published (paper, Sports), not reproduced') == len(PUBLISHED['sports']['sequential']) + len(
        PUBLISHED['sports']['direct'])
    assert 'SASRec (published)' in out and '0.0350' in out and 'Table 4, Beauty' not in out
    assert "the paper's Sports (Table 1) has 35,598 users" in out        # the fixture is not Sports: said, not hidden
    res = json.loads((tmp_path / 'results.json').read_text())
    assert res['paper'] == 'sports' and len(res['published_inconsistent']) == 4
    assert {r['method'] for r in res['published']} == {'paper Table 4, Sports', 'paper Table 7, Sports'}
    assert "beside the paper's published Sports figures" in (tmp_path / 'report.md').read_text()


@pytest.mark.skipif(not (BEAUTY / 'sequences.jsonl').exists(), reason=f'Amazon Beauty not found at {BEAUTY}')
def test_beauty_titles_collide_as_documented():
    t = load_sequences(BEAUTY)
    assert title_collisions(t) == dict(items_sharing_a_title=57, shared_titles=28)
    assert paper_data_note(t, 'beauty') is None and 'pass --paper beauty' in paper_data_note(t, None)


def test_gpu_preset_path_lora_on_a_checkpoint(tmp_path):
    "The GPU preset's path on CPU at a toy budget: a saved model + tokenizer as the checkpoint, LoRA rank 8, merged."
    from recsysllm_nb.tokenizer import corpus_tokenizer
    from recsysllm_nb.models import build_model
    t = load_sequences(FIXTURE); sp = leave_one_out(t, seed=0)
    ck = tmp_path / 'ck'
    tok = corpus_tokenizer(t, sp, ck, vocab_size=800)
    build_model('glm', 'tiny', len(tok), max_length=512, pad_token_id=tok.pad_token_id).save_pretrained(ck)
    r = run_bench(FIXTURE, tmp_path / 'run', bench_config('gpu', checkpoint=str(ck), steps=2, batch_size=4, n_users=4,
                                                          beams=10, bf16=False, max_length=256),
                  paper='beauty', progress=False, baseline_models=[Popularity()])
    assert not hasattr(r['training']['model'], 'peft_config')            # LoRA merged for evaluation ...
    assert (tmp_path / 'run' / 'model' / 'merged' / 'config.json').exists()   # ... and saved whole
    assert set(r['comparison']['sequential']['source']) == {'measured (gpu config, 4 users)',
                                                            'published (paper, Beauty), not reproduced'}
    res = json.loads((tmp_path / 'run' / 'results.json').read_text())
    assert res['run']['bench_config']['lora_rank'] == 8 and res['config']['users_evaluated'] == 4
    assert comparison_tables(r['rows'], r['bench_config'], 'beauty')['direct'].shape == r['comparison']['direct'].shape
    # an interrupted evaluation resumes from the trained model: the same rows, no training
    cfg = bench_config('gpu', checkpoint=str(ck), steps=2, batch_size=4, n_users=4, beams=10, bf16=False, max_length=256)
    again = run_bench(FIXTURE, tmp_path / 'run', cfg, paper='beauty', progress=False, baseline_models=[Popularity()],
                      reuse_model=True)
    mine = lambda rows: [x for x in rows if x['model'] == 'RecSysLLM' and x['metric'] != 'seconds']
    assert mine(again['rows']) == mine(r['rows']) and again['training']['seconds'] is None
    with pytest.raises(ValueError, match='another configuration'):
        run_bench(FIXTURE, tmp_path / 'run', replace(cfg, steps=3), paper='beauty', progress=False,
                  baseline_models=[], reuse_model=True)
