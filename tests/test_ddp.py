"""Multi-process training on CPU: `torchrun --nproc_per_node 2 -m recsysllm_nb.train` over gloo.

Three runs of a tiny GLM (full training, no dropout) share one fixture, each process run through PROBE:
- `two`: 2 processes x batch 2, 4 steps, a checkpoint every 2 steps;
- `one`: 1 process x batch 4, the same 4 steps (started beside `two`, whose rank 1 waits while rank 0 builds the data);
- `resumed`: 2 processes resuming from a copy of `two`'s step-2 checkpoint (`--resume last`) to step 4.
"""
import json, os, shutil, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
import torch.distributed as dist

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason='torch.distributed with gloo needed')

# Runs `python -m recsysllm_nb.train` in one process, with an audit hook that records what Python opens for writing,
# makes, renames or removes under --output_dir (torch.save, tokenizers and safetensors write from native code, unseen by
# the hook: the umask, 022 on rank 0 and 077 on the others, marks the files those create). For speed, the MovieLens-100K
# tables the run trains on (and trains its tokenizer on) are cut to their first USERS users.
USERS = 100
PROBE = r'''
import atexit, json, os, runpy, sys
import recsysllm_nb.data as data
log_dir, args = sys.argv[1], sys.argv[2:]
rank = int(os.environ.get('RANK', '0'))
full = data.load_ml100k
def small(*a, **k):
    t = full(*a, **k); users = set(t.users['user_id'][:int(os.environ['DDP_TEST_USERS'])])
    return data.Tables(t.users[t.users['user_id'].isin(users)].reset_index(drop=True), t.items,
                       t.interactions[t.interactions['user_id'].isin(users)].reset_index(drop=True), t.name)
data.load_ml100k = small   # before recsysllm_nb.train (and entities) import it
os.umask(0o022 if rank == 0 else 0o077)
out = os.path.realpath(args[args.index('--output_dir') + 1])
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
seen = set()
def hook(event, a):
    if event == 'open':
        path, writes = a[0], (a[1] is not None and any(c in a[1] for c in 'wax+')) or bool((a[2] or 0) & WRITE)
    elif event in ('os.mkdir', 'os.remove', 'os.rmdir', 'shutil.rmtree', 'os.truncate'): path, writes = a[0], True
    elif event == 'os.rename': path, writes = a[1], True
    else: return
    if writes and isinstance(path, (str, bytes, os.PathLike)):
        p = os.path.realpath(os.fsdecode(path))
        if p == out or p.startswith(out + os.sep): seen.add(f'{event} {os.path.relpath(p, out)}')
sys.addaudithook(hook)
atexit.register(lambda: open(os.path.join(log_dir, f'writes_{rank}.json'), 'w').write(json.dumps(sorted(seen))))
sys.argv = ['recsysllm_nb.train', *args]
runpy.run_module('recsysllm_nb.train', run_name='__main__', alter_sys=True)
'''

ARGS = ['--model', 'glm', '--size', 'tiny', '--lora_rank', '0', '--steps', '4', '--max_length', '128', '--lr', '3e-3',
        '--save_steps', '2', '--no_progress']

ENV = dict(CUDA_VISIBLE_DEVICES='', TOKENIZERS_PARALLELISM='false', HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1',
           DDP_TEST_USERS=str(USERS))

def _start(tmp, name, *args, procs=2):
    "Start a run of PROBE in `procs` processes (torchrun for 2) writing into tmp/name; `_wait` collects it."
    exe = Path(sys.executable).parent / 'torchrun'
    launcher = [str(exe)] if exe.exists() else [sys.executable, '-m', 'torch.distributed.run']
    if procs > 1: launcher += ['--standalone', '--nproc_per_node', str(procs)]
    else: launcher = [sys.executable]
    (tmp / f'probe_{name}').mkdir()
    cmd = launcher + [str(tmp / 'probe.py'), str(tmp / f'probe_{name}'), *ARGS, '--output_dir', str(tmp / name), *args]
    return cmd, time.time(), subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp,
                                              env=dict(os.environ, **ENV))

def _wait(started):
    cmd, t0, p = started
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, f'{cmd}\n{out[-2000:]}\n{err[-4000:]}'
    return subprocess.CompletedProcess(cmd, p.returncode, out, err), time.time() - t0

def _reports(stdout):
    "The JSON report lines of a run's stdout (the Trainer's own log lines are Python dicts, not JSON)."
    return [json.loads(l) for l in stdout.splitlines() if l.startswith('{"')]

def _losses(folder): return [h['loss'] for h in json.loads((folder / 'losses.json').read_text())]

@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ddp')
    (tmp / 'probe.py').write_text(PROBE)
    two, one = _start(tmp, 'two', '--batch_size', '2'), _start(tmp, 'one', '--batch_size', '4', procs=1)
    two, one = _wait(two), _wait(one)
    (tmp / 'resumed').mkdir(); shutil.copytree(tmp / 'two' / 'checkpoint-2', tmp / 'resumed' / 'checkpoint-2')
    resumed = _wait(_start(tmp, 'resumed', '--batch_size', '2', '--tokenizer', str(tmp / 'two' / 'tokenizer'),
                           '--resume', 'last'))
    print('seconds: ' + ', '.join(f'{k} {v[1]:.1f}' for k, v in dict(two=two, one=one, resumed=resumed).items()))
    return tmp, dict(two=two[0], one=one[0], resumed=resumed[0])

def test_two_processes_train_as_one(runs):
    "2 processes x batch 2 = 1 process x batch 4, step by step (data split across ranks, gradients averaged)."
    tmp, _ = runs
    # the same tokenizer, trained by each run (by rank 0 only in `two`): the runs see the same tokens
    tok = lambda run: (tmp / run / 'tokenizer' / 'tokenizer.json').read_bytes()
    assert tok('one') == tok('two')
    one, two = _losses(tmp / 'one'), _losses(tmp / 'two')
    assert len(one) == len(two) == 4
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-5)
    assert one[-1] < one[0]   # the model moved: a run that did not train would match trivially

def test_only_rank0_reports(runs):
    tmp, res = runs
    for name, logged in (('two', 4), ('resumed', 2)):
        reps = _reports(res[name].stdout)
        assert len(reps) == 1, res[name].stdout                # one final JSON line, not one per process
        assert reps[0]['steps'] == 4 and reps[0]['output_dir'] == str(tmp / name)
        assert res[name].stdout.count("{'loss'") == logged     # the Trainer's log line of each step run, once
    np.testing.assert_allclose(_reports(res['two'].stdout)[0]['last_loss'], _losses(tmp / 'one')[-1], rtol=0, atol=1e-5)

def test_only_rank0_writes(runs):
    tmp, _ = runs
    w0, w1 = (set(json.loads((tmp / 'probe_two' / f'writes_{r}.json').read_text())) for r in (0, 1))
    # rank 0 writes the run's files (the hook sees them: a check that it works) ...
    assert {'open losses.json', 'open train_config.json', 'open tokenizer/tokenizer_config.json',
            'open final/config.json', 'open final/tokenizer_config.json', 'open checkpoint-2/trainer_state.json',
            'open checkpoint-4/config.json'} <= w0, w0
    # ... rank 1 opens nothing for writing; it only makes sure the checkpoint folders exist (makedirs, exist_ok)
    assert w1 <= {'os.mkdir checkpoint-2', 'os.mkdir checkpoint-4'}, w1
    # files made by native code (torch.save, tokenizers) under rank 1's umask 077: only its own random state
    made_by_1 = {str(p.relative_to(tmp / 'two')) for p in (tmp / 'two').rglob('*')
                 if p.is_file() and p.stat().st_mode & 0o777 == 0o600 and p.suffix != '.safetensors'}
    assert made_by_1 == {'checkpoint-2/rng_state_1.pth', 'checkpoint-4/rng_state_1.pth'}, made_by_1
    assert (tmp / 'two' / 'checkpoint-2' / 'rng_state_0.pth').stat().st_mode & 0o777 == 0o644
    assert not (tmp / 'two' / 'checkpoint-2' / 'rng_state.pth').exists()

def test_resume_under_two_processes(runs):
    "Resumed at step 2 under 2 processes, the run ends exactly where the uninterrupted one did."
    tmp, _ = runs
    np.testing.assert_allclose(_losses(tmp / 'resumed'), _losses(tmp / 'two'), rtol=0, atol=1e-5)
    assert (tmp / 'resumed' / 'checkpoint-4').is_dir() and (tmp / 'resumed' / 'final' / 'model.safetensors').exists()
