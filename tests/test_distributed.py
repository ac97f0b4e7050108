"""train.py on TensorFlow's distributed runtime (ser.cluster, tools.local_cluster):
the cluster from flags or TF_CONFIG, placement, and 1 ps + 2 worker processes
on 127.0.0.1: training to --max_steps, --sync_replicas, eval.py on the chief's
checkpoint, and the fault cases (a worker or the chief killed and restarted,
the ps lost and restarted)."""

import json
import os
import re
import subprocess
import sys

import pytest

import helper
from ser import cluster
from ser import paths
from tools.local_cluster import LocalCluster, worker_steps

tf = cluster.tf
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PS = ['127.0.0.1:2222']
WORKERS = ['127.0.0.1:2223', '127.0.0.1:2224']
# Small and fast, as in test_train_eval.py; --verbose shows every worker's progress lines.
TRAIN_FLAGS = ['--device', '-1', '--batch_size', '2', '--sequence_length', '16',
               '--hidden_units', '32', '--log_every_n_steps', '2', '--verbose']
# Generous: three TensorFlow processes start on a shared 2-core machine.
START_SECS = 180
READY = r'/job:worker/task:%d: session ready at global step (\d+) \((.*)\)'
# A progress line (--verbose shows them on the console): its global step.
PROGRESS = r'\bstep (\d+)  loss'
LOST_PS = 'lost its connection to the parameter server'


# --------------------------------------------------------------------------
# The cluster description
# --------------------------------------------------------------------------
def test_no_cluster_flags_and_no_tf_config_mean_one_process():
    assert cluster.task_from_flags(None, None, None, 0, tf_config=None) is None


def test_flags_describe_the_task_and_worker_0_is_the_chief():
    chief = cluster.task_from_flags(PS, WORKERS, 'worker', 0)
    assert chief.hosts == {'ps': PS, 'worker': WORKERS}
    assert chief.is_chief and chief.num_workers == 2 and chief.name == '/job:worker/task:0'
    other = cluster.task_from_flags(PS, WORKERS, 'worker', 1)
    assert not other.is_chief and other.address == WORKERS[1]
    assert not cluster.task_from_flags(PS, WORKERS, 'ps', 0).is_chief


def test_tf_config_chief_becomes_worker_0_and_the_workers_follow():
    spec = {'cluster': {'chief': ['10.0.0.1:2222'], 'worker': ['10.0.0.2:2222', '10.0.0.3:2222'],
                        'ps': ['10.0.0.4:2222']}}
    tasks = {kind: cluster.task_from_tf_config(json.dumps(dict(spec, task={'type': kind,
                                                                         'index': index})))
             for kind, index in (('chief', 0), ('worker', 1), ('ps', 0))}
    assert tasks['chief'].hosts['worker'] == ['10.0.0.1:2222', '10.0.0.2:2222', '10.0.0.3:2222']
    assert tasks['chief'].is_chief
    assert (tasks['worker'].job_name, tasks['worker'].task_index) == ('worker', 2)
    assert tasks['worker'].address == '10.0.0.3:2222'
    assert tasks['ps'].address == '10.0.0.4:2222'
    plain = json.dumps({'cluster': {'worker': WORKERS, 'ps': PS},
                        'task': {'type': 'worker', 'index': 0}})
    assert cluster.task_from_flags(None, None, None, 0, tf_config=plain).is_chief


@pytest.mark.parametrize('arguments, problem', [
    ((PS, None, 'worker', 0), 'missing --worker_hosts'),
    ((PS, WORKERS, None, 0), 'missing --job_name'),
    ((PS, WORKERS, 'worker', 2), 'task index 2 of job worker: the cluster has 2 worker task(s)'),
    ((PS, WORKERS, 'chief', 0), "job 'chief': expected ps or worker"),
    ((PS, ['127.0.0.1'], 'worker', 0), "address '127.0.0.1': expected host:port"),
    ((PS, PS + WORKERS, 'worker', 0), 'address used by two tasks: 127.0.0.1:2222'),
])
def test_a_bad_cluster_from_flags_is_refused_with_the_reason(arguments, problem):
    with pytest.raises(helper.InputError, match=re.escape(problem)):
        cluster.task_from_flags(*arguments)


@pytest.mark.parametrize('tf_config, problem', [
    ('{"cluster": ', 'TF_CONFIG: not a cluster description'),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}',
     'the cluster has no ps task'),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:1"], "evaluator": ["c:1"]}, '
     '"task": {"type": "evaluator", "index": 0}}', 'not evaluator (evaluate with eval.py --watch'),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:1"], "chief": ["c:1", "d:1"]}, '
     '"task": {"type": "chief", "index": 0}}', 'expected one chief task'),
])
def test_a_bad_tf_config_is_refused_with_the_reason(tf_config, problem):
    with pytest.raises(helper.InputError, match=re.escape(problem)):
        cluster.task_from_flags(None, None, None, 0, tf_config=tf_config)


def test_flags_and_tf_config_together_are_refused():
    tf_config = json.dumps({'cluster': {'worker': WORKERS, 'ps': PS},
                            'task': {'type': 'worker', 'index': 0}})
    with pytest.raises(helper.InputError, match='given twice, by TF_CONFIG and by --ps_hosts'):
        cluster.task_from_flags(PS, None, None, 0, tf_config=tf_config)


def test_workers_read_in_their_own_orders_and_the_chief_keeps_the_seed():
    seeds = [cluster.worker_seed(7, index) for index in range(4)]
    assert seeds[0] == 7 and len(set(seeds)) == 4
    assert seeds == [cluster.worker_seed(7, index) for index in range(4)]
    assert cluster.worker_seed(8, 1) != seeds[1]


def test_variables_go_to_the_ps_tasks_and_the_step_to_the_worker():
    task = cluster.task_from_flags(PS + ['127.0.0.1:2225'], WORKERS, 'worker', 1)
    with tf.Graph().as_default():
        with tf.device(cluster.device_setter(task, '/cpu:0')):
            first = tf.get_variable('first', [3])
            second = tf.get_variable('second', [3])
            total = tf.reduce_sum(first + second)
    assert {first.device, second.device} == {'/job:ps/task:0', '/job:ps/task:1'}
    assert total.device == '/job:worker/task:1/device:CPU:0'
    config = cluster.session_config(task, tf.ConfigProto(allow_soft_placement=True))
    assert list(config.device_filters) == ['/job:ps', '/job:worker/task:1']
    assert config.allow_soft_placement


# --------------------------------------------------------------------------
# 1 ps + 2 workers on 127.0.0.1
# --------------------------------------------------------------------------
def latest_step(train_dir):
    path = tf.train.latest_checkpoint(train_dir)
    return int(path.rsplit('-', 1)[1]) if path else None


def progress_steps(text):
    return [int(step) for step in re.findall(PROGRESS, text)]


@pytest.fixture
def local_cluster(tmp_path):
    """Makes LocalClusters in tmp_path; afterwards no process of theirs is left."""
    clusters = []

    def make(*train_flags):
        train_args = list(train_flags) + TRAIN_FLAGS
        made = LocalCluster(train_args, str(tmp_path / ('logs%d' % len(clusters))))
        clusters.append(made)
        return made

    yield make
    for made in clusters:
        made.stop()
        assert all(p.poll() is not None for p in made.processes.values())


@pytest.mark.slow
def test_one_ps_two_workers_train_to_max_steps_and_eval_reads_the_chief(tiny_dataset, tmp_path):
    """Through the launcher of `make cluster-demo`."""
    train_dir, log_dir = str(tmp_path / 'checkpoints'), str(tmp_path / 'logs')
    launcher = subprocess.run(
        [sys.executable, '-m', 'tools.local_cluster', '--num_ps', '1', '--num_workers', '2',
         '--log_dir', log_dir, '--', '--dataset_dir', tiny_dataset, '--train_dir', train_dir,
         '--max_steps', '30'] + TRAIN_FLAGS,
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert launcher.returncode == 0, launcher.stderr[-3000:]
    steps = {int(task): int(count) for task, count in
             re.findall(r'/job:worker/task:(\d) ran (\d+) steps', launcher.stderr)}
    assert steps[0] > 0 and steps[1] > 0
    # Asynchronous: the global step counts the steps of both workers.
    final = latest_step(train_dir)
    assert 30 <= final <= sum(steps.values())
    log = open(os.path.join(train_dir, 'log_train.txt')).read()
    assert log.count('==== train.py run') == 1 and 'job_name = worker' in log
    assert log.splitlines()[-1] == 'stopped at step %d (done)' % final
    # Only the chief writes train_dir; the other worker's progress is in its own output.
    with open(os.path.join(log_dir, 'worker1.log')) as handle:
        assert progress_steps(handle.read())

    result = subprocess.run(
        [sys.executable, os.path.join(REPO, 'eval.py'), '--dataset_dir', tiny_dataset,
         '--checkpoint', train_dir, '--portion', 'devel', '--device', '-1', '--noplots',
         '--json', str(tmp_path / 'eval.json'), '--predictions_dir', str(tmp_path / 'pred')],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    report = helper.read_json(str(tmp_path / 'eval.json'))
    assert report['step'] == final
    assert set(report['ccc']) == set(paths.DIMENSIONS)


@pytest.mark.slow
def test_sync_replicas_trains_to_max_steps(tiny_dataset, tmp_path, local_cluster):
    train_dir = str(tmp_path / 'checkpoints')
    local = local_cluster('--dataset_dir', tiny_dataset, '--train_dir', train_dir,
                          '--max_steps', '6', '--sync_replicas')
    local.start_all()
    assert local.wait_workers(START_SECS) == [0, 0], local.log('worker', 0)[-3000:]
    steps = worker_steps(local)
    # One global step per two gradients, whichever workers sent them.
    assert latest_step(train_dir) == 6
    assert all(steps.values()) and sum(steps.values()) >= 12


@pytest.mark.slow
def test_faults_a_worker_rejoins_the_chief_resumes_and_a_lost_ps_stops_the_workers(
        tiny_dataset, tmp_path, local_cluster):
    """One cluster through the three fault cases in turn (one start-up saved)."""
    train_dir = str(tmp_path / 'checkpoints')
    local = local_cluster('--dataset_dir', tiny_dataset, '--train_dir', train_dir,
                          '--save_interval_secs', '1')
    local.start_all()
    local.wait_for_log('worker', 1, PROGRESS, START_SECS)

    # A worker killed and restarted rejoins.
    local.kill('worker', 1)
    restart = len(local.log('worker', 1))
    local.start('worker', 1)
    rejoined = local.wait_for_log('worker', 1, READY % 1, START_SECS, after=restart)
    assert rejoined.group(2) == 'variables of the chief' and int(rejoined.group(1)) > 0
    local.wait_for_log('worker', 1, PROGRESS, START_SECS, after=rejoined.end())

    # The chief killed and restarted resumes from the latest checkpoint.
    local.kill('worker', 0)
    checkpoint = latest_step(train_dir)
    # Asynchronous: the other worker carries on without the chief.
    ahead = local.wait_for_log('worker', 1, PROGRESS, START_SECS,
                               after=len(local.log('worker', 1)))
    while int(ahead.group(1)) < checkpoint + 6:
        ahead = local.wait_for_log('worker', 1, PROGRESS, START_SECS, after=ahead.end())
    restarts = [len(local.log('worker', index)) for index in (0, 1)]
    local.start('worker', 0)
    resumed = local.wait_for_log('worker', 0, READY % 0, START_SECS, after=restarts[0])
    assert resumed.group(2) == 'restored model.ckpt-%d' % checkpoint
    assert int(resumed.group(1)) >= checkpoint
    # The restore took the shared global step back from where worker 1 had brought it.
    local.wait_for_log('worker', 1, r'\bstep (%s)  loss' % '|'.join(
        str(step) for step in range(checkpoint, int(ahead.group(1)))), START_SECS,
        after=restarts[1])
    local.wait_for_log('worker', 0, PROGRESS, START_SECS, after=resumed.end())

    # A lost ps stops both workers with a clear message...
    local.kill('ps', 0)
    assert local.wait_workers(60) == [1, 1]
    for index in (0, 1):
        assert LOST_PS in local.log('worker', index)
        assert 'Restart the ps task(s), then the workers' in local.log('worker', index)
    assert open(os.path.join(train_dir, 'log_train.txt')).read().splitlines()[-1].endswith(
        '(parameter server lost)')
    checkpoint = latest_step(train_dir)
    assert checkpoint > int(resumed.group(1))

    # ...and the restarted cluster resumes from the latest checkpoint.
    restarts = [len(local.log('worker', index)) for index in (0, 1)]
    local.start_all()
    resumed = local.wait_for_log('worker', 0, READY % 0, START_SECS, after=restarts[0])
    assert resumed.group(2) == 'restored model.ckpt-%d' % checkpoint
    assert int(resumed.group(1)) >= checkpoint
    local.wait_for_log('worker', 1, READY % 1, START_SECS, after=restarts[1])
    local.wait_for_log('worker', 0, PROGRESS, START_SECS, after=resumed.end())
    assert latest_step(train_dir) > checkpoint


@pytest.mark.slow
def test_train_refuses_half_a_cluster(tiny_dataset, tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, 'train.py'), '--dataset_dir', tiny_dataset,
         '--train_dir', str(tmp_path / 'checkpoints'), '--job_name', 'worker', '--device', '-1'],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert 'missing --ps_hosts, --worker_hosts' in result.stderr
    assert not os.path.exists(str(tmp_path / 'checkpoints'))
