"""The run of data_generator.py: one TFRecord per segment `<Id>_<seg>` of the
partition's videos, word2vec when no vectors are given, and dataset.json.

Per segment it reads labels/<Id>/<Id>_<seg>.csv (its frames), the segment's
audio from MuSe-CaR and sync_maps/<Id>/<Id>_<seg>.csv (its words). A segment
that fails is reported and left out; the others are written.
"""

import collections
import logging
import os
import time

import numpy as np

import helper
from ser import audio
from ser import defaults
from ser import embeddings as word_embeddings
from ser import muse
from ser import paths
from ser import records
from ser.dataset import DatasetInfo

Job = collections.namedtuple('Job', 'name portion layout sync_map_path label_path '
                                    'output_path sample_rate embeddings_path overwrite')
Result = collections.namedtuple('Result', 'name portion status n_frames speech_frames words '
                                          'unknown_words warnings mismatch error')
# problems: messages of bad input outside the segments' own (unreadable sync
# maps left out of word2vec, videos without labels).
Run = collections.namedtuple('Run', 'results problems info embedder seconds')

# Filled in the parent before forking, so workers share the vectors instead of
# loading them again; a spawned worker loads them on first use.
_EMBEDDERS = {}


def _embedder(path):
    if path not in _EMBEDDERS:
        _EMBEDDERS[path] = word_embeddings.load_embedder(path)
    return _EMBEDDERS[path]


# --------------------------------------------------------------------------
# Word vectors
# --------------------------------------------------------------------------
def sync_map_sentences(work_dir):
    """The words of every segment's sync map (all videos: the text is not a
    label), one list per segment. Returns (sentences, problems): problems are
    the InputErrors of unreadable maps, which are left out."""
    directory = paths.sync_maps_dir(work_dir)
    if not os.path.isdir(directory):
        raise helper.InputError(directory, None, 'no sync maps: run '
                                'synchronisation_map_generator.py first, or give --embeddings')
    sentences, problems = [], []
    for video_id in helper.list_dir(directory):
        for name in paths.work_segments(directory, video_id):
            try:
                words = records.read_sync_map(paths.sync_map_path(work_dir, name))
            except helper.InputError as error:
                problems.append(error)
                continue
            if words:
                sentences.append([word for _, _, word in words])
    return sentences, problems


def ensure_word2vec(work_dir, dim, seed, overwrite=False, epochs=word_embeddings.WORD2VEC_EPOCHS):
    """Path of the word2vec trained on the sync maps under `work_dir`, training
    it unless already saved (`overwrite` retrains). Returns (path, problems)."""
    path = word_embeddings.word2vec_path(work_dir, dim)
    if os.path.isfile(path) and not overwrite:
        logging.info('Reusing word2vec vectors %s (--overwrite retrains them)', path)
        return path, []
    sentences, problems = sync_map_sentences(work_dir)
    logging.info('Training word2vec (%d dimensions, %d epochs) on the words of %d segments',
                 dim, epochs, len(sentences))
    word_embeddings.train_word2vec(sentences, dim, seed, path, epochs)
    return path, problems


# --------------------------------------------------------------------------
# One segment (runs in a worker process)
# --------------------------------------------------------------------------
def _read_words(path):
    if not os.path.isfile(path):
        raise helper.InputError(path, None, 'sync map not found: run '
                                'synchronisation_map_generator.py for this segment')
    return records.read_sync_map(path)


def _write_segment(job, embedder):
    frame_samples = records.frame_samples_for(job.sample_rate)
    words = _read_words(job.sync_map_path)
    timestamps, labels = muse.read_labels(job.label_path)
    try:
        audio_path = job.layout.audio_path(job.name)
    except helper.InputError as error:
        raise helper.InputError(job.label_path, None, 'labels of segment %s, which has no audio '
                                '(%s)' % (job.name, error)) from None
    samples = audio.read_file(audio_path, job.sample_rate)
    arrays, warnings = records.build_recording(samples, words, timestamps, labels,
                                               frame_samples, embedder)
    mismatch = records.duration_mismatch(len(samples), job.sample_rate, timestamps)
    records.write_tfrecord(job.output_path, job.name, **arrays)
    unknown = frozenset(w for _, _, w in words if not embedder.is_known(w))
    return arrays, len(words), unknown, warnings, mismatch


def process_segment(job):
    """Write (or, when it exists, check) the TFRecord of one segment. Never
    raises on bad input: the Result carries the error."""
    embedder = _embedder(job.embeddings_path)
    words, unknown, warnings, mismatch = 0, frozenset(), [], None
    try:
        if os.path.exists(job.output_path) and not job.overwrite:
            arrays = records.read_tfrecord(job.output_path,
                                           records.frame_samples_for(job.sample_rate),
                                           embedder.dim)
            status = 'skipped'
        else:
            arrays, words, unknown, warnings, mismatch = _write_segment(job, embedder)
            status = 'written'
    except helper.InputError as error:
        return Result(job.name, job.portion, 'failed', 0, 0, 0, frozenset(), [], None, str(error))
    speech = int(np.count_nonzero(np.any(arrays['embeddings'] != 0, axis=1)))
    return Result(job.name, job.portion, status, len(arrays['timestamps']), speech, words,
                  unknown, warnings, mismatch, None)


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------
def partition_segments(work_dir, partition):
    """{segment name: portion} of the partition's videos (their label files),
    and a message for each video without any."""
    segments, problems = {}, []
    for video_id, portion in partition.items():
        names = paths.work_segments(paths.labels_dir(work_dir), video_id)
        if not names:
            problems.append('%s: video %s of the partition has no label files: run '
                            'label_generator.py' % (os.path.join(paths.labels_dir(work_dir),
                                                                 video_id), video_id))
        segments.update((name, portion) for name in names)
    return segments, problems


def check_settings_unchanged(info_path, settings, overwrite):
    """Existing TFRecords are only reused when made with the same settings."""
    if overwrite or not os.path.isfile(info_path):
        return
    previous = DatasetInfo.load(info_path)
    old = dict(previous.features(), embeddings=previous.embeddings_path)
    new = dict(settings.features(), embeddings=settings.embeddings_path)
    for key in old:
        if old[key] != new[key]:
            raise helper.InputError(info_path, None,
                                    'existing TFRecords were made with %s=%s, this run uses %s; '
                                    'rerun with --overwrite' % (key, old[key], new[key]))


def remove_misplaced_records(output_dir, segments):
    """A segment whose portion changed would otherwise stay in its old
    portion's directory; files of segments outside the partition are kept
    (dataset.json does not list them, so nothing reads them)."""
    for portion in defaults.PORTIONS:
        directory = os.path.join(output_dir, portion)
        if not os.path.isdir(directory):
            continue
        for name in helper.list_ids(directory, '.tfrecords'):
            path = os.path.join(directory, name + '.tfrecords')
            if name not in segments:
                logging.warning('%s is not in the partition: ignored', path)
            elif segments[name] != portion:
                logging.info('Removing %s: the segment is now in %s', path, segments[name])
                os.remove(path)


def make_jobs(layout, work_dir, segments, sample_rate, embeddings_path, overwrite):
    output_dir = paths.tfrecords_dir(work_dir)
    return [Job(name, portion, layout, paths.sync_map_path(work_dir, name),
                paths.label_path(work_dir, name),
                os.path.join(output_dir, portion, name + '.tfrecords'), sample_rate,
                embeddings_path, overwrite)
            for name, portion in sorted(segments.items(),
                                        key=lambda item: paths.segment_sort_key(item[0]))]


def generate(layout, work_dir, partition_file=None, embeddings=None, embedding_dim=100,
             word2vec_epochs=word_embeddings.WORD2VEC_EPOCHS, sample_rate=16000, workers=1,
             overwrite=False, seed=0):
    """Write tfrecords/ under `work_dir` for the segments of the partition's
    videos (`layout`: a paths.MuseLayout for the audio) and dataset.json.
    Returns a Run; bad input in one segment is in its Result, bad input that
    stops the whole run (partition, word vectors, settings) raises InputError."""
    started = time.time()
    output_dir = paths.tfrecords_dir(work_dir)
    info_path = os.path.join(output_dir, 'dataset.json')
    partition_file = partition_file or paths.partition_path(work_dir)
    segments, problems = partition_segments(work_dir, paths.read_partition(partition_file))
    if embeddings is None:
        embeddings, unreadable = ensure_word2vec(work_dir, embedding_dim, seed, overwrite,
                                                 word2vec_epochs)
        problems += ['left out of word2vec training: %s' % error for error in unreadable]
    embedder = word_embeddings.load_embedder(embeddings)
    check_settings_unchanged(info_path, DatasetInfo.create(sample_rate, embedder.dim,
                                                           embedder.path), overwrite)
    _EMBEDDERS[embedder.path] = embedder

    remove_misplaced_records(output_dir, segments)
    jobs = make_jobs(layout, work_dir, segments, sample_rate, embedder.path, overwrite)
    results = []
    for result in helper.parallel_map(process_segment, jobs, workers, 'tfrecords'):
        for warning in result.warnings:
            logging.warning('%s: %s', result.name, warning)
        if result.error:
            logging.error('%s', result.error)
        helper.development_msg('%s: %s, %d frames', result.name, result.status, result.n_frames)
        results.append(result)

    done = [r for r in results if r.status != 'failed']
    for portion in defaults.PORTIONS:
        os.makedirs(os.path.join(output_dir, portion), exist_ok=True)
    info = DatasetInfo.create(
        sample_rate, embedder.dim, embedder.path,
        {portion: [r.name for r in done if r.portion == portion] for portion in defaults.PORTIONS},
        {r.name: r.n_frames for r in done}, partition_file)
    info.save(info_path)
    return Run(results, problems, info, embedder, time.time() - started)


def log_summary(run):
    """The end-of-run summary; returns the exit status (1 when anything failed)."""
    results, done = run.results, [r for r in run.results if r.status != 'failed']
    written = [r for r in results if r.status == 'written']
    for portion in defaults.PORTIONS:
        mine = [r for r in done if r.portion == portion]
        logging.info('%-5s: %4d segments of %3d videos, %7d frames', portion, len(mine),
                     len({paths.video_of(r.name) for r in mine}), sum(r.n_frames for r in mine))
    frames = sum(r.n_frames for r in done)
    speech = sum(r.speech_frames for r in done)
    logging.info('%d written, %d skipped (existing), %d failed; %d frames, %.1f%% with speech',
                 len(written), len(done) - len(written), len(results) - len(done), frames,
                 100.0 * speech / max(frames, 1))
    silent = sorted((r.name for r in done if r.speech_frames == 0), key=paths.segment_sort_key)
    logging.info('%d segments without words (zero embeddings)%s', len(silent),
                 ': %s' % ', '.join(silent[:10]) if silent else '')
    mismatched = [r for r in written if r.mismatch]
    if mismatched:
        logging.warning('%d segments whose audio and label span differ by more than %.0f s '
                        '(the audio is taken to start at the first label timestamp): %s',
                        len(mismatched), records.DURATION_TOLERANCE_SECONDS,
                        ', '.join('%s (audio %.1f s, labels %.1f s)' % ((r.name,) + r.mismatch)
                                  for r in mismatched[:10]))
    unknown = frozenset().union(*(r.unknown_words for r in written))
    logging.info('Words: %d in the sync maps written, %d distinct unknown to %s%s',
                 sum(r.words for r in written), len(unknown), run.embedder.path,
                 (' (e.g. %s)' % ', '.join(sorted(unknown)[:10])) if unknown else '')
    logging.info('%.1f s, %.0f frames/s written', run.seconds,
                 sum(r.n_frames for r in written) / max(run.seconds, 1e-9))
    failed = sorted((r.name for r in results if r.status == 'failed'),
                    key=paths.segment_sort_key)
    for problem in run.problems:
        logging.error('%s', problem)
    if failed or run.problems:
        logging.error('%d segments failed (%s); %d other problems. %s lists the segments written.',
                      len(failed), ', '.join(failed), len(run.problems), run.info.path)
        return 1
    return 0
