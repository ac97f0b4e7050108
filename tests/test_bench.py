"""Smoke test of the benchmarks (bench/): `make bench` on a tiny case.

The figures themselves are never checked against a speed (a test must not
depend on how busy the machine is): only that every stage runs, as its own
script, and that the results JSON holds every metric as a positive number, the
machine it ran on, and the targets computed from the metrics. Also the XLA
option of train.py the benchmarks compare: it marks the graph for compilation
and still trains."""

import json
import os
import subprocess
import sys

import pytest

import helper
from ser import training

# The bench scripts run as their own processes only, like every script.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ('alignment', 'tfrecord', 'input_pipeline', 'model_step', 'step_profile', 'train',
          'eval', 'predict', 'service', 'decoding', 'long_audio', 'stream')
# 6 videos of 5 s (2-4 segments each; train, devel and test after the split, and
# unlabelled test videos), 1 kHz audio (250 samples per frame), windows of 2 x 10
# frames: every stage in seconds.
TINY = ['--videos=6', '--seconds_per_video=5', '--sample_rate=1000', '--batch_size=2',
        '--sequence_length=10', '--repeats=1', '--model_steps=2', '--train_steps=6',
        '--train_warmup_steps=2', '--train_log_every_n_steps=2', '--input_batches=5',
        '--predict_duration=5', '--service_requests=2', '--service_utterances=2',
        '--long_audio_minutes=1', '--stream_seconds=2', '--stream_counts=1',
        '--decoding_seconds=5']
METRICS = ('alignment_rtf_1worker', 'alignment_rtf_all_workers', 'tfrecord_frames_per_s',
           'input_pipeline_frames_per_s', 'model_step_frames_per_s', 'model_step_frames_per_s_bf16',
           'train_frames_per_s', 'train_real_frames_per_s', 'train_real_frames_per_s_baseline',
           'eval_frames_per_s', 'predict_rtf_5s', 'predict_frames_per_s_5s',
           'service_p50_ms_1client',
           'service_p95_ms_4clients', 'service_requests_per_s_4clients',
           'predict_max_rss_mb_1min', 'stream_frame_latency_ms_p95', 'stream_max_realtime_streams',
           'step_flops_per_frame', 'step_gflops_per_s', 'step_peak_fraction',
           'decode_peak_mb_worst', 'decode_output_mb_worst', 'decode_seconds_worst')


def expected_metrics(results):
    """METRICS, but bf16's model step only where TensorFlow runs oneDNN by itself
    (asking for it elsewhere would change fp32's kernels too)."""
    return [name for name in METRICS if name != 'model_step_frames_per_s_bf16'
            or results['machine']['onednn']['enabled']]


@pytest.fixture(scope='module')
def tiny_results(tmp_path_factory):
    work = tmp_path_factory.mktemp('bench')
    output = work / 'results' / 'latest.json'
    process = subprocess.run(
        [sys.executable, os.path.join(REPO, 'bench', 'run_all.py'), '--bench_dir=%s' % work,
         '--output=%s' % output] + TINY, cwd=REPO, capture_output=True, text=True, check=False)
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(output.read_text()), process.stdout


@pytest.mark.slow
def test_every_metric_is_a_positive_number(tiny_results):
    results, _ = tiny_results
    assert sorted(results['metrics']) == sorted(expected_metrics(results))
    for name, value in results['metrics'].items():
        # How many streams keep real time depends on the machine's load: 0 is a valid count.
        lowest = 0 if name == 'stream_max_realtime_streams' else 1e-12
        assert isinstance(value, (int, float)) and value >= lowest, (name, value)


@pytest.mark.slow
def test_machine_block_and_load_per_stage(tiny_results):
    results, _ = tiny_results
    machine = results['machine']
    assert machine['cores'] >= 1 and machine['cpu'] and machine['tensorflow']
    assert isinstance(machine['onednn']['enabled'], bool) and isinstance(machine['gpu'], bool)
    assert len(machine['load_average']) == 3
    assert sorted(results['stages']) == sorted(STAGES)
    for stage in results['stages'].values():
        assert len(stage['load_average']) == 3 and stage['seconds'] > 0
        assert stage['other_cores'] >= 0
    cpu = results['cpu_seconds_per_step']
    assert cpu['model_step'] > 0 and cpu['train'] > 0
    assert results['settings']['sample_rate'] == 1000 and results['date']


@pytest.mark.slow
def test_targets_follow_from_the_metrics(tiny_results):
    results, stdout = tiny_results
    metrics, targets = results['metrics'], results['targets']
    ratio = metrics['input_pipeline_frames_per_s'] / metrics['train_frames_per_s']
    assert targets['input_pipeline_over_train']['value'] == pytest.approx(ratio, rel=1e-3)
    assert targets['input_pipeline_over_train']['met'] == (ratio >= 5)
    # train.py's step against the model step in the precision train.py ran in.
    precision = results['stages']['train']['details']['precision']
    step = metrics['model_step_frames_per_s' + ('' if precision == 'fp32' else '_' + precision)]
    ratio = metrics['train_frames_per_s'] / step
    assert targets['train_over_model_step']['value'] == pytest.approx(ratio, rel=1e-3)
    assert targets['train_over_model_step']['met'] == (ratio >= 0.9)
    # The predict target is for 60 s of audio; the tiny case times 5 s.
    assert 'predict_rtf_60s' not in targets
    for name in expected_metrics(results):
        assert name in stdout



def test_xla_scope_marks_the_ops_built_inside_for_compilation():
    tf = helper.import_tensorflow()
    with tf.Graph().as_default():
        with training.xla_scope(True):
            compiled = tf.square(tf.constant(2.0))
        with training.xla_scope(False):
            plain = tf.square(tf.constant(2.0))
        assert compiled.op.get_attr('_XlaCompile') is True
        assert '_XlaCompile' not in plain.op.node_def.attr


@pytest.mark.slow
def test_train_with_xla_trains_and_checkpoints(tiny_dataset, tmp_path):
    """The benchmarks compare train.py with and without --xla: both must run."""
    train_dir = tmp_path / 'xla'
    process = subprocess.run(
        [sys.executable, os.path.join(REPO, 'train.py'), '--dataset_dir', tiny_dataset,
         '--train_dir', str(train_dir), '--device', '-1', '--max_steps', '2', '--batch_size', '2',
         '--sequence_length', '10', '--xla'], cwd=REPO, capture_output=True, text=True,
        check=False)
    assert process.returncode == 0, process.stderr[-3000:]
    assert (train_dir / 'model.ckpt-2.index').exists()
    assert 'xla = True' in (train_dir / 'log_train.txt').read_text()
