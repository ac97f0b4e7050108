"""Evaluation (eval.py): a checkpoint over every segment of a portion, whole,
frames in order, padding excluded; CCC over the concatenated segments; the
outputs (a table, log_eval.txt, JSON, per-segment predictions and plots); and
--watch, which follows a training run and keeps its best checkpoint."""

import dataclasses
import datetime
import logging
import os
import re
import shutil
import sys

import numpy as np
from tqdm import tqdm

import helper
import losses
import models
from ser import checkpoints
from ser import defaults
from ser import inference, records
from ser import mixed_precision
from ser import paths
from ser.dataset import DatasetInfo

tf = helper.import_tensorflow()

LOG_FILE = 'log_eval.txt'
BEST_DIR = 'best'
BEST_FILE = 'best.json'
CSV_HEADER = ['timestamp'] + ['%s_pred' % d for d in paths.DIMENSIONS] + list(paths.DIMENSIONS)


@dataclasses.dataclass(frozen=True)
class Options:
    """What to evaluate on and where the outputs go, built by keyword.

    dataset_dir      directory with dataset.json and the portion's TFRecords
    portion          the portion evaluated (train, devel or test)
    device           GPU index, or -1 for the CPU
    predictions_dir  where the per-segment CSV and PNG go; None: predictions/<portion>
    plots            whether a PNG is drawn beside each segment's CSV
    json_path        a JSON file the metrics are also written to, or None
    precision        the model's arithmetic, one of defaults.PRECISIONS (eval.py resolves
                     auto first, so that the outputs name what ran)
    chunk_seconds    seconds per chunk a segment runs in; 0: each segment in one pass
    """
    dataset_dir: str
    portion: str = 'devel'
    device: int = 0
    predictions_dir: str = None
    plots: bool = True
    json_path: str = None
    precision: str = defaults.PRECISION
    chunk_seconds: float = 0.0

    @property
    def predictions(self):
        return self.predictions_dir or os.path.join('predictions', self.portion)


# --------------------------------------------------------------------------
# Running the model over a portion
# --------------------------------------------------------------------------
def check_compatible(checkpoint_dir, dataset_dir):
    """The checkpoint must have been trained on data shaped like the
    dataset's. Returns the dataset's DatasetInfo."""
    if not os.path.isfile(os.path.join(checkpoint_dir, 'dataset.json')):
        raise helper.InputError(os.path.join(checkpoint_dir, 'dataset.json'), None,
                                'file not found: the checkpoint directory must hold the '
                                'dataset.json train.py writes')
    return DatasetInfo.load(checkpoint_dir).check_compatible(DatasetInfo.load(dataset_dir))


# Segments of similar length run as one batch, padded to the longest: oneDNN's
# bf16 convolutions make better use of a few hundred frames at once than of a
# short segment alone (BENCHMARKS.md, "What was tried"). A batch holds at most
# BATCH_FRAMES frames, padding included, of which at most MAX_PADDING is
# padding; a segment longer than that runs alone.
BATCH_FRAMES = 512
MAX_PADDING = 0.2


def length_batches(lengths, max_frames=BATCH_FRAMES, max_padding=MAX_PADDING):
    """Indices of `lengths` (frames per segment) in batches: in order of
    length, each batch as long as its longest segment times its size stays
    within max_frames, with at most max_padding of it padding."""
    batches, batch = [], []
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        grown = batch + [index]
        size = lengths[index] * len(grown)
        real = sum(lengths[i] for i in grown)
        if batch and (size > max_frames or size - real > max_padding * size):
            batches.append(batch)
            grown = [index]
        batch = grown
    return batches + [batch] if batch else batches


class PortionModel(inference.Predictor):
    """The inference model (a Predictor, as predict.py and the service run
    it) over every segment of a portion. Its graph and session are built
    once, so that each checkpoint evaluated (--watch evaluates many) costs its
    restore and the pass over the segments, read a batch of similar lengths
    at a time (length_batches, from the frames dataset.json lists). With
    chunk_seconds, each segment runs alone in chunks of that length, the LSTM
    state carried over (the same predictions in bounded memory); 0: whole
    segments."""

    def __init__(self, config, dataset_dir, portion, device, precision='fp32', chunk_seconds=0):
        info = DatasetInfo.load(dataset_dir)
        self.portion = portion
        self.paths = info.portion_files(portion)
        self.chunk_frames = (inference.chunk_frames_for(chunk_seconds, info.label_step_ms)
                             if chunk_seconds else None)
        lengths = [info.recordings.get(name, 0) for name in info.partition[portion]]
        self.batches = ([[index] for index in range(len(self.paths))] if self.chunk_frames
                        else length_batches(lengths))
        graph = tf.Graph()
        with graph.as_default(), tf.device(helper.configure_device(device)):
            inputs, outputs = inference.inference_graph(
                info.frame_samples, info.embedding_dim, config['hidden_units'],
                config['modality'], padded=True)
            self._saver = tf.train.Saver(var_list=models.model_variables())
        session = tf.Session(graph=graph, config=mixed_precision.session_config(
            device, precision=precision))
        super().__init__(session, inputs, outputs, info, {})

    def predictions(self, prefix):
        """[{id, timestamps [N], predictions [N,2], labels [N,2]}] of every
        segment of the portion, in segment order, for the checkpoint `prefix`."""
        self._saver.restore(self._session, prefix)
        results = [None] * len(self.paths)
        with tqdm(total=len(self.paths), desc=self.portion, unit='seg', file=sys.stderr,
                  dynamic_ncols=True) as progress:
            for batch in self.batches:
                segments = [records.read_tfrecord(self.paths[index], self.frame_samples,
                                                  self.embedding_dim) for index in batch]
                for index, segment, predictions in zip(batch, segments,
                                                       self.predict_batch(segments)):
                    del segment['audio'], segment['embeddings']
                    results[index] = dict(segment, predictions=predictions)
                progress.update(len(batch))
        return results

    def predict_batch(self, segments):
        """[N_i, 2] predictions of each segment ({audio, embeddings}) in one
        run, padded to the longest; a segment alone runs as predict.py's
        (in chunks when chunk_seconds is set)."""
        if len(segments) == 1:
            return [self.predict(segments[0]['audio'], segments[0]['embeddings'],
                                 self.chunk_frames)]
        lengths = [len(segment['audio']) for segment in segments]
        audio = np.zeros((len(segments), max(lengths), self.frame_samples), np.float32)
        embeddings = np.zeros((len(segments), max(lengths), self.embedding_dim), np.float32)
        for row, (segment, length) in enumerate(zip(segments, lengths)):
            audio[row, :length] = segment['audio']
            embeddings[row, :length] = segment['embeddings']
        predictions = self._session.run(self._outputs['predictions'], {
            self._inputs['audio']: audio, self._inputs['embeddings']: embeddings,
            self._inputs['lengths']: lengths})
        return [row[:length] for row, length in zip(predictions, lengths)]


def portion_metrics(segments):
    """CCC per dimension and their mean over the concatenated segments."""
    predictions = np.concatenate([s['predictions'] for s in segments])
    labels = np.concatenate([s['labels'] for s in segments])
    ccc = losses.ccc(predictions, labels)
    return {'frames': int(len(labels)), 'segments': len(segments),
            'ccc': {name: float(value) for name, value in zip(paths.DIMENSIONS, ccc)},
            'mean_ccc': float(np.mean(ccc))}


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------
def prediction_path(predictions_dir, name, extension='.csv'):
    """<predictions_dir>/<Id>/<Id>_<seg>.csv, laid out like labels/."""
    return os.path.join(predictions_dir, paths.video_of(name), name + extension)


def write_segment(segment, predictions_dir, plot):
    rows = [[int(t)] + ['%.6f' % v for v in np.concatenate([p, l])]
            for t, p, l in zip(segment['timestamps'], segment['predictions'],
                               segment['labels'])]
    helper.write_csv(prediction_path(predictions_dir, segment['id']), CSV_HEADER, rows)
    if plot:
        plot_segment(segment, prediction_path(predictions_dir, segment['id'], '.png'))


def plot_segment(segment, path):
    """Prediction against gold over the segment's time, one panel per dimension."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    seconds = segment['timestamps'] / 1000.0
    figure, axes = plt.subplots(len(paths.DIMENSIONS), 1, figsize=(10, 5), sharex=True)
    for index, (axis, name) in enumerate(zip(axes, paths.DIMENSIONS)):
        gold, predicted = segment['labels'][:, index], segment['predictions'][:, index]
        axis.plot(seconds, gold, color='black', linewidth=1, label='gold')
        axis.plot(seconds, predicted, color='tab:red', linewidth=1, label='prediction')
        axis.set_ylabel(name)
        axis.set_ylim(-1.05, 1.05)
        axis.set_title('%s  CCC %.3f' % (name, losses.ccc(predicted, gold)), fontsize=9)
    axes[0].legend(loc='upper right', fontsize=8)
    axes[-1].set_xlabel('time in the segment (s)')
    figure.suptitle('segment %s' % segment['id'])
    figure.tight_layout()
    with helper.atomic_output(path) as tmp_path:
        figure.savefig(tmp_path, format='png', dpi=80)
    plt.close(figure)


def report(metrics, portion, prefix, step, checkpoint_dir, json_path):
    """Table on stdout, a line in log_eval.txt, and the JSON when asked."""
    lines = ['portion %s, checkpoint %s (step %d), modality %s, precision %s, %d segments, '
             '%d frames' % (portion, prefix, step, metrics['modality'], metrics['precision'],
                            metrics['segments'], metrics['frames']),
             '%-10s %8s' % ('dimension', 'CCC')]
    lines += ['%-10s %8.4f' % (name, metrics['ccc'][name]) for name in paths.DIMENSIONS]
    lines.append('%-10s %8.4f' % ('mean', metrics['mean_ccc']))
    print('\n'.join(lines))
    scores = '  '.join('ccc_%s %.4f' % (name, metrics['ccc'][name]) for name in paths.DIMENSIONS)
    helper.append_line(os.path.join(checkpoint_dir, LOG_FILE),
                       '%s  portion %s  step %d  frames %d  %s  mean_ccc %.4f  modality %s  '
                       'precision %s' % (
                           datetime.datetime.now().isoformat(' ', 'seconds'), portion, step,
                           metrics['frames'], scores, metrics['mean_ccc'], metrics['modality'],
                           metrics['precision']))
    if json_path:
        helper.write_json(json_path, dict(metrics, portion=portion, checkpoint=prefix, step=step))


def portion_model(config, options):
    return PortionModel(config, options.dataset_dir, options.portion, options.device,
                        precision=options.precision, chunk_seconds=options.chunk_seconds)


def evaluate(prefix, step, checkpoint_dir, config, options, restore_from=None, model=None):
    """Evaluate one checkpoint and write every output; returns the metrics.
    The variables come from `restore_from` when given (a staged copy of
    prefix); `model` is a PortionModel of these options to reuse."""
    if model is None:
        with portion_model(config, options) as model:
            return evaluate(prefix, step, checkpoint_dir, config, options, restore_from, model)
    segments = model.predictions(restore_from or prefix)
    for segment in segments:
        write_segment(segment, options.predictions, options.plots)
        helper.development_msg('%s: %d frames, CCC %s', segment['id'], len(segment['labels']),
                               losses.ccc(segment['predictions'], segment['labels']))
    metrics = dict(portion_metrics(segments), modality=config['modality'],
                   precision=options.precision)
    report(metrics, options.portion, prefix, step, checkpoint_dir, options.json_path)
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
        files = checkpoints.checkpoint_files(prefix)
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


def keep_best(staged_prefix, step, metrics, checkpoint_dir, best_dir, portion):
    """Make the staged checkpoint <checkpoint>/best/: its files, model.json,
    dataset.json, a `checkpoint` state file, and best.json (written last)."""
    name = os.path.basename(staged_prefix)
    previous = [n for n in helper.list_dir(best_dir)
                if n.startswith(checkpoints.CHECKPOINT_PREFIX + '-')
                and not n.startswith(name + '.')]
    # The new checkpoint is complete in best/ before the previous one goes.
    for path in checkpoints.checkpoint_files(staged_prefix):
        os.replace(path, os.path.join(best_dir, os.path.basename(path)))
    for old in previous:
        os.remove(os.path.join(best_dir, old))
    with helper.atomic_output(os.path.join(best_dir, checkpoints.MODEL_CONFIG_FILE)) as tmp_path:
        shutil.copyfile(os.path.join(checkpoint_dir, checkpoints.MODEL_CONFIG_FILE), tmp_path)
    DatasetInfo.load(checkpoint_dir).save(best_dir)
    # Given as a path like best_dir's, TensorFlow records it relative to best_dir.
    tf.train.update_checkpoint_state(best_dir, os.path.join(best_dir, name))
    helper.write_json(os.path.join(best_dir, BEST_FILE), dict(
        metrics, portion=portion, step=step, checkpoint=os.path.join(best_dir, name),
        date=datetime.datetime.now().isoformat(' ', 'seconds')))
    logging.info('new best: step %d, mean CCC %.4f -> %s', step, metrics['mean_ccc'], best_dir)


def step_of(prefix):
    match = re.search(r'-(\d+)$', prefix)
    if not match:
        raise helper.InputError(prefix, None,
                                'not a %s-N checkpoint' % checkpoints.CHECKPOINT_PREFIX)
    return int(match.group(1))


def watch(checkpoint_dir, config, options, interval_secs, timeout_secs):
    """Evaluate each new checkpoint as training writes it; keep the best (mean
    CCC) in <checkpoint_dir>/best/. Stops after timeout_secs without one."""
    best_dir = os.path.join(checkpoint_dir, BEST_DIR)
    staging_dir = os.path.join(best_dir, '.staging')
    best = read_best(best_dir, options.portion)
    evaluated = 0
    with portion_model(config, options) as model:
        for prefix in tf.train.checkpoints_iterator(checkpoint_dir, interval_secs,
                                                    timeout=timeout_secs):
            step = step_of(prefix)
            staged = stage(prefix, staging_dir)
            if staged is None:
                logging.warning('%s was removed before it could be evaluated', prefix)
                continue
            metrics = evaluate(prefix, step, checkpoint_dir, config, options,
                               restore_from=staged, model=model)
            evaluated += 1
            if best is None or metrics['mean_ccc'] > best['mean_ccc']:
                keep_best(staged, step, metrics, checkpoint_dir, best_dir, options.portion)
                best = dict(metrics, step=step)
            shutil.rmtree(staging_dir, ignore_errors=True)
    logging.info('no new checkpoint for %d s: stopping after %d evaluation(s); best %s',
                 timeout_secs, evaluated,
                 'none' if best is None else 'step %d, mean CCC %.4f' % (best['step'],
                                                                         best['mean_ccc']))
