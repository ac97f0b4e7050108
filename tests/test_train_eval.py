"""train.py and eval.py end to end on the tiny dataset (tests/conftest.py):
learning on a fixed batch, checkpoints, logs, resuming (in another window
scheme and precision), Ctrl-C, reloading, CCC consistency, --steps, dataset
mismatches and --watch; the choice of --precision and its graph rewrite."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import helper
import losses
import models
from ser import checkpoints
from ser import evaluation, training
from ser import mixed_precision
from ser.dataset import DatasetInfo

tf = models.tf
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Small and fast; the structure stays the paper's.
TRAIN_FLAGS = ['--device', '-1', '--batch_size', '2', '--sequence_length', '16',
               '--hidden_units', '32', '--log_every_n_steps', '2', '--save_interval_secs', '600']
FIRST_STEPS, RESUMED_STEPS = 6, 10


def script(name, *args, check=True, cwd=None):
    result = subprocess.run([sys.executable, os.path.join(REPO, name)] + [str(a) for a in args],
                            capture_output=True, text=True, cwd=cwd, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def read_predictions(path):
    with open(path, newline='') as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ['timestamp', 'arousal_pred', 'valence_pred', 'arousal', 'valence']
    return np.array(rows[1:], dtype=np.float64)


# --------------------------------------------------------------------------
# The model and loss learn
# --------------------------------------------------------------------------
@pytest.mark.slow
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(tiny_recordings):
    windows = [r[name][:24] for r in tiny_recordings.values() if r['portion'] == 'train'
               for name in ('audio', 'embeddings', 'labels')]
    audio, embeddings, labels = (np.stack(windows[i::3]) for i in range(3))
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        inputs = [tf.placeholder(tf.float32, a.shape) for a in (audio, embeddings, labels)]
        mask = tf.ones(labels.shape[:2])
        loss, _ = losses.ccc_loss(models.build_model(inputs[0], inputs[1], 32), inputs[2], mask)
        train_op = tf.train.AdamOptimizer(1e-3).minimize(loss)
        with tf.variable_scope(tf.get_variable_scope(), reuse=True):
            eval_loss, _ = losses.ccc_loss(models.build_model(inputs[0], inputs[1], 32,
                                                              is_training=False),
                                           inputs[2], mask)
        feed = dict(zip(inputs, (audio, embeddings, labels)))
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            before = session.run(eval_loss, feed)
            for _ in range(30):
                session.run(train_op, feed)
            after = session.run(eval_loss, feed)
    assert after < 0.5 * before, (before, after)


# --------------------------------------------------------------------------
# train.py: checkpoints, log, resume
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def first_run(tiny_dataset, tmp_path_factory):
    """train.py for FIRST_STEPS steps; the directory's state right after it."""
    train_dir = str(tmp_path_factory.mktemp('train') / 'checkpoints')
    script('train.py', '--dataset_dir', tiny_dataset, '--train_dir', train_dir,
           '--max_steps', FIRST_STEPS, *TRAIN_FLAGS)
    with open(os.path.join(train_dir, 'log_train.txt')) as handle:
        log = handle.read()
    return train_dir, sorted(os.listdir(train_dir)), log


@pytest.fixture(scope='module')
def resumed_run(first_run, tiny_dataset):
    """The same directory trained on to RESUMED_STEPS with another sequence
    length, packed windows and bf16 (the first run: per-segment windows, the
    default precision):
    checkpoints carry on across all three."""
    train_dir = first_run[0]
    flags = TRAIN_FLAGS[:]
    flags[flags.index('--sequence_length') + 1] = '24'
    script('train.py', '--dataset_dir', tiny_dataset, '--train_dir', train_dir,
           '--max_steps', RESUMED_STEPS, '--windows', 'packed', '--precision', 'bf16',
           *flags)
    return train_dir


@pytest.mark.slow
def test_train_writes_checkpoints_log_and_dataset_copy(first_run, tiny_dataset):
    train_dir, files, log = first_run
    for suffix in ('.index', '.meta', '.data-00000-of-00001'):
        assert 'model.ckpt-%d%s' % (FIRST_STEPS, suffix) in files
    assert any(name.startswith('events.out.tfevents') for name in files)
    assert tf.train.latest_checkpoint(train_dir).endswith('model.ckpt-%d' % FIRST_STEPS)
    copy, original = DatasetInfo.load(train_dir), DatasetInfo.load(tiny_dataset)
    original.check_compatible(copy, same_data=True)
    assert copy.embeddings_path == original.embeddings_path
    # Saved relative to the training directory, not copied byte for byte.
    assert helper.read_json(os.path.join(train_dir, 'dataset.json'))['embeddings'] == \
        os.path.relpath(original.embeddings_path, train_dir)
    # The default precision, auto, is what the machine runs natively.
    in_use = mixed_precision.choose_precision('auto', -1)
    assert checkpoints.read_model_config(train_dir) == {'hidden_units': 32, 'frame_samples': 250,
                                                        'embedding_dim': 8, 'modality': 'both',
                                                        'precision': in_use}
    lines = log.splitlines()
    assert lines[0].startswith('==== train.py run 20')
    for expected in ('max_steps = %d' % FIRST_STEPS, 'sequence_length = 16', 'batch_size = 2',
                     'hidden_units = 32', 'learning_rate = 0.0005', 'loss_weights = None',
                     'device = -1', 'seed = 0', 'save_summaries_secs = 60', 'windows = per_segment',
                     'skip_padding = True', 'precision = auto', 'precision in use = ' + in_use):
        assert expected in lines, expected
    progress = [line.split()[1] for line in lines if line.startswith('step ')]
    assert progress == ['2', '4', '6']
    assert 'frames/s' in lines[-2] and 'ccc_valence' in lines[-2]
    assert lines[-1] == 'stopped at step %d (done)' % FIRST_STEPS


@pytest.mark.slow
def test_train_resumes_from_the_latest_checkpoint(resumed_run):
    assert checkpoints.available_steps(resumed_run)[-2:] == [FIRST_STEPS, RESUMED_STEPS]
    with open(os.path.join(resumed_run, 'log_train.txt')) as handle:
        log = handle.read()
    runs = log.split('==== train.py run')
    assert len(runs) == 3
    for expected in ('sequence_length = 24', 'windows = packed', 'precision in use = bf16'):
        assert expected in runs[2].splitlines(), expected
    assert checkpoints.read_model_config(resumed_run)['precision'] == 'bf16'
    # bf16 is arithmetic inside the graph: the variables stay float32.
    reader = tf.train.NewCheckpointReader(os.path.join(resumed_run,
                                                       'model.ckpt-%d' % RESUMED_STEPS))
    dtypes = reader.get_variable_to_dtype_map()
    assert 'model/recurrent/rnn/lstm/kernel' in dtypes
    assert {dtype.name for name, dtype in dtypes.items() if name != 'global_step'} == {'float32'}
    # The second run's steps continue the first's.
    assert [line.split()[1] for line in runs[2].splitlines() if line.startswith('step ')] == \
        ['8', '10']


@pytest.mark.slow
def test_train_stops_cleanly_on_ctrl_c(tiny_dataset, tmp_path):
    train_dir = str(tmp_path / 'checkpoints')
    process = subprocess.Popen([sys.executable, os.path.join(REPO, 'train.py'), '--dataset_dir',
                                tiny_dataset, '--train_dir', train_dir] + TRAIN_FLAGS,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log_path = os.path.join(train_dir, 'log_train.txt')
    try:
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            if os.path.exists(log_path) and '\nstep ' in open(log_path).read():
                break
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-3000:]
    last = open(log_path).read().splitlines()[-1]
    assert last.endswith('(interrupted)')
    step = int(last.split()[3])
    assert step >= 2 and checkpoints.available_steps(train_dir)[-1] == step


@pytest.mark.slow
def test_train_refuses_to_resume_on_other_data(first_run, mismatched_dataset, tmp_path):
    train_dir = str(tmp_path / 'checkpoints')
    shutil.copytree(first_run[0], train_dir)
    before = sorted(os.listdir(train_dir))
    result = script('train.py', '--dataset_dir', mismatched_dataset, '--train_dir', train_dir,
                    '--max_steps', 100, *TRAIN_FLAGS, check=False)
    assert result.returncode != 0
    assert 'embedding_dim: 8 vs 16' in result.stderr
    assert sorted(os.listdir(train_dir)) == before


# --------------------------------------------------------------------------
# --precision
# --------------------------------------------------------------------------
AMX_XEON = {'avx512f', 'avx512_bf16', 'amx_bf16', 'amx_tile'}
AVX512_ONLY = {'avx2', 'avx512f', 'avx512_vnni'}


@pytest.mark.parametrize('requested, gpu, cpu, onednn, chosen', [
    ('auto', None, AMX_XEON, True, 'bf16'),
    ('auto', None, {'avx512f', 'avx512_bf16'}, True, 'bf16'),
    # bf16 without the instructions is emulated and slower: auto keeps fp32.
    ('auto', None, AVX512_ONLY, True, 'fp32'),
    ('auto', None, AMX_XEON, False, 'fp32'),
    # fp16 (with its loss scale) where the GPU has tensor cores.
    ('auto', (8, 0), AVX512_ONLY, True, 'fp16'),
    ('auto', (7, 0), AVX512_ONLY, True, 'fp16'),
    ('auto', (6, 1), AMX_XEON, True, 'fp32'),
    ('auto', (0, 0), AMX_XEON, True, 'fp32'),
    ('bf16', None, AVX512_ONLY, True, 'bf16'),
    ('fp16', (7, 0), set(), True, 'fp16'),
    ('fp32', (8, 0), AMX_XEON, True, 'fp32'),
])
def test_precision_follows_what_the_machine_runs_natively(requested, gpu, cpu, onednn, chosen):
    assert mixed_precision.decide_precision(requested, gpu, cpu, onednn) == chosen


@pytest.mark.parametrize('requested, gpu, onednn, problem', [
    ('fp16', None, True, 'fp16 runs on a GPU only'),
    ('bf16', (8, 0), True, 'bf16 is the CPU'),
    ('bf16', None, False, 'runs through oneDNN, which is off in this process: set '
                          'TF_ENABLE_ONEDNN_OPTS=1'),
    ('fp8', None, True, "'fp8' is none of fp32, bf16, fp16, auto"),
])
def test_a_precision_the_device_cannot_run_is_refused(requested, gpu, onednn, problem):
    with pytest.raises(helper.InputError, match='--precision: .*' + problem):
        mixed_precision.decide_precision(requested, gpu, AMX_XEON, onednn)


def test_session_config_turns_on_the_matching_rewrite(monkeypatch):
    from tensorflow.core.protobuf import rewriter_config_pb2
    monkeypatch.setattr(mixed_precision, 'onednn_enabled', lambda: True)
    on = rewriter_config_pb2.RewriterConfig.ON
    fp32 = mixed_precision.session_config(-1).graph_options.rewrite_options
    bf16 = mixed_precision.session_config(-1, precision='bf16').graph_options.rewrite_options
    assert fp32.auto_mixed_precision_onednn_bfloat16 != on and fp32.auto_mixed_precision != on
    assert bf16.auto_mixed_precision_onednn_bfloat16 == on and bf16.auto_mixed_precision != on


def small_batch():
    """Two windows of 6 frames at the tiny dataset's shapes, as constants."""
    rng = np.random.default_rng(0)
    return {'audio': tf.constant(rng.normal(size=(2, 6, 250)), tf.float32),
            'embeddings': tf.constant(rng.normal(size=(2, 6, 4)), tf.float32),
            'labels': tf.constant(rng.uniform(-1, 1, (2, 6, 2)), tf.float32),
            'mask': tf.ones([2, 6])}


def bfloat16_nodes(precision):
    """Nodes of bfloat16 type in the graph a small training step runs as."""
    graph = tf.Graph()
    with graph.as_default():
        batch = small_batch()
        train_op, _, _ = training.training_step(batch, training.Settings(hidden_units=8))
        metadata = tf.RunMetadata()
        with tf.Session(config=mixed_precision.session_config(-1, precision=precision)) as session:
            session.run(tf.global_variables_initializer())
            session.run(train_op, options=tf.RunOptions(output_partition_graphs=True),
                        run_metadata=metadata)
    return [node.op for partition in metadata.partition_graphs for node in partition.node
            if 'DT_BFLOAT16' in str(node.attr)]


def bfloat16_nodes_in_a_new_process(precision):
    """bfloat16_nodes(precision) in a process of its own, prepared for its
    precision as train.py prepares one (TensorFlow may leave oneDNN off)."""
    environment = {name: value for name, value in os.environ.items()
                   if name != mixed_precision.ONEDNN_VARIABLE}
    environment['PYTHONPATH'] = os.pathsep.join([REPO, os.path.join(REPO, 'tests')])
    code = ('import json; from ser import mixed_precision; '
            'mixed_precision.prepare_process([%r]); import test_train_eval; '
            'print(json.dumps(test_train_eval.bfloat16_nodes(%r)))' % (precision, precision))
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            env=environment, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.slow
def test_bf16_rewrites_the_training_step_and_fp32_does_not():
    assert bfloat16_nodes('fp32') == []
    rewritten = bfloat16_nodes_in_a_new_process('bf16')
    assert 'Cast' in rewritten and any('MatMul' in op for op in rewritten), rewritten


def test_a_process_asked_for_bf16_turns_onednn_on_before_tensorflow_loads(monkeypatch):
    monkeypatch.delenv(mixed_precision.ONEDNN_VARIABLE, raising=False)
    monkeypatch.setattr(mixed_precision.host, 'cpu_flags', lambda: AVX512_ONLY)
    mixed_precision.prepare_process(['bf16'])
    assert mixed_precision.ONEDNN_VARIABLE not in os.environ    # too late: already loaded
    monkeypatch.delitem(sys.modules, 'tensorflow')
    for precisions in (['fp32'], ['auto']):
        mixed_precision.prepare_process(precisions)
        assert mixed_precision.ONEDNN_VARIABLE not in os.environ, precisions
    mixed_precision.prepare_process(['fp32', 'bf16'])
    assert os.environ[mixed_precision.ONEDNN_VARIABLE] == '1'
    monkeypatch.setenv(mixed_precision.ONEDNN_VARIABLE, '0')     # the caller's choice stands
    mixed_precision.prepare_process(['bf16'])
    assert os.environ[mixed_precision.ONEDNN_VARIABLE] == '0'
    monkeypatch.delenv(mixed_precision.ONEDNN_VARIABLE)
    monkeypatch.setattr(mixed_precision.host, 'cpu_flags', lambda: AMX_XEON)
    mixed_precision.prepare_process(['auto'])
    assert os.environ[mixed_precision.ONEDNN_VARIABLE] == '1'


def loss_scale_run(steps, initial_scale=None, period=3):
    """w after each step of Adam on a small least-squares loss, loss-scaled
    (initial_scale) or plain (None), with (global step, scale, finite steps)
    after each; `steps` is a list of loss multipliers (inf: an overflow)."""
    graph = tf.Graph()
    with graph.as_default():
        rng = np.random.default_rng(0)
        weights = tf.get_variable('w', initializer=tf.constant(rng.normal(size=4), tf.float32))
        blow_up = tf.placeholder(tf.float32, [])
        inputs, targets = (tf.constant(rng.normal(size=(8, 4)), tf.float32),
                           tf.constant(rng.normal(size=8), tf.float32))
        loss = blow_up * tf.reduce_mean((tf.linalg.matvec(inputs, weights) - targets) ** 2)
        global_step = tf.train.get_or_create_global_step()
        optimizer = tf.train.AdamOptimizer(0.05)
        if initial_scale is None:
            train_op = optimizer.minimize(loss, global_step=global_step)
            state = [global_step]
        else:
            train_op = mixed_precision.loss_scaled_minimize(optimizer, loss, global_step,
                                                            initial_scale, period)
            with tf.variable_scope('loss_scale', reuse=True):
                state = [global_step, tf.get_variable('scale'),
                         tf.get_variable('finite_steps', dtype=tf.int64)]
        with tf.Session() as session:
            session.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
            history = []
            for multiplier in steps:
                session.run(train_op, {blow_up: multiplier})
                history.append((session.run(weights), tuple(session.run(state))))
    return history


def test_the_loss_scale_changes_no_update_and_skips_an_overflow():
    plain = loss_scale_run([1.0] * 4)
    scaled = loss_scale_run([1.0] * 4 + [np.inf, 1.0], initial_scale=2.0 ** 10)
    # A power-of-two scale leaves fp32 gradients exact: the same updates.
    for (expected, _), (got, _) in zip(plain, scaled):
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    # After `period` (3) finite steps the scale doubles; an overflow halves
    # it, leaves w and the global step where they were.
    assert [state for _, state in scaled] == [
        (1, 1024.0, 1), (2, 1024.0, 2), (3, 2048.0, 0), (4, 2048.0, 1), (4, 1024.0, 0),
        (5, 1024.0, 1)]
    np.testing.assert_array_equal(scaled[4][0], scaled[3][0])
    assert not np.array_equal(scaled[5][0], scaled[4][0])


def test_an_fp16_training_step_is_loss_scaled():
    """(Run here without the fp16 rewrite, which needs a GPU.)"""
    graph = tf.Graph()
    with graph.as_default():
        batch = small_batch()
        train_op, _, _ = training.training_step(batch, training.Settings(hidden_units=8,
                                                                         precision='fp16'))
        # Not in the checkpoints: those stay what an fp32 run writes.
        assert [v.op.name for v in tf.local_variables()] == ['loss_scale/scale',
                                                             'loss_scale/finite_steps']
        assert not [v for v in tf.global_variables() if 'loss_scale' in v.op.name]
        with tf.Session() as session:
            session.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
            session.run(train_op)
            assert session.run(tf.train.get_global_step()) == 1


# --------------------------------------------------------------------------
# eval.py
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def mismatched_dataset(tiny_dataset, tmp_path_factory):
    """A copy of the tiny dataset whose dataset.json claims another embedding size."""
    directory = str(tmp_path_factory.mktemp('mismatch') / 'tfrecords')
    shutil.copytree(tiny_dataset, directory)
    info = helper.read_json(os.path.join(directory, 'dataset.json'))
    helper.write_json(os.path.join(directory, 'dataset.json'), dict(info, embedding_dim=16))
    return directory


def run_eval(dataset_dir, checkpoint, output_dir, *args, check=True):
    return script('eval.py', '--dataset_dir', dataset_dir, '--checkpoint', checkpoint,
                  '--device', '-1', '--predictions_dir', os.path.join(output_dir, 'predictions'),
                  '--json', os.path.join(output_dir, 'metrics.json'), *args, check=check)


@pytest.mark.slow
def test_eval_is_repeatable_and_its_ccc_matches_its_predictions(resumed_run, tiny_dataset,
                                                               tiny_recordings, tmp_path):
    outputs = [str(tmp_path / name) for name in ('first', 'second')]
    for output in outputs:
        result = run_eval(tiny_dataset, resumed_run, output, '--portion', 'train', '--steps',
                          RESUMED_STEPS, '--noplots')
    assert 'arousal' in result.stdout and 'mean' in result.stdout

    train_ids = sorted(i for i, r in tiny_recordings.items() if r['portion'] == 'train')
    csvs = [[read_predictions(evaluation.prediction_path(os.path.join(output, 'predictions'), i))
             for i in train_ids] for output in outputs]
    for first, second in zip(*csvs):
        np.testing.assert_array_equal(first, second)

    metrics = helper.read_json(os.path.join(outputs[0], 'metrics.json'))
    assert metrics['portion'] == 'train' and metrics['step'] == RESUMED_STEPS
    # eval.py's own precision (auto by default), whatever the checkpoint was trained in.
    assert metrics['precision'] == mixed_precision.choose_precision('auto', -1)
    assert metrics['checkpoint'].endswith('model.ckpt-%d' % RESUMED_STEPS)
    assert metrics['segments'] == 3
    # Whole segments, every frame once, in order, nothing padded.
    for table, name in zip(csvs[0], train_ids):
        recording = tiny_recordings[name]
        np.testing.assert_array_equal(table[:, 0], recording['timestamps'])
        np.testing.assert_allclose(table[:, 3:], recording['labels'], atol=1e-6)
        assert np.all(np.abs(table[:, 1:3]) < 1)
    assert metrics['frames'] == sum(len(t) for t in csvs[0])
    everything = np.concatenate(csvs[0])
    recomputed = losses.ccc(everything[:, 1:3], everything[:, 3:])
    assert metrics['ccc']['arousal'] == pytest.approx(recomputed[0], abs=1e-5)
    assert metrics['ccc']['valence'] == pytest.approx(recomputed[1], abs=1e-5)
    assert metrics['mean_ccc'] == pytest.approx(recomputed.mean(), abs=1e-5)

    log = open(os.path.join(resumed_run, 'log_eval.txt')).read().splitlines()
    assert len([line for line in log if 'portion train  step %d' % RESUMED_STEPS in line]) == 2


@pytest.mark.slow
def test_eval_default_portion_writes_a_plot_per_segment(resumed_run, tiny_dataset, tmp_path):
    run_eval(tiny_dataset, resumed_run, str(tmp_path))
    metrics = helper.read_json(str(tmp_path / 'metrics.json'))
    assert metrics['portion'] == 'devel' and metrics['step'] == RESUMED_STEPS  # the latest
    assert metrics['frames'] == DatasetInfo.load(tiny_dataset).frames['devel']
    assert metrics['segments'] == 2
    assert sorted(os.listdir(str(tmp_path / 'predictions' / '3'))) == [
        '3_0.csv', '3_0.png', '3_1.csv', '3_1.png']
    for name in ('3_0', '3_1'):
        with open(str(tmp_path / 'predictions' / '3' / (name + '.png')), 'rb') as handle:
            assert handle.read(8) == b'\x89PNG\r\n\x1a\n'


@pytest.mark.slow
def test_eval_missing_step_lists_the_existing_ones(resumed_run, tiny_dataset, tmp_path):
    result = run_eval(tiny_dataset, resumed_run, str(tmp_path), '--steps', 3, check=False)
    assert result.returncode != 0
    steps = ', '.join(map(str, checkpoints.available_steps(resumed_run)))
    assert 'no checkpoint for step 3; available steps: %s' % steps in result.stderr
    assert not os.path.exists(str(tmp_path / 'metrics.json'))


@pytest.mark.slow
def test_eval_rejects_a_dataset_of_another_shape(resumed_run, mismatched_dataset, tmp_path):
    result = run_eval(mismatched_dataset, resumed_run, str(tmp_path), check=False)
    assert result.returncode != 0
    assert 'embedding_dim: 8 vs 16' in result.stderr
    assert not os.path.exists(str(tmp_path / 'metrics.json'))


@pytest.mark.slow
def test_eval_watch_keeps_the_best_checkpoint(resumed_run, tiny_dataset, tmp_path):
    checkpoint_dir = str(tmp_path / 'checkpoints')
    shutil.copytree(resumed_run, checkpoint_dir)
    run_eval(tiny_dataset, checkpoint_dir, str(tmp_path), '--watch', '--watch_interval_secs', 1,
             '--watch_timeout_secs', 1, '--noplots')
    metrics = helper.read_json(str(tmp_path / 'metrics.json'))
    best_dir = os.path.join(checkpoint_dir, 'best')
    best = helper.read_json(os.path.join(best_dir, 'best.json'))
    assert best['step'] == RESUMED_STEPS and best['portion'] == 'devel'
    assert best['mean_ccc'] == metrics['mean_ccc']
    # best/ is a checkpoint directory of its own.
    assert checkpoints.checkpoint_path(best_dir) == (os.path.join(best_dir, 'model.ckpt-%d'
                                                                  % RESUMED_STEPS), RESUMED_STEPS)
    assert checkpoints.read_model_config(best_dir) == checkpoints.read_model_config(checkpoint_dir)
    assert tf.train.latest_checkpoint(best_dir).endswith('model.ckpt-%d' % RESUMED_STEPS)
    assert not os.path.exists(os.path.join(best_dir, '.staging'))


def test_eval_checks_the_checkpoints_dataset_first(tiny_dataset, mismatched_dataset, tmp_path):
    with pytest.raises(helper.InputError, match='dataset.json: file not found: the checkpoint '
                       'directory must hold'):
        evaluation.check_compatible(str(tmp_path), tiny_dataset)
    DatasetInfo.load(tiny_dataset).save(str(tmp_path))
    assert evaluation.check_compatible(str(tmp_path), tiny_dataset).path == os.path.join(
        tiny_dataset, 'dataset.json')
    with pytest.raises(helper.InputError, match='embedding_dim: 8 vs 16'):
        evaluation.check_compatible(str(tmp_path), mismatched_dataset)


@pytest.mark.slow
def test_a_script_refuses_another_scripts_flags(tiny_dataset):
    for name, foreign in (('train.py', '--portion=devel'), ('eval.py', '--max_steps=3')):
        result = script(name, '--dataset_dir', tiny_dataset, foreign, check=False)
        assert result.returncode != 0
        assert 'Unknown command line flag \'%s\'' % foreign[2:].split('=')[0] in result.stderr
