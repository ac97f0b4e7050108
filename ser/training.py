"""Training (train.py): the training directory, the graph (the input queues,
the model, the CCC loss, Adam) and the loop with its checkpoints, summaries,
log_train.txt and Ctrl-C handling, in one process or as one task of a
cluster (ser.cluster).

The training directory holds what a later run and eval.py, predict.py and
export_model.py need: model.ckpt-N, `checkpoint`, TensorBoard events,
dataset.json (the dataset's, saved through DatasetInfo so its paths stay
relative), model.json and log_train.txt.
"""

import contextlib
import dataclasses
import datetime
import logging
import os
import signal
import sys
import time

import numpy as np
from tqdm import tqdm

import data_provider
import helper
import losses
import models
from ser import checkpoints
from ser import defaults
from ser import cluster
from ser import mixed_precision
from ser import paths
from ser.dataset import DatasetInfo

tf = helper.import_tensorflow()

LOG_FILE = 'log_train.txt'


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything train.py's flags decide, built by keyword (a changed copy:
    dataclasses.replace).

    batch_size          windows per training batch
    sequence_length     frames per training window
    hidden_units        LSTM units
    modality            what the model hears: both, audio or text (defaults.MODALITIES)
    learning_rate       Adam's learning rate
    loss_weights        one weight per dimension of the CCC loss; None: their mean
    max_steps           the global step training stops at; None: no end
    save_interval_secs  seconds between checkpoints
    save_summaries_secs seconds between TensorBoard summaries
    max_checkpoints     checkpoints kept; older ones are removed
    log_every_n_steps   steps between log lines
    device              GPU index, or -1 for the CPU
    seed                the seed of the weights and of the batches' order
    xla                 whether the training step is compiled by XLA
    precision           defaults.PRECISIONS; 'auto' is resolved by train()
    windows             how segments become windows (defaults.WINDOW_SCHEMES)
    skip_padding        whether padded frames are left out of the computation
    sync_replicas       in a cluster: SyncReplicasOptimizer
    """
    batch_size: int = 5
    sequence_length: int = 100
    hidden_units: int = defaults.HIDDEN_UNITS
    modality: str = defaults.MODALITY
    learning_rate: float = 5e-4
    loss_weights: list = None
    max_steps: int = None
    save_interval_secs: int = 120
    save_summaries_secs: int = 60
    max_checkpoints: int = 5
    log_every_n_steps: int = 10
    device: int = 0
    seed: int = 0
    xla: bool = False
    precision: str = defaults.PRECISION
    windows: str = defaults.WINDOWS
    skip_padding: bool = True
    sync_replicas: bool = False


# --------------------------------------------------------------------------
# The training directory: what a run leaves for the next one and for eval.
# --------------------------------------------------------------------------
def prepare_train_dir(dataset_dir, train_dir, hidden_units, modality=defaults.MODALITY,
                      precision=None):
    """Save dataset.json and model.json (with `precision`, the one this run
    computes in) into train_dir; refuse to resume from checkpoints made for
    other data, another model size or another modality. Returns the
    dataset's DatasetInfo."""
    dataset = DatasetInfo.load(dataset_dir)
    config_path = os.path.join(train_dir, checkpoints.MODEL_CONFIG_FILE)
    if os.path.exists(config_path):
        previous = checkpoints.read_model_config(train_dir)
        if previous['hidden_units'] != hidden_units:
            raise helper.InputError(config_path, None, 'checkpoints here have hidden_units=%d, '
                                    'not --hidden_units=%d; use another --train_dir'
                                    % (previous['hidden_units'], hidden_units))
        if previous['modality'] != modality:
            raise helper.InputError(config_path, None, 'checkpoints here were trained with '
                                    'modality %r, not --modality=%s; use another --train_dir'
                                    % (previous['modality'], modality))
    if os.path.exists(os.path.join(train_dir, 'dataset.json')):
        # Resuming on different data would silently mix two datasets in one model.
        DatasetInfo.load(train_dir).check_compatible(dataset, same_data=True)
    else:
        DatasetInfo.load(dataset_dir).save(train_dir)
    checkpoints.write_model_config(train_dir, hidden_units, dataset, modality, precision)
    return dataset


def log_run(train_dir, flag_values):
    """One block per run in log_train.txt: the date and every flag value."""
    path = os.path.join(train_dir, LOG_FILE)
    started = datetime.datetime.now().isoformat(' ', 'seconds')
    helper.append_line(path, '==== train.py run %s ====' % started)
    for name in sorted(flag_values):
        helper.append_line(path, '%s = %s' % (name, flag_values[name]))


# --------------------------------------------------------------------------
# The graph
# --------------------------------------------------------------------------
def xla_scope(xla):
    """Ops built inside are compiled by XLA when `xla`. The session's global
    JIT level (helper.session_config) only reaches GPU ops; this marks the
    CPU's too. Ops XLA cannot compile (the input queues) still run as usual."""
    return tf.xla.experimental.jit_scope() if xla else contextlib.nullcontext()


def make_optimizer(settings):
    return tf.train.AdamOptimizer(settings.learning_rate, beta1=0.9, beta2=0.99)


def training_step(batch, settings, optimizer=None):
    """The loss, CCC per dimension and update of one batch (a dict with
    audio, embeddings, labels, mask) by `optimizer` (default: Adam of
    make_optimizer). Returns (train_op, total loss, loss per dimension)."""
    predictions = models.build_model(batch['audio'], batch['embeddings'], settings.hidden_units,
                                     is_training=True, mask=batch['mask'],
                                     modality=settings.modality, reset=batch.get('reset'),
                                     skip_padding=settings.skip_padding)
    total_loss, dimension_loss = losses.ccc_loss(predictions, batch['labels'], batch['mask'],
                                                 settings.loss_weights)
    optimizer = optimizer or make_optimizer(settings)
    global_step = tf.train.get_or_create_global_step()
    if settings.precision == 'fp16':
        train_op = mixed_precision.loss_scaled_minimize(optimizer, total_loss, global_step)
    else:
        train_op = optimizer.minimize(total_loss, global_step=global_step)
    return train_op, total_loss, dimension_loss


def build_training_graph(dataset_dir, settings, task=None):
    """The ops run_loop fetches, and in 'hooks' the session hooks the graph
    needs (SyncReplicasOptimizer's, with --sync_replicas on cluster `task`)."""
    batch = data_provider.get_split(dataset_dir, 'train', settings.batch_size,
                                    settings.sequence_length, is_training=True,
                                    seed=settings.seed, windows=settings.windows)
    optimizer, hooks = make_optimizer(settings), []
    if settings.sync_replicas:
        optimizer, sync_hook = cluster.sync_replicas(optimizer, task)
        hooks.append(sync_hook)
    train_op, total_loss, dimension_loss = training_step(batch, settings, optimizer)
    ccc = 1.0 - dimension_loss
    global_step = tf.train.get_or_create_global_step()
    with tf.control_dependencies([train_op]):
        # Steps completed once this run's update is applied, the number its checkpoint takes.
        step_after = tf.identity(global_step.read_value())

    tf.summary.scalar('loss/total', total_loss)
    for index, name in enumerate(paths.DIMENSIONS):
        tf.summary.scalar('loss/%s' % name, dimension_loss[index])
        tf.summary.scalar('ccc/%s' % name, ccc[index])
    tf.summary.scalar('learning_rate', tf.constant(settings.learning_rate))
    return {'global_step': global_step, 'step': step_after, 'loss': total_loss, 'ccc': ccc,
            'frames': tf.reduce_sum(tf.cast(batch['mask'], tf.float32)), 'hooks': hooks}


# --------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------
class StopRequest:
    """While active, the first Ctrl-C finishes the current step, saves and
    exits; a second aborts at once. The previous handler is back afterwards."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc_info):
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame):
        self.requested = True
        logging.info('interrupted: saving a checkpoint and stopping (Ctrl-C again to abort)')
        signal.signal(signal.SIGINT, signal.default_int_handler)


def progress_line(step, loss, ccc, frames_per_second):
    return 'step %d  loss %.4f  %s  frames/s %.1f' % (
        step, loss, '  '.join('ccc_%s %.4f' % (n, c) for n, c in zip(paths.DIMENSIONS, ccc)),
        frames_per_second)


def open_session(train_dir, scaffold, hooks, config, settings, task=None, server=None):
    """One process: MonitoredTrainingSession on train_dir. In a cluster: the
    session of ser.cluster on this task's server (the chief's writes train_dir)."""
    if task is None:
        return tf.train.MonitoredTrainingSession(
            checkpoint_dir=train_dir, scaffold=scaffold, hooks=hooks, config=config,
            save_checkpoint_secs=settings.save_interval_secs,
            save_summaries_secs=settings.save_summaries_secs)
    return cluster.monitored_session(
        task, server, train_dir if task.is_chief else None, scaffold, hooks,
        cluster.session_config(task, config), settings.save_interval_secs,
        settings.save_summaries_secs)


def run_loop(ops, train_dir, settings, task=None, server=None):
    """Train until --max_steps, Ctrl-C or (in a cluster) a lost ps. Progress
    lines go into log_train.txt, except on a worker that is not the chief
    (they show with --verbose there). Returns the last global step."""
    chief = task is None or task.is_chief
    hooks = list(ops['hooks'])
    if settings.max_steps is not None:
        hooks.append(tf.train.StopAtStepHook(last_step=settings.max_steps))
    # Relative paths in the `checkpoint` state file: a moved directory still resumes.
    scaffold = tf.train.Scaffold(saver=tf.train.Saver(max_to_keep=settings.max_checkpoints,
                                                      save_relative_paths=True))
    log_path = os.path.join(train_dir, LOG_FILE)
    fetches = {key: ops[key] for key in ('step', 'loss', 'ccc', 'frames')}
    config = mixed_precision.session_config(settings.device, xla=settings.xla,
                                            precision=settings.precision)
    ran = 0
    try:
        with StopRequest() as stop, open_session(train_dir, scaffold, hooks, config, settings,
                                                 task, server) as session:
            start_step = step = session.run(ops['global_step'])
            logging.info('training from step %d in %s', start_step,
                         train_dir if chief else task.name)
            frames, since = 0.0, time.time()
            with tqdm(initial=start_step, total=settings.max_steps, unit='step',
                      file=sys.stderr, dynamic_ncols=True) as bar:
                while not session.should_stop() and not stop.requested:
                    result = session.run(fetches)
                    previous, step = step, result['step']
                    frames, ran = frames + result['frames'], ran + 1
                    # Other workers' updates move the global step too: a line
                    # each time it passes a multiple of log_every_n_steps.
                    bar.update(step - previous)
                    if step // settings.log_every_n_steps > previous // settings.log_every_n_steps:
                        line = progress_line(step, result['loss'], result['ccc'],
                                             frames / (time.time() - since))
                        if chief:
                            helper.append_line(log_path, line)
                        helper.development_msg(line)
                        bar.set_postfix(loss='%.4f' % result['loss'])
                        frames, since = 0.0, time.time()
    except cluster.ParameterServerLost:
        if chief:
            helper.append_line(log_path, 'stopped at step %d (parameter server lost)' % step)
        raise
    # Leaving the session saved the final checkpoint.
    reason = 'interrupted' if stop.requested else 'done'
    if task is not None:
        logging.info('%s ran %d steps; global step %d', task.name, ran, step)
        if not chief:
            return step
        # The chief's last checkpoint also holds the steps other workers ran meanwhile.
        step = checkpoints.available_steps(train_dir)[-1]
    helper.append_line(log_path, 'stopped at step %d (%s)' % (step, reason))
    logging.info('%s: %d steps this run, checkpoint %s-%d in %s', reason, step - start_step,
                 checkpoints.CHECKPOINT_PREFIX, step, train_dir)
    return step


def train(dataset_dir, train_dir, settings, flag_values=None, task=None):
    """Train on the train portion of `dataset_dir` into `train_dir`, resuming
    from its latest checkpoint; `flag_values` ({name: value}) go into
    log_train.txt. Returns the last step.

    `task` (ser.cluster.Task) makes this process one task of a cluster: a ps
    serves until the process is stopped; a worker trains with its variables
    on the ps tasks and its own input order, and only the chief (worker 0)
    writes train_dir. ser.cluster.ParameterServerLost ends a worker whose
    ps went away."""
    if task is not None and task.job_name == 'ps':
        cluster.serve(task)
    device = helper.configure_device(settings.device)
    requested = settings.precision
    if task is not None and requested == 'auto':
        # With the variables on parameter servers, oneDNN's bf16 rewrite leaves
        # a fused convolution no kernel runs: a cluster trains in fp32.
        requested = 'fp32'
    precision = mixed_precision.choose_precision(requested, settings.device)
    if precision == 'fp16' and settings.sync_replicas:
        # The loss scale skips a step whose gradients overflow, which the
        # replicas' shared gradient queue has no way to do.
        raise helper.InputError('--precision', None, 'fp16 (its loss scale) does not run with '
                                '--sync_replicas')
    logging.info('precision %s%s, %s windows, padding %s', precision,
                 '' if precision == settings.precision else ' (--precision %s)' % settings.precision,
                 settings.windows, 'skipped' if settings.skip_padding else 'computed')
    settings = dataclasses.replace(settings, precision=precision)
    if task is None or task.is_chief:
        os.makedirs(train_dir, exist_ok=True)
        prepare_train_dir(dataset_dir, train_dir, settings.hidden_units, settings.modality,
                          precision)
        log_run(train_dir, flag_values or dataclasses.asdict(settings))
        helper.append_line(os.path.join(train_dir, LOG_FILE), 'precision in use = %s' % precision)
    else:
        DatasetInfo.load(dataset_dir)
    server = None
    if task is not None:
        settings = dataclasses.replace(settings,
                                       seed=cluster.worker_seed(settings.seed, task.task_index))
        server = cluster.start_server(task, mixed_precision.session_config(
            settings.device, xla=settings.xla, precision=settings.precision))
        device = cluster.device_setter(task, device)
    np.random.seed(settings.seed)
    with tf.Graph().as_default():
        tf.set_random_seed(settings.seed)
        with tf.device(device), xla_scope(settings.xla):
            ops = build_training_graph(dataset_dir, settings, task)
        models.model_summary()
        return run_loop(ops, train_dir, settings, task, server)
