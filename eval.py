"""Evaluate a checkpoint on one portion: CCC per dimension over the portion.

    python eval.py --portion devel --checkpoint checkpoints/ [--steps N] [--device -1]
    python eval.py --watch ...      # follow a training run, keep the best checkpoint

Every recording of the portion runs whole, frames in order, padding excluded;
CCC is computed over the concatenation of all recordings. Results: a table on
stdout, one line appended to <checkpoint>/log_eval.txt, optionally --json, and
per recording <Id>.csv (timestamp,arousal_pred,valence_pred,arousal,valence)
and <Id>.png under --predictions_dir.

The model hears what it was trained to hear (the modality in model.json:
both, audio or text); another --modality is refused unless
--allow_modality_mismatch. The JSON and the log line record the modality used.

--watch evaluates each new checkpoint as train.py writes it and keeps the best
by mean CCC in <checkpoint>/best/: that checkpoint's files, model.json,
dataset.json and best.json, so `--checkpoint <checkpoint>/best` works with
eval.py, predict.py and export_model.py.
"""

import datetime
import logging
import os
import re
import shutil
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
                    'Directory with dataset.json and the portion\'s TFRecords.', **DEFINE)
flags.DEFINE_enum('portion', 'devel', list(helper.PORTIONS), 'Portion to evaluate.', **DEFINE)
flags.DEFINE_string('checkpoint', 'checkpoints/',
                    'Checkpoint directory written by train.py (model.ckpt-N, model.json, '
                    'dataset.json).', **DEFINE)
flags.DEFINE_integer('steps', None, 'Evaluate model.ckpt-<steps>; default: the latest.',
                     lower_bound=0, **DEFINE)
flags.DEFINE_integer('device', 0, 'GPU id to run on; -1 for the CPU.', **DEFINE)
flags.DEFINE_string('json', None, 'Also write the metrics to this JSON file.', **DEFINE)
flags.DEFINE_string('predictions_dir', None,
                    'Where the per-recording CSV and PNG go; default predictions/<portion>/.',
                    **DEFINE)
flags.DEFINE_bool('plots', True, 'Draw a PNG per recording beside its CSV.', **DEFINE)
flags.DEFINE_enum('modality', None, list(models.MODALITIES),
                  'What the model hears: both, audio (zero embeddings) or text (zero audio '
                  'frames); default: the modality the checkpoint was trained with (model.json).',
                  **DEFINE)
flags.DEFINE_bool('allow_modality_mismatch', False,
                  'Run with a --modality other than the checkpoint\'s instead of refusing.',
                  **DEFINE)
flags.DEFINE_bool('watch', False,
                  'Evaluate every new checkpoint as training writes it and keep the best '
                  '(mean CCC) in <checkpoint>/best/.', **DEFINE)
flags.DEFINE_integer('watch_interval_secs', 30, 'With --watch: seconds between looks for a new '
                     'checkpoint.', lower_bound=1, **DEFINE)
flags.DEFINE_integer('watch_timeout_secs', 900, 'With --watch: stop after this many seconds '
                     'without a new checkpoint.', lower_bound=1, **DEFINE)
flags.DEFINE_bool('verbose', False, 'Development messages (variables, per-recording CCC).',
                  **DEFINE)

LOG_FILE = 'log_eval.txt'
BEST_DIR = 'best'
BEST_FILE = 'best.json'
CSV_HEADER = ['timestamp'] + ['%s_pred' % d for d in helper.DIMENSIONS] + list(helper.DIMENSIONS)


# --------------------------------------------------------------------------
# Running the model over a portion
# --------------------------------------------------------------------------
def check_compatible(checkpoint_dir, dataset_dir):
    """The checkpoint must have been trained on data shaped like the dataset's."""
    reference = os.path.join(checkpoint_dir, models.DATASET_FILE)
    if not os.path.isfile(reference):
        raise helper.InputError(reference, None, 'file not found: the checkpoint directory must '
                                'hold the dataset.json copy train.py writes')
    data_provider.load_dataset_info(dataset_dir)
    models.check_dataset_compatible(reference, os.path.join(dataset_dir, models.DATASET_FILE))


def predict_portion(prefix, config, dataset_dir, portion, device):
    """[{id, timestamps [N], predictions [N,2], labels [N,2]}] for every
    recording of the portion, in id order, padding removed."""
    n_recordings = len(data_provider.portion_files(
        dataset_dir, data_provider.load_dataset_info(dataset_dir), portion))
    graph = tf.Graph()
    with graph.as_default(), tf.device(helper.configure_device(device)):
        batch = data_provider.get_split(dataset_dir, portion, 1, None, is_training=False)
        predictions = models.build_model(batch['audio'], batch['embeddings'],
                                         config['hidden_units'], is_training=False,
                                         mask=batch['mask'], modality=config['modality'])
        fetches = dict(batch, predictions=predictions)
        del fetches['audio'], fetches['embeddings']
        initialise = [tf.global_variables_initializer(), tf.local_variables_initializer()]
        results = []
        with tf.Session(config=helper.session_config(device)) as session:
            session.run(initialise)
            models.restore(session, prefix)
            coordinator = tf.train.Coordinator()
            threads = tf.train.start_queue_runners(session, coordinator)
            try:
                for _ in tqdm(range(n_recordings), desc=portion, unit='rec', file=sys.stderr,
                              dynamic_ncols=True):
                    results.append(unpad(session.run(fetches)))
            finally:
                coordinator.request_stop()
                coordinator.join(threads)
    return results


def unpad(batch):
    """The one recording of a batch of 1, with its padding frames dropped."""
    real = batch['mask'][0] > 0
    return {'id': batch['id'][0].decode('utf-8'), 'timestamps': batch['timestamps'][0][real],
            'predictions': batch['predictions'][0][real], 'labels': batch['labels'][0][real]}


def portion_metrics(recordings):
    """CCC per dimension and their mean over the concatenated recordings."""
    predictions = np.concatenate([r['predictions'] for r in recordings])
    labels = np.concatenate([r['labels'] for r in recordings])
    ccc = losses.ccc(predictions, labels)
    return {'frames': int(len(labels)),
            'ccc': {name: float(value) for name, value in zip(helper.DIMENSIONS, ccc)},
            'mean_ccc': float(np.mean(ccc))}


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------
def write_recording(recording, predictions_dir, plot):
    path = os.path.join(predictions_dir, recording['id'] + '.csv')
    rows = [[int(t)] + ['%.6f' % v for v in np.concatenate([p, l])]
            for t, p, l in zip(recording['timestamps'], recording['predictions'],
                               recording['labels'])]
    helper.write_csv(path, CSV_HEADER, rows)
    if plot:
        plot_recording(recording, os.path.join(predictions_dir, recording['id'] + '.png'))


def plot_recording(recording, path):
    """Prediction against gold over time, one panel per dimension."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    seconds = recording['timestamps'] / 1000.0
    figure, axes = plt.subplots(len(helper.DIMENSIONS), 1, figsize=(10, 5), sharex=True)
    for index, (axis, name) in enumerate(zip(axes, helper.DIMENSIONS)):
        gold, predicted = recording['labels'][:, index], recording['predictions'][:, index]
        axis.plot(seconds, gold, color='black', linewidth=1, label='gold')
        axis.plot(seconds, predicted, color='tab:red', linewidth=1, label='prediction')
        axis.set_ylabel(name)
        axis.set_ylim(-1.05, 1.05)
        axis.set_title('%s  CCC %.3f' % (name, losses.ccc(predicted, gold)), fontsize=9)
    axes[0].legend(loc='upper right', fontsize=8)
    axes[-1].set_xlabel('time (s)')
    figure.suptitle(recording['id'])
    figure.tight_layout()
    with helper.atomic_output(path) as tmp_path:
        figure.savefig(tmp_path, format='png', dpi=80)
    plt.close(figure)


def report(metrics, portion, prefix, step, checkpoint_dir, json_path):
    """Table on stdout, a line in log_eval.txt, and the JSON when asked."""
    lines = ['portion %s, checkpoint %s (step %d), modality %s, %d frames' % (
                 portion, prefix, step, metrics['modality'], metrics['frames']),
             '%-10s %8s' % ('dimension', 'CCC')]
    lines += ['%-10s %8.4f' % (name, metrics['ccc'][name]) for name in helper.DIMENSIONS]
    lines.append('%-10s %8.4f' % ('mean', metrics['mean_ccc']))
    print('\n'.join(lines))
    scores = '  '.join('ccc_%s %.4f' % (name, metrics['ccc'][name]) for name in helper.DIMENSIONS)
    helper.append_line(os.path.join(checkpoint_dir, LOG_FILE),
                       '%s  portion %s  step %d  frames %d  %s  mean_ccc %.4f  modality %s' % (
                           datetime.datetime.now().isoformat(' ', 'seconds'), portion, step,
                           metrics['frames'], scores, metrics['mean_ccc'], metrics['modality']))
    if json_path:
        helper.write_json(json_path, dict(metrics, portion=portion, checkpoint=prefix, step=step))


def evaluate(prefix, step, checkpoint_dir, config, restore_from=None):
    """Evaluate one checkpoint on --portion and write every output. The
    variables come from `restore_from` when given (a staged copy of prefix)."""
    recordings = predict_portion(restore_from or prefix, config, FLAGS.dataset_dir, FLAGS.portion,
                                 FLAGS.device)
    predictions_dir = FLAGS.predictions_dir or os.path.join('predictions', FLAGS.portion)
    for recording in recordings:
        write_recording(recording, predictions_dir, FLAGS.plots)
        helper.development_msg('%s: %d frames, CCC %s', recording['id'],
                               len(recording['labels']),
                               losses.ccc(recording['predictions'], recording['labels']))
    metrics = dict(portion_metrics(recordings), modality=config['modality'])
    report(metrics, FLAGS.portion, prefix, step, checkpoint_dir, FLAGS.json)
    return metrics


# --------------------------------------------------------------------------
# --watch: follow training, keep the best checkpoint
# --------------------------------------------------------------------------
def stage(prefix, staging_dir):
    """Hard-link (or copy) a checkpoint's files aside, so that the trainer's
    clean-up of old checkpoints cannot remove them while they are evaluated.
    Returns the staged prefix, or None when the checkpoint is already gone."""
    shutil.rmtree(staging_dir, ignore_errors=True)
    os.makedirs(staging_dir)
    try:
        files = models.checkpoint_files(prefix)
        for path in files:
            link_or_copy(path, os.path.join(staging_dir, os.path.basename(path)))
    except FileNotFoundError:
        files = []
    staged = os.path.join(staging_dir, os.path.basename(prefix))
    if not any(path.endswith('.index') for path in files):
        shutil.rmtree(staging_dir, ignore_errors=True)
        return None
    return staged


def link_or_copy(path, target):
    try:
        os.link(path, target)
    except FileNotFoundError:
        raise
    except OSError:  # a file system without hard links
        shutil.copy2(path, target)


def read_best(best_dir, portion):
    """The best result so far on this portion, or None."""
    path = os.path.join(best_dir, BEST_FILE)
    if not os.path.isfile(path):
        return None
    best = helper.read_json(path)
    return best if best.get('portion') == portion else None


def keep_best(staged_prefix, step, metrics, checkpoint_dir, best_dir):
    """Make the staged checkpoint <checkpoint>/best/: its files, model.json,
    dataset.json, a `checkpoint` state file, and best.json (written last)."""
    name = os.path.basename(staged_prefix)
    previous = [n for n in helper.list_dir(best_dir)
                if n.startswith(models.CHECKPOINT_PREFIX + '-') and not n.startswith(name + '.')]
    # The new checkpoint is complete in best/ before the previous one goes.
    for path in models.checkpoint_files(staged_prefix):
        os.replace(path, os.path.join(best_dir, os.path.basename(path)))
    for old in previous:
        os.remove(os.path.join(best_dir, old))
    for companion in (models.MODEL_CONFIG_FILE, models.DATASET_FILE):
        with helper.atomic_output(os.path.join(best_dir, companion)) as tmp_path:
            shutil.copyfile(os.path.join(checkpoint_dir, companion), tmp_path)
    # Given as a path like best_dir's, TensorFlow records it relative to best_dir.
    tf.train.update_checkpoint_state(best_dir, os.path.join(best_dir, name))
    helper.write_json(os.path.join(best_dir, BEST_FILE), dict(
        metrics, portion=FLAGS.portion, step=step, checkpoint=os.path.join(best_dir, name),
        date=datetime.datetime.now().isoformat(' ', 'seconds')))
    logging.info('new best: step %d, mean CCC %.4f -> %s', step, metrics['mean_ccc'], best_dir)


def watch(checkpoint_dir, config):
    best_dir = os.path.join(checkpoint_dir, BEST_DIR)
    staging_dir = os.path.join(best_dir, '.staging')
    best = read_best(best_dir, FLAGS.portion)
    evaluated = 0
    for prefix in tf.train.checkpoints_iterator(checkpoint_dir, FLAGS.watch_interval_secs,
                                                timeout=FLAGS.watch_timeout_secs):
        step = step_of(prefix)
        staged = stage(prefix, staging_dir)
        if staged is None:
            logging.warning('%s was removed before it could be evaluated', prefix)
            continue
        metrics = evaluate(prefix, step, checkpoint_dir, config, restore_from=staged)
        evaluated += 1
        if best is None or metrics['mean_ccc'] > best['mean_ccc']:
            keep_best(staged, step, metrics, checkpoint_dir, best_dir)
            best = dict(metrics, step=step)
        shutil.rmtree(staging_dir, ignore_errors=True)
    logging.info('no new checkpoint for %d s: stopping after %d evaluation(s); best %s',
                 FLAGS.watch_timeout_secs, evaluated,
                 'none' if best is None else 'step %d, mean CCC %.4f' % (best['step'],
                                                                         best['mean_ccc']))


def step_of(prefix):
    match = re.search(r'-(\d+)$', prefix)
    if not match:
        raise helper.InputError(prefix, None, 'not a %s-N checkpoint' % models.CHECKPOINT_PREFIX)
    return int(match.group(1))


def main(argv):
    del argv
    helper.setup_logging(FLAGS.verbose)
    helper.configure_device(FLAGS.device)
    try:
        check_compatible(FLAGS.checkpoint, FLAGS.dataset_dir)
        config = models.read_model_config(FLAGS.checkpoint)
        config['modality'] = models.choose_modality(
            os.path.join(FLAGS.checkpoint, models.MODEL_CONFIG_FILE), config['modality'],
            FLAGS.modality, FLAGS.allow_modality_mismatch)
        if FLAGS.watch:
            watch(FLAGS.checkpoint, config)
        else:
            prefix, step = models.checkpoint_path(FLAGS.checkpoint, FLAGS.steps)
            evaluate(prefix, step, FLAGS.checkpoint, config)
    except helper.InputError as error:
        logging.error('%s', error)
        return 1
    return 0


if __name__ == '__main__':
    app.run(main)
