"""The TFRecord schema and the framing of one segment.

A segment `<Id>_<seg>` is one tf.train.Example in its own file:

    id          bytes   the segment name
    n_frames    int64   N, one frame per label row
    timestamps  int64[N]  ms from the segment start (the label timestamps)
    audio       bytes   float32 little-endian [N, S]: frame i = samples [t_i, t_i + 250 ms)
    embeddings  bytes   float32 little-endian [N, E]: the word overlapping frame i most
    labels      bytes   float32 little-endian [N, 2]: (arousal, valence)

Frames past the end of the audio are zeros. TensorFlow is imported only where
records are read or written, so a parent process can fork workers without it.
"""

import numpy as np

import helper
from ser import embeddings as word_embeddings
from ser import paths

STEP_SECONDS = paths.LABEL_STEP_MS / 1000.0
# models.py pools the waveform by 10 * 5 * 5 samples: a frame must split evenly.
MODEL_POOLING = 250
# A segment's audio and its labels may disagree by this much before the
# summary mentions it (the labels' first timestamp is taken as the audio's start).
DURATION_TOLERANCE_SECONDS = 1.0
SYNC_MAP_COLUMNS = [('id', str), ('start', float), ('end', float), ('word', str)]


def frame_samples_for(sample_rate):
    """Samples in one label step at `sample_rate`; ValueError unless it is an
    integer multiple of MODEL_POOLING."""
    samples, remainder = divmod(int(sample_rate) * paths.LABEL_STEP_MS, 1000)
    if sample_rate <= 0 or remainder or samples % MODEL_POOLING:
        raise ValueError('sample rate %s Hz gives %s samples per %d ms frame, which is not a '
                         'multiple of %d; use a multiple of 1000 Hz'
                         % (sample_rate, sample_rate * paths.LABEL_STEP_MS / 1000,
                            paths.LABEL_STEP_MS, MODEL_POOLING))
    return samples


def is_valid_sample_rate(sample_rate):
    try:
        frame_samples_for(sample_rate)
    except ValueError:
        return False
    return True


def read_sync_map(path):
    """[(start, end, word)] in seconds from a synchronisation map; [] for a
    header-only map (a segment nobody transcribed)."""
    rows = helper.read_table(path, SYNC_MAP_COLUMNS, line_numbers=True)
    words = []
    for row_number, (_, start, end, word) in rows:
        if start < 0 or end < start:
            raise helper.InputError(path, row_number,
                                    'word %r spans %s..%s s' % (word, start, end))
        if not word:
            raise helper.InputError(path, row_number, 'empty word')
        words.append((start, end, word))
    return words


def frame_audio(samples, frame_samples, n_frames):
    """[n_frames, frame_samples] float32: frame i is samples [i*S, (i+1)*S),
    zero-padded past the end of the audio."""
    wanted = n_frames * frame_samples
    padded = np.zeros(wanted, dtype=np.float32)
    available = min(wanted, len(samples))
    padded[:available] = samples[:available]
    return padded.reshape(n_frames, frame_samples)


def build_recording(samples, words, timestamps, labels, frame_samples, embedder):
    """Frame arrays of one segment, one frame per label row: a dict of
    timestamps [N] int64 (ms on the label grid), audio [N, S], embeddings
    [N, E], labels [N, 2]; and a list of warnings (missing label steps).
    Frame i covers [t_i, t_i + 250 ms) of `samples`, zeros past their end."""
    timestamps = np.asarray(timestamps, dtype=np.int64)
    if len(timestamps) == 0:
        raise ValueError('no label rows')
    grid_index = timestamps // paths.LABEL_STEP_MS
    warnings = []
    gaps = int(grid_index[-1] + 1 - len(grid_index) - grid_index[0])
    if gaps:
        warnings.append('%d label steps missing between %d and %d ms'
                        % (gaps, timestamps[0], timestamps[-1]))
    n_grid = int(grid_index[-1]) + 1
    return {
        'timestamps': timestamps,
        'audio': frame_audio(samples, frame_samples, n_grid)[grid_index],
        'embeddings': word_embeddings.frame_embeddings(words, n_grid, STEP_SECONDS,
                                                       embedder)[grid_index],
        'labels': np.asarray(labels, dtype=np.float32),
    }, warnings


def duration_mismatch(n_samples, sample_rate, timestamps):
    """(audio seconds, label span seconds) when they differ by more than
    DURATION_TOLERANCE_SECONDS, else None. The span runs from the first to
    the last label timestamp (the last is the next segment's first)."""
    audio_seconds = n_samples / float(sample_rate)
    span_seconds = (int(timestamps[-1]) - int(timestamps[0])) / 1000.0
    if abs(audio_seconds - span_seconds) > DURATION_TOLERANCE_SECONDS:
        return audio_seconds, span_seconds
    return None


def make_example(name, timestamps, audio, embeddings, labels):
    """One tf.train.Example holding a whole segment."""
    tf = helper.import_tensorflow()

    def raw(array):
        return tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[np.ascontiguousarray(array, dtype='<f4').tobytes()]))

    def integers(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    n_frames = len(timestamps)
    if not (len(audio) == len(embeddings) == len(labels) == n_frames):
        raise ValueError('%s: %d timestamps but %d audio, %d embedding and %d label frames'
                         % (name, n_frames, len(audio), len(embeddings), len(labels)))
    return tf.train.Example(features=tf.train.Features(feature={
        'id': tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()])),
        'n_frames': integers([n_frames]),
        'timestamps': integers(np.asarray(timestamps, dtype=np.int64).tolist()),
        'audio': raw(audio),
        'embeddings': raw(embeddings),
        'labels': raw(labels),
    }))


def write_tfrecord(path, name, timestamps, audio, embeddings, labels):
    """Write one segment as a one-Example TFRecord file, atomically."""
    tf = helper.import_tensorflow()
    example = make_example(name, timestamps, audio, embeddings, labels)
    with helper.atomic_output(path) as tmp_path:
        with tf.io.TFRecordWriter(tmp_path) as writer:
            writer.write(example.SerializeToString())


def read_tfrecord(path, frame_samples, embedding_dim):
    """The arrays of a file written by write_tfrecord (as build_recording
    returns them, plus 'id'); InputError if it does not hold one segment of
    these shapes."""
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
                        ('labels', len(paths.DIMENSIONS))):
        values = np.frombuffer(feature[name].bytes_list.value[0], dtype='<f4')
        if values.size != n_frames * width:
            raise helper.InputError(path, None, '%s holds %d values, expected %d frames x %d'
                                    % (name, values.size, n_frames, width))
        arrays[name] = values.reshape(n_frames, width).astype(np.float32)
    return arrays
