"""Step 5: one TFRecord per recording, the input of training and evaluation.

For every recording of the partition, the audio (mono, resampled to
--sample_rate) is cut into frames of one label step (250 ms), frame i covering
[t_i, t_i + 250 ms) where t_i is the i-th label timestamp. Each frame carries
the embedding of the word of the synchronisation map that overlaps it most
(zeros where nobody speaks) and its (arousal, valence) label. Output:

  <work_dir>/tfrecords/<portion>/<Id>.tfrecords   one tf.train.Example each
  <work_dir>/tfrecords/dataset.json               shapes, embeddings, partition

Without --embeddings, word2vec is trained on the corpus's own transcripts and
kept in <work_dir>/embeddings/word2vec_<dim>.kv for the next run.

The framing and embedding functions (load_embedder, frame_audio,
frame_embeddings, read_sync_map) are shared with predict.py, so a recording
seen by the service gets exactly the inputs the model was trained on.

Example:
  python data_generator.py --muse_dir MuSe-CaR --work_dir . --workers 2
"""

import collections
import hashlib
import logging
import os
import time

import numpy as np
from absl import app, flags

import helper

WORD2VEC_EPOCHS = 100

# allow_override: predict.py and the tests import this module beside other
# scripts that define the same flag names (--verbose, --seed, ...), which absl
# otherwise refuses.
FLAGS = flags.FLAGS
flags.DEFINE_string('muse_dir', helper.DEFAULT_MUSE_DIR,
                    'MuSe-CaR directory (audio/ and transcriptions/ are read).',
                    allow_override=True)
flags.DEFINE_string('work_dir', helper.DEFAULT_WORK_DIR,
                    'Pipeline directory: reads sync_maps/, labels/, partition.csv; '
                    'writes tfrecords/ and embeddings/.', allow_override=True)
flags.DEFINE_string('partition', None,
                    'Partition file (header Id,Proposal). Default: <work_dir>/partition.csv.',
                    allow_override=True)
flags.DEFINE_string('embeddings', None,
                    'Word vectors to use: word2vec/fastText text (.txt, .vec) or binary (.bin), '
                    'or gensim KeyedVectors (.kv). Default: word2vec trained on the '
                    'transcripts, kept in <work_dir>/embeddings/word2vec_<dim>.kv.',
                    allow_override=True)
flags.DEFINE_integer('embedding_dim', 100,
                     'Size of the word2vec vectors trained when --embeddings is not given.',
                     lower_bound=1, allow_override=True)
flags.DEFINE_integer('word2vec_epochs', WORD2VEC_EPOCHS,
                     'Passes of the word2vec training over the transcripts. A corpus of a few '
                     'thousand words needs many: with gensim\'s default of 5 its vectors stay '
                     'near their tiny random start and carry no meaning to the model.',
                     lower_bound=1, allow_override=True)
flags.DEFINE_integer('sample_rate', 16000,
                     'Audio sample rate in Hz; a 250 ms frame must hold a multiple of 250 '
                     'samples (the model pools by 250), i.e. a multiple of 1000 Hz.',
                     allow_override=True)
flags.DEFINE_integer('workers', helper.default_workers(),
                     'Recordings processed in parallel (1 = in this process).',
                     lower_bound=1, allow_override=True)
flags.DEFINE_boolean('overwrite', False,
                     'Rewrite existing TFRecords and retrain the word2vec vectors.',
                     allow_override=True)
flags.DEFINE_integer('seed', 0, 'Seed of the word2vec training.', allow_override=True)
flags.DEFINE_boolean('verbose', False, 'Show development messages.', allow_override=True)

STEP_SECONDS = helper.LABEL_STEP_MS / 1000.0
# models.py pools the waveform by 10 * 5 * 5 samples: a frame must split evenly.
MODEL_POOLING = 250
DATASET_INFO = 'dataset.json'


def frame_samples_for(sample_rate):
    """Samples in one label step at `sample_rate`; ValueError unless it is an
    integer multiple of MODEL_POOLING."""
    samples, remainder = divmod(int(sample_rate) * helper.LABEL_STEP_MS, 1000)
    if sample_rate <= 0 or remainder or samples % MODEL_POOLING:
        raise ValueError('sample rate %s Hz gives %s samples per %d ms frame, which is not a '
                         'multiple of %d; use a multiple of 1000 Hz'
                         % (sample_rate, sample_rate * helper.LABEL_STEP_MS / 1000,
                            helper.LABEL_STEP_MS, MODEL_POOLING))
    return samples


def _valid_sample_rate(sample_rate):
    try:
        frame_samples_for(sample_rate)
    except ValueError:
        return False
    return True


flags.register_validator('sample_rate', _valid_sample_rate,
                         'a 250 ms frame must hold a multiple of 250 samples: '
                         'use a multiple of 1000 Hz')


# --------------------------------------------------------------------------
# Word embeddings
# --------------------------------------------------------------------------
def stable_seed(word):
    """A seed derived from the word's bytes only, identical in every process
    (Python's hash() of a str changes from process to process)."""
    return int.from_bytes(hashlib.sha256(word.encode('utf-8')).digest()[:8], 'little')


class Embedder:
    """Word -> float32 vector lookup over gensim KeyedVectors. Words missing
    from the vocabulary (also after lower-casing) get a pseudo-random vector
    seeded by the word itself, with the mean norm of the known vectors."""

    def __init__(self, keyed_vectors, path):
        self.path = path
        self.dim = int(keyed_vectors.vector_size)
        self._keyed_vectors = keyed_vectors
        self.mean_norm = self._mean_norm(keyed_vectors.vectors)

    @staticmethod
    def _mean_norm(vectors, chunk=100000):
        # Chunked: a 3M-word model would otherwise need a second full-size copy.
        if len(vectors) == 0:
            return 1.0
        total = sum(float(np.linalg.norm(vectors[i:i + chunk].astype(np.float64), axis=1).sum())
                    for i in range(0, len(vectors), chunk))
        return total / len(vectors)

    def _key(self, word):
        if word in self._keyed_vectors.key_to_index:
            return word
        lower = word.lower()
        return lower if lower in self._keyed_vectors.key_to_index else None

    def is_known(self, word):
        return self._key(word) is not None

    def vector(self, word):
        key = self._key(word)
        if key is not None:
            return np.asarray(self._keyed_vectors[key], dtype=np.float32)
        direction = np.random.default_rng(stable_seed(word)).standard_normal(self.dim)
        return (direction * (self.mean_norm / np.linalg.norm(direction))).astype(np.float32)

    def vectors(self, words):
        """[len(words), dim] float32."""
        if not words:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.vector(word) for word in words])


def read_keyed_vectors(path):
    """gensim KeyedVectors from a .kv file (gensim native) or word2vec/fastText
    vectors, binary when the name ends in .bin, text otherwise."""
    from gensim.models import KeyedVectors
    if not os.path.isfile(path):
        raise helper.InputError(path, None, 'word vectors not found')
    try:
        if path.endswith('.kv'):
            return KeyedVectors.load(path)
        return KeyedVectors.load_word2vec_format(path, binary=path.endswith('.bin'),
                                                 unicode_errors='replace')
    except Exception as error:  # gensim raises anything from ValueError to UnpicklingError
        raise helper.InputError(path, None, 'cannot read word vectors: %s' % error) from None


def read_corpus_sentences(muse_dir):
    """Normalised word lists of every transcript sentence (all partitions: the
    text is not a label). Returns (sentences, problems) where problems are the
    InputErrors of unreadable transcripts, which are left out."""
    transcripts = os.path.join(muse_dir, 'transcriptions')
    sentences, problems = [], []
    for recording_id in helper.list_ids(transcripts, '.csv'):
        path = helper.transcript_path(muse_dir, recording_id)
        try:
            rows = helper.read_table(path, [('start', float), ('end', float), ('sentence', str)])
        except helper.InputError as error:
            problems.append(error)
            continue
        sentences.extend(words for words in (helper.normalise_words(s) for _, _, s in rows)
                         if words)
    return sentences, problems


def word2vec_path(work_dir, dim):
    return os.path.join(helper.embeddings_dir(work_dir), 'word2vec_%d.kv' % dim)


def train_word2vec(sentences, dim, seed, path, epochs=WORD2VEC_EPOCHS):
    """Train word2vec (skip-gram, which suits small corpora) on `sentences`
    and save its KeyedVectors atomically. One worker thread: gensim is only
    reproducible single-threaded."""
    from gensim.models import Word2Vec
    if not sentences:
        raise helper.InputError(path, None, 'no transcript sentences to train word2vec on')
    # min_count=1: every transcript word should get a learned vector, not a random one.
    model = Word2Vec(sentences, vector_size=dim, min_count=1, sg=1, epochs=epochs, seed=seed,
                     workers=1)
    with helper.atomic_output(path) as tmp_path:
        # separately=[]: one file, so the atomic rename moves all of it.
        model.wv.save(tmp_path, separately=[])
    logging.info('Saved %d word vectors to %s', len(model.wv), path)


def ensure_word2vec(muse_dir, work_dir, dim, seed, overwrite=False, epochs=WORD2VEC_EPOCHS):
    """Path of the word2vec vectors trained on the transcripts of `muse_dir`,
    training them unless already saved under `work_dir` (`overwrite`
    retrains). Returns (path, problems): problems are the InputErrors of the
    transcripts left out of training."""
    path = word2vec_path(work_dir, dim)
    if os.path.isfile(path) and not overwrite:
        logging.info('Reusing word2vec vectors %s (--overwrite retrains them)', path)
        return path, []
    sentences, problems = read_corpus_sentences(muse_dir)
    logging.info('Training word2vec (%d dimensions) on %d transcript sentences',
                 dim, len(sentences))
    train_word2vec(sentences, dim, seed, path, epochs)
    return path, problems


def load_embedder(path=None, muse_dir=helper.DEFAULT_MUSE_DIR, work_dir=helper.DEFAULT_WORK_DIR,
                  dim=100, seed=0, overwrite=False):
    """The Embedder of the vectors at `path` (.kv, .bin, .txt/.vec); when `path`
    is None, of the word2vec trained on the transcripts (ensure_word2vec;
    unreadable transcripts are logged as errors)."""
    if path is None:
        path, problems = ensure_word2vec(muse_dir, work_dir, dim, seed, overwrite)
        for problem in problems:
            logging.error('Transcript left out of word2vec training: %s', problem)
    return Embedder(read_keyed_vectors(path), os.path.abspath(path))


# --------------------------------------------------------------------------
# Inputs of one recording
# --------------------------------------------------------------------------
def read_sync_map(path):
    """[(start, end, word)] in seconds from a synchronisation map."""
    rows = helper.read_table(path, [('id', str), ('start', float), ('end', float), ('word', str)],
                             line_numbers=True)
    words = []
    for row_number, (_, start, end, word) in rows:
        if start < 0 or end < start:
            raise helper.InputError(path, row_number,
                                    'word %r spans %s..%s s' % (word, start, end))
        if not word:
            raise helper.InputError(path, row_number, 'empty word')
        words.append((start, end, word))
    return words


# --------------------------------------------------------------------------
# Framing: the same for training data and for the service (predict.py)
# --------------------------------------------------------------------------
def frame_audio(samples, frame_samples, n_frames):
    """[n_frames, frame_samples] float32: frame i is samples [i*S, (i+1)*S),
    zero-padded past the end of the audio."""
    wanted = n_frames * frame_samples
    padded = np.zeros(wanted, dtype=np.float32)
    available = min(wanted, len(samples))
    padded[:available] = samples[:available]
    return padded.reshape(n_frames, frame_samples)


def frame_word_index(words, n_frames, step_seconds):
    """Index into `words` of the word overlapping each frame most, -1 where no
    word overlaps; ties go to the earlier word. Frame i is
    [i*step, (i+1)*step). Work is O(words + frames): each word is paired only
    with the frames it touches."""
    best = np.full(n_frames, -1, dtype=np.int64)
    if not words or n_frames == 0:
        return best
    starts = np.array([w[0] for w in words], dtype=np.float64)
    ends = np.array([w[1] for w in words], dtype=np.float64)
    first = np.clip(np.floor(starts / step_seconds), 0, n_frames).astype(np.int64)
    stop = np.clip(np.ceil(ends / step_seconds), 0, n_frames).astype(np.int64)
    spans = np.maximum(stop - first, 0)
    word = np.repeat(np.arange(len(words)), spans)
    frame = first[word] + np.arange(len(word)) - np.repeat(np.cumsum(spans) - spans, spans)
    overlap = (np.minimum(ends[word], (frame + 1) * step_seconds)
               - np.maximum(starts[word], frame * step_seconds))
    keep = overlap > 0
    word, frame, overlap = word[keep], frame[keep], overlap[keep]
    order = np.lexsort((word, -overlap, frame))
    frame, word = frame[order], word[order]
    first_of_frame = np.r_[True, frame[1:] != frame[:-1]]
    best[frame[first_of_frame]] = word[first_of_frame]
    return best


def frame_embeddings(words, n_frames, step_seconds, embedder):
    """[n_frames, embedder.dim] float32: the vector of the word that overlaps
    each frame most, zeros where nobody speaks. `words`: [(start, end, word)]
    in seconds."""
    index = frame_word_index(words, n_frames, step_seconds)
    embeddings = np.zeros((n_frames, embedder.dim), dtype=np.float32)
    speech = index >= 0
    if speech.any():
        used = np.unique(index[speech])
        vectors = embedder.vectors([words[i][2] for i in used])
        embeddings[speech] = vectors[np.searchsorted(used, index[speech])]
    return embeddings


def build_recording(samples, words, timestamps, labels, frame_samples, embedder):
    """Frame arrays of one recording on the label timestamps: a dict of
    timestamps [N] int64, audio [N, S], embeddings [N, E], labels [N, 2], and
    a list of warnings. Labels starting past the end of the audio are dropped;
    only the final partial frame is zero-padded."""
    audio_frames = -(-len(samples) // frame_samples)
    grid_index = timestamps // helper.LABEL_STEP_MS
    keep = grid_index < audio_frames
    warnings = []
    if not keep.all():
        warnings.append('%d label rows after the end of the audio (%.2f s) dropped'
                        % (np.count_nonzero(~keep), len(samples) / frame_samples * STEP_SECONDS))
    grid_index, timestamps, labels = grid_index[keep], timestamps[keep], labels[keep]
    if len(grid_index) == 0:
        raise ValueError('no label within the audio')
    gaps = int(grid_index[-1] + 1 - len(grid_index) - grid_index[0])
    if gaps:
        warnings.append('%d label steps missing between %d and %d ms'
                        % (gaps, timestamps[0], timestamps[-1]))
    n_grid = int(grid_index[-1]) + 1
    return {
        'timestamps': timestamps,
        'audio': frame_audio(samples, frame_samples, n_grid)[grid_index],
        'embeddings': frame_embeddings(words, n_grid, STEP_SECONDS, embedder)[grid_index],
        'labels': labels.astype(np.float32),
    }, warnings


# --------------------------------------------------------------------------
# TFRecords (schema: COMMON.md); TensorFlow is imported only where records are
# read or written, so the parent process forks its workers without it.
# --------------------------------------------------------------------------
def make_example(recording_id, timestamps, audio, embeddings, labels):
    """One tf.train.Example holding a whole recording."""
    tf = helper.import_tensorflow()

    def raw(array):
        return tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[np.ascontiguousarray(array, dtype='<f4').tobytes()]))

    def integers(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    n_frames = len(timestamps)
    if not (len(audio) == len(embeddings) == len(labels) == n_frames):
        raise ValueError('%s: %d timestamps but %d audio, %d embedding and %d label frames'
                         % (recording_id, n_frames, len(audio), len(embeddings), len(labels)))
    return tf.train.Example(features=tf.train.Features(feature={
        'id': tf.train.Feature(bytes_list=tf.train.BytesList(value=[recording_id.encode()])),
        'n_frames': integers([n_frames]),
        'timestamps': integers(np.asarray(timestamps, dtype=np.int64).tolist()),
        'audio': raw(audio),
        'embeddings': raw(embeddings),
        'labels': raw(labels),
    }))


def write_tfrecord(path, recording_id, timestamps, audio, embeddings, labels):
    """Write one recording as a one-Example TFRecord file, atomically."""
    tf = helper.import_tensorflow()
    example = make_example(recording_id, timestamps, audio, embeddings, labels)
    with helper.atomic_output(path) as tmp_path:
        with tf.io.TFRecordWriter(tmp_path) as writer:
            writer.write(example.SerializeToString())


def read_tfrecord(path, frame_samples, embedding_dim):
    """The arrays of a file written by write_tfrecord (as build_recording
    returns them, plus 'id'); InputError if it does not hold one recording
    of these shapes."""
    tf = helper.import_tensorflow()
    try:
        records = list(tf.io.tf_record_iterator(path))
    except Exception as error:  # tf.errors.* for missing or truncated files
        raise helper.InputError(path, None, 'unreadable TFRecord: %s' % error) from None
    if len(records) != 1:
        raise helper.InputError(path, None, 'holds %d records, expected 1' % len(records))
    feature = tf.train.Example.FromString(records[0]).features.feature
    n_frames = feature['n_frames'].int64_list.value[0]
    arrays = {
        'id': feature['id'].bytes_list.value[0].decode(),
        'timestamps': np.array(feature['timestamps'].int64_list.value, dtype=np.int64),
    }
    for name, width in (('audio', frame_samples), ('embeddings', embedding_dim),
                        ('labels', len(helper.DIMENSIONS))):
        values = np.frombuffer(feature[name].bytes_list.value[0], dtype='<f4')
        if values.size != n_frames * width:
            raise helper.InputError(path, None, '%s holds %d values, expected %d frames x %d'
                                    % (name, values.size, n_frames, width))
        arrays[name] = values.reshape(n_frames, width).astype(np.float32)
    return arrays


def dataset_info(sample_rate, embedding_dim, embeddings_path, partition, recordings,
                 partition_file=None):
    """The content of dataset.json. `partition`: {portion: [ids written]},
    `recordings`: {id: n_frames}."""
    return {
        'sample_rate': int(sample_rate),
        'frame_samples': frame_samples_for(sample_rate),
        'label_step_ms': helper.LABEL_STEP_MS,
        'embedding_dim': int(embedding_dim),
        'embeddings': embeddings_path,
        'label_names': list(helper.DIMENSIONS),
        'partition': {portion: sorted(partition.get(portion, ())) for portion in helper.PORTIONS},
        'partition_file': partition_file and os.path.abspath(partition_file),
        'recordings': {recording_id: int(n) for recording_id, n in sorted(recordings.items())},
        'frames': {portion: int(sum(recordings[i] for i in partition.get(portion, ())))
                   for portion in helper.PORTIONS},
    }


# --------------------------------------------------------------------------
# One recording (runs in a worker process)
# --------------------------------------------------------------------------
Job = collections.namedtuple('Job', 'recording_id portion muse_dir work_dir output_path '
                                    'sample_rate embeddings_path overwrite')
Result = collections.namedtuple('Result', 'recording_id portion status n_frames speech_frames '
                                          'words unknown_words warnings error')

# Filled in the parent before forking, so workers share the vectors instead of
# loading them again; a spawned worker loads them on first use.
_EMBEDDERS = {}


def _embedder(path):
    if path not in _EMBEDDERS:
        _EMBEDDERS[path] = load_embedder(path)
    return _EMBEDDERS[path]


def _write_recording(job, embedder):
    frame_samples = frame_samples_for(job.sample_rate)
    words = read_sync_map(helper.sync_map_path(job.work_dir, job.recording_id))
    labels_path = helper.label_path(job.work_dir, job.recording_id)
    timestamps, labels = helper.read_labels(labels_path)
    audio_path = helper.audio_path(job.muse_dir, job.recording_id)
    samples = helper.read_audio(audio_path, job.sample_rate)
    if len(samples) < frame_samples:
        raise helper.InputError(audio_path, None, 'audio lasts %.3f s, shorter than one %d ms frame'
                                % (len(samples) / job.sample_rate, helper.LABEL_STEP_MS))
    try:
        arrays, warnings = build_recording(samples, words, timestamps, labels, frame_samples,
                                           embedder)
    except ValueError as error:
        raise helper.InputError(labels_path, None, str(error)) from None
    write_tfrecord(job.output_path, job.recording_id, **arrays)
    unknown = frozenset(w for _, _, w in words if not embedder.is_known(w))
    return arrays, len(words), unknown, warnings


def process_recording(job):
    """Write (or, when it exists, check) the TFRecord of one recording. Never
    raises on bad input: the Result carries the error."""
    embedder = _embedder(job.embeddings_path)
    try:
        if os.path.exists(job.output_path) and not job.overwrite:
            arrays = read_tfrecord(job.output_path, frame_samples_for(job.sample_rate),
                                   embedder.dim)
            status, words, unknown, warnings = 'skipped', 0, frozenset(), []
        else:
            arrays, words, unknown, warnings = _write_recording(job, embedder)
            status = 'written'
    except helper.InputError as error:
        return Result(job.recording_id, job.portion, 'failed', 0, 0, 0, frozenset(), [],
                      str(error))
    speech = int(np.count_nonzero(np.any(arrays['embeddings'] != 0, axis=1)))
    return Result(job.recording_id, job.portion, status, len(arrays['timestamps']), speech,
                  words, unknown, warnings, None)


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------
def check_settings_unchanged(info_path, info, overwrite):
    """Existing TFRecords are only reused when made with the same settings."""
    if overwrite or not os.path.isfile(info_path):
        return
    previous = helper.read_json(info_path)
    for key in ('sample_rate', 'frame_samples', 'embedding_dim', 'embeddings'):
        if previous.get(key) != info[key]:
            raise helper.InputError(info_path, None,
                                    'existing TFRecords were made with %s=%s, this run uses %s; '
                                    'rerun with --overwrite' % (key, previous.get(key), info[key]))


def remove_misplaced_records(output_dir, partition):
    """A recording whose portion changed would otherwise stay in its old
    portion's directory; files of recordings outside the partition are kept
    (dataset.json does not list them, so nothing reads them)."""
    for portion in helper.PORTIONS:
        directory = os.path.join(output_dir, portion)
        if not os.path.isdir(directory):
            continue
        for recording_id in helper.list_ids(directory, '.tfrecords'):
            path = os.path.join(directory, recording_id + '.tfrecords')
            if recording_id not in partition:
                logging.warning('%s is not in the partition: ignored', path)
            elif partition[recording_id] != portion:
                logging.info('Removing %s: the recording is now in %s',
                             path, partition[recording_id])
                os.remove(path)


def log_summary(results, embedder, elapsed):
    written = [r for r in results if r.status == 'written']
    done = [r for r in results if r.status != 'failed']
    for portion in helper.PORTIONS:
        mine = [r for r in done if r.portion == portion]
        logging.info('%-5s: %3d recordings, %7d frames', portion, len(mine),
                     sum(r.n_frames for r in mine))
    frames = sum(r.n_frames for r in done)
    speech = sum(r.speech_frames for r in done)
    unknown = frozenset().union(*(r.unknown_words for r in written))
    logging.info('%d written, %d skipped (existing), %d failed; %d frames, %.1f%% with speech',
                 len(written), len(done) - len(written), len(results) - len(done), frames,
                 100.0 * speech / max(frames, 1))
    logging.info('Words: %d in the sync maps written, %d distinct unknown to %s%s',
                 sum(r.words for r in written), len(unknown), embedder.path,
                 (' (e.g. %s)' % ', '.join(sorted(unknown)[:10])) if unknown else '')
    logging.info('%.1f s, %.0f frames/s written', elapsed,
                 sum(r.n_frames for r in written) / max(elapsed, 1e-9))


def main(argv):
    del argv
    helper.setup_logging(FLAGS.verbose)
    started = time.time()
    output_dir = helper.tfrecords_dir(FLAGS.work_dir)
    info_path = os.path.join(output_dir, DATASET_INFO)
    partition_file = FLAGS.partition or helper.partition_path(FLAGS.work_dir)
    try:
        partition = helper.read_partition(partition_file)
        embeddings_path, problems = FLAGS.embeddings, []
        if embeddings_path is None:
            embeddings_path, problems = ensure_word2vec(FLAGS.muse_dir, FLAGS.work_dir,
                                                        FLAGS.embedding_dim, FLAGS.seed,
                                                        FLAGS.overwrite, FLAGS.word2vec_epochs)
        embedder = load_embedder(embeddings_path)
        settings = dataset_info(FLAGS.sample_rate, embedder.dim, embedder.path, {}, {})
        check_settings_unchanged(info_path, settings, FLAGS.overwrite)
    except helper.InputError as error:
        logging.error('%s', error)
        return 1
    for problem in problems:
        logging.error('Transcript left out of word2vec training: %s', problem)
    _EMBEDDERS[embedder.path] = embedder

    remove_misplaced_records(output_dir, partition)
    jobs = [Job(recording_id, portion, FLAGS.muse_dir, FLAGS.work_dir,
                os.path.join(output_dir, portion, recording_id + '.tfrecords'),
                FLAGS.sample_rate, embedder.path, FLAGS.overwrite)
            for recording_id, portion in partition.items()]
    results = []
    for result in helper.parallel_map(process_recording, jobs, FLAGS.workers, 'tfrecords'):
        for warning in result.warnings:
            logging.warning('%s: %s', result.recording_id, warning)
        if result.error:
            logging.error('%s', result.error)
        helper.development_msg('%s: %s, %d frames', result.recording_id, result.status,
                               result.n_frames)
        results.append(result)

    done = [r for r in results if r.status != 'failed']
    for portion in helper.PORTIONS:
        os.makedirs(os.path.join(output_dir, portion), exist_ok=True)
    helper.write_json(info_path, dataset_info(
        FLAGS.sample_rate, embedder.dim, embedder.path,
        {portion: [r.recording_id for r in done if r.portion == portion]
         for portion in helper.PORTIONS},
        {r.recording_id: r.n_frames for r in done}, partition_file))
    log_summary(results, embedder, time.time() - started)
    failed = sorted(r.recording_id for r in results if r.status == 'failed')
    if failed or problems:
        logging.error('%d recordings failed (%s); %d transcripts unreadable. %s lists the others.',
                      len(failed), ', '.join(failed), len(problems), info_path)
        return 1
    return 0


if __name__ == '__main__':
    app.run(main)
