"""Train the semantic + acoustic emotion model on the train TFRecords.

    python train.py --dataset_dir tfrecords/ --train_dir checkpoints/ [--max_steps N] [--device -1]

Writes into --train_dir: model.ckpt-N.{index,meta,data-*} and `checkpoint`
(every --save_interval_secs and when training stops), TensorBoard events
(losses, CCC per dimension, learning rate every --save_summaries_secs), a copy
of the dataset's dataset.json, model.json (the sizes eval.py, predict.py and
export_model.py need to rebuild the graph: hidden_units, frame_samples,
embedding_dim, and the --modality it hears) and log_train.txt (every flag of
each run, then progress lines).
Rerunning resumes from the latest checkpoint. Ctrl-C saves a checkpoint and exits.
"""

import contextlib
import datetime
import logging
import os
import shutil
import signal
import sys
import time

from absl import app, flags
import numpy as np
from tqdm import tqdm

import helper
import data_provider
import losses
import models

tf = helper.import_tensorflow()

# --------------------------------------------------------------------------
# Flags
# --------------------------------------------------------------------------
FLAGS = flags.FLAGS
# allow_override: tests and other scripts may import several of the pipeline's scripts.
DEFINE = dict(allow_override=True)
flags.DEFINE_string('dataset_dir', helper.tfrecords_dir(helper.DEFAULT_WORK_DIR),
                    'Directory with dataset.json and the train/ TFRecords (data_generator.py).',
                    **DEFINE)
flags.DEFINE_string('train_dir', 'checkpoints/',
                    'Where checkpoints, summaries, model.json, dataset.json and log_train.txt go; '
                    'training resumes from the latest checkpoint found here.', **DEFINE)
flags.DEFINE_integer('max_steps', None,
                     'Stop at this global step (counting steps of earlier runs); '
                     'default: train until stopped with Ctrl-C.', lower_bound=0, **DEFINE)
flags.DEFINE_integer('batch_size', 5, 'Windows per batch.', lower_bound=1, **DEFINE)
flags.DEFINE_integer('sequence_length', 100,
                     'Frames per window (250 ms each); any value, no TFRecord regeneration.',
                     lower_bound=1, **DEFINE)
flags.DEFINE_integer('hidden_units', models.DEFAULT_HIDDEN_UNITS,
                     'LSTM units (recorded in model.json; a resumed run must keep them).',
                     lower_bound=1, **DEFINE)
flags.DEFINE_enum('modality', models.DEFAULT_MODALITY, list(models.MODALITIES),
                  'What the model hears: both inputs, audio alone (zero embeddings) or text '
                  'alone (zero audio frames), through the same model (recorded in model.json; '
                  'a resumed run must keep it).', **DEFINE)
flags.DEFINE_float('learning_rate', 5e-4, 'Adam learning rate (beta1 0.9, beta2 0.99).',
                   lower_bound=0.0, **DEFINE)
flags.DEFINE_list('loss_weights', None,
                  'Comma list, one weight per dimension (arousal,valence), e.g. "1,1"; the '
                  'total loss is their normalised weighted mean. Default: plain mean.', **DEFINE)
flags.DEFINE_integer('save_interval_secs', 120, 'Seconds between checkpoints.', lower_bound=1,
                     **DEFINE)
flags.DEFINE_integer('save_summaries_secs', 60, 'Seconds between TensorBoard summaries.',
                     lower_bound=1, **DEFINE)
flags.DEFINE_integer('max_checkpoints', 5, 'How many recent checkpoints to keep.', lower_bound=1,
                     **DEFINE)
flags.DEFINE_integer('log_every_n_steps', 10, 'Steps between progress lines in log_train.txt.',
                     lower_bound=1, **DEFINE)
flags.DEFINE_integer('device', 0, 'GPU id to train on; -1 for the CPU.', **DEFINE)
flags.DEFINE_integer('seed', 0, 'Seed of weight initialisation, dropout and window shuffling.',
                     **DEFINE)
flags.DEFINE_bool('xla', False,
                  'Compile the training step with XLA (JIT). Same math; on this project\'s '
                  '2-core CPU it made steps slower (BENCHMARKS.md), so it is off by default.',
                  **DEFINE)
flags.DEFINE_bool('verbose', False, 'Development messages (shapes, variables, progress lines).',
                  **DEFINE)

@flags.validator('loss_weights', message='--loss_weights needs one number per dimension '
                 '(%s), none negative, not all zero' % ','.join(helper.DIMENSIONS))
def _valid_loss_weights(value):
    if value is None:
        return True
    try:
        weights = [float(w) for w in value]
    except ValueError:
        return False
    return len(weights) == len(helper.DIMENSIONS) and min(weights) >= 0 and sum(weights) > 0


LOG_FILE = 'log_train.txt'


# --------------------------------------------------------------------------
# The training directory: what a run leaves for the next one and for eval.
# --------------------------------------------------------------------------
def prepare_train_dir(dataset_dir, train_dir, hidden_units, modality=models.DEFAULT_MODALITY):
    """Copy dataset.json and write model.json into train_dir; refuse to resume
    from checkpoints made for other data, another model size or another modality."""
    dataset = data_provider.load_dataset_info(dataset_dir)
    config_path = os.path.join(train_dir, models.MODEL_CONFIG_FILE)
    if os.path.exists(config_path):
        previous = models.read_model_config(train_dir)
        if previous['hidden_units'] != hidden_units:
            raise helper.InputError(config_path, None, 'checkpoints here have hidden_units=%d, '
                                    'not --hidden_units=%d; use another --train_dir'
                                    % (previous['hidden_units'], hidden_units))
        if previous['modality'] != modality:
            raise helper.InputError(config_path, None, 'checkpoints here were trained with '
                                    'modality %r, not --modality=%s; use another --train_dir'
                                    % (previous['modality'], modality))
    source = os.path.join(dataset_dir, models.DATASET_FILE)
    copy = os.path.join(train_dir, models.DATASET_FILE)
    if os.path.exists(copy):
        # Resuming on different data would silently mix two datasets in one model.
        models.check_dataset_compatible(copy, source, keys=None)
    else:
        with helper.atomic_output(copy) as tmp_path:
            shutil.copyfile(source, tmp_path)
    models.write_model_config(train_dir, hidden_units, dataset, modality)


def log_flags(train_dir):
    """One block per run in log_train.txt: the date and every flag value."""
    path = os.path.join(train_dir, LOG_FILE)
    started = datetime.datetime.now().isoformat(' ', 'seconds')
    helper.append_line(path, '==== train.py run %s ====' % started)
    for flag in sorted(FLAGS.get_key_flags_for_module(sys.modules[__name__]),
                       key=lambda f: f.name):
        helper.append_line(path, '%s = %s' % (flag.name, flag.value))


# --------------------------------------------------------------------------
# The graph
# --------------------------------------------------------------------------
def xla_scope(xla):
    """Ops built inside are compiled by XLA when `xla`. The session's global
    JIT level (helper.session_config) only reaches GPU ops; this marks the
    CPU's too. Ops XLA cannot compile (the input queues) still run as usual."""
    return tf.xla.experimental.jit_scope() if xla else contextlib.nullcontext()


def build_training_graph(dataset_dir, loss_weights):
    batch = data_provider.get_split(dataset_dir, 'train', FLAGS.batch_size, FLAGS.sequence_length,
                                    is_training=True, seed=FLAGS.seed)
    mask = batch['mask']
    predictions = models.build_model(batch['audio'], batch['embeddings'], FLAGS.hidden_units,
                                     is_training=True, mask=mask, modality=FLAGS.modality)
    total_loss, dimension_loss = losses.ccc_loss(predictions, batch['labels'], mask, loss_weights)
    ccc = 1.0 - dimension_loss
    global_step = tf.train.get_or_create_global_step()
    optimizer = tf.train.AdamOptimizer(FLAGS.learning_rate, beta1=0.9, beta2=0.99)
    train_op = optimizer.minimize(total_loss, global_step=global_step)
    with tf.control_dependencies([train_op]):
        # Steps completed once this run's update is applied, the number its checkpoint takes.
        step_after = tf.identity(global_step.read_value())

    tf.summary.scalar('loss/total', total_loss)
    for index, name in enumerate(helper.DIMENSIONS):
        tf.summary.scalar('loss/%s' % name, dimension_loss[index])
        tf.summary.scalar('ccc/%s' % name, ccc[index])
    tf.summary.scalar('learning_rate', tf.constant(FLAGS.learning_rate))
    return {'global_step': global_step, 'step': step_after, 'loss': total_loss, 'ccc': ccc,
            'frames': tf.reduce_sum(tf.cast(mask, tf.float32))}


# --------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------
class StopRequest:
    """First Ctrl-C: finish the current step, save, exit. Second: abort at once."""

    def __init__(self):
        self.requested = False
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        self.requested = True
        logging.info('interrupted: saving a checkpoint and stopping (Ctrl-C again to abort)')
        signal.signal(signal.SIGINT, signal.default_int_handler)


def progress_line(step, loss, ccc, frames_per_second):
    return 'step %d  loss %.4f  %s  frames/s %.1f' % (
        step, loss, '  '.join('ccc_%s %.4f' % (n, c) for n, c in zip(helper.DIMENSIONS, ccc)),
        frames_per_second)


def train(ops, train_dir, session_config):
    hooks = []
    if FLAGS.max_steps is not None:
        hooks.append(tf.train.StopAtStepHook(last_step=FLAGS.max_steps))
    scaffold = tf.train.Scaffold(saver=tf.train.Saver(max_to_keep=FLAGS.max_checkpoints))
    stop = StopRequest()
    log_path = os.path.join(train_dir, LOG_FILE)
    fetches = {key: ops[key] for key in ('step', 'loss', 'ccc', 'frames')}
    with tf.train.MonitoredTrainingSession(
            checkpoint_dir=train_dir, scaffold=scaffold, hooks=hooks, config=session_config,
            save_checkpoint_secs=FLAGS.save_interval_secs,
            save_summaries_secs=FLAGS.save_summaries_secs) as session:
        start_step = step = session.run(ops['global_step'])
        logging.info('training from step %d in %s', start_step, train_dir)
        frames, since = 0.0, time.time()
        with tqdm(initial=start_step, total=FLAGS.max_steps, unit='step', file=sys.stderr,
                  dynamic_ncols=True) as bar:
            while not session.should_stop() and not stop.requested:
                result = session.run(fetches)
                step, frames = result['step'], frames + result['frames']
                bar.update(1)
                if step % FLAGS.log_every_n_steps == 0:
                    line = progress_line(step, result['loss'], result['ccc'],
                                         frames / (time.time() - since))
                    helper.append_line(log_path, line)
                    helper.development_msg(line)
                    bar.set_postfix(loss='%.4f' % result['loss'])
                    frames, since = 0.0, time.time()
    # Leaving the session saved the final checkpoint.
    reason = 'interrupted' if stop.requested else 'done'
    helper.append_line(log_path, 'stopped at step %d (%s)' % (step, reason))
    logging.info('%s: %d steps this run, checkpoint %s-%d in %s', reason, step - start_step,
                 models.CHECKPOINT_PREFIX, step, train_dir)


def main(argv):
    del argv
    helper.setup_logging(FLAGS.verbose)
    device = helper.configure_device(FLAGS.device)
    os.makedirs(FLAGS.train_dir, exist_ok=True)
    try:
        prepare_train_dir(FLAGS.dataset_dir, FLAGS.train_dir, FLAGS.hidden_units,
                          FLAGS.modality)
    except helper.InputError as error:
        logging.error('%s', error)
        return 1
    log_flags(FLAGS.train_dir)

    np.random.seed(FLAGS.seed)
    tf.set_random_seed(FLAGS.seed)
    loss_weights = [float(w) for w in FLAGS.loss_weights] if FLAGS.loss_weights else None
    with tf.device(device), xla_scope(FLAGS.xla):
        ops = build_training_graph(FLAGS.dataset_dir, loss_weights)
    models.model_summary()
    train(ops, FLAGS.train_dir, helper.session_config(FLAGS.device, xla=FLAGS.xla))
    return 0


if __name__ == '__main__':
    app.run(main)
