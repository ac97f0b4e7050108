"""`make muse`, the recipe for the licensed corpus, end to end on a generated
corpus laid out somewhere else than demo/: every step's output where the
README says, and a rerun that finds everything done."""

import json
import os
import subprocess

import pytest

from model_fixtures import PYTHON, REPO

pytestmark = pytest.mark.slow

SMALL_RUN = {'MUSE_DATA_FLAGS': '--sample_rate 1000',
             'MUSE_TRAIN_FLAGS': '--device -1 --max_steps 3 --batch_size 2 --sequence_length 10',
             'MUSE_EVAL_FLAGS': '--device -1 --noplots'}


def make_muse(muse, work):
    return subprocess.run(['make', '-s', 'muse', 'MUSE_DIR=%s' % muse, 'WORK_DIR=%s' % work]
                          + ['%s=%s' % item for item in SMALL_RUN.items()],
                          cwd=REPO, capture_output=True, text=True, timeout=900)


def test_make_muse_runs_every_step_on_a_corpus_elsewhere(tmp_path):
    muse, work = tmp_path / 'licensed' / 'MuSe-CaR', tmp_path / 'runs' / 'first'
    subprocess.run([PYTHON, os.path.join(REPO, 'make_demo_corpus.py'), '--output_dir', str(muse),
                    '--videos', '6', '--seconds_per_video', '10', '--seed', '1'],
                   check=True, capture_output=True, timeout=600)
    result = make_muse(muse, work)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for output in ('sync_maps', 'labels', 'partition.csv', 'plots', 'embeddings',
                   'tfrecords/dataset.json', 'checkpoints/checkpoint', 'predictions/test'):
        assert os.path.exists(work / output), output
    scores = json.loads((work / 'eval_test.json').read_text())
    assert scores['portion'] == 'test' and set(scores['ccc']) == {'arousal', 'valence'}
    assert '%s: sync_maps/' % work in result.stdout
    written = {path: open(path, 'rb').read() for path in outputs(work)}
    again = make_muse(muse, work)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {path: open(path, 'rb').read() for path in outputs(work)} == written
    # Training resumes at its last step, already max_steps: no step more.
    assert max(int(n.split('-')[1].split('.')[0]) for n in os.listdir(work / 'checkpoints')
               if n.endswith('.index')) == 3


def outputs(work):
    """The files of steps 1-5: what a rerun leaves as it found them."""
    return sorted(os.path.join(root, name)
                  for part in ('sync_maps', 'labels', 'embeddings', 'tfrecords')
                  for root, _, names in os.walk(work / part) for name in names)
