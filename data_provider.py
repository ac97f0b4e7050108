"""The queue-based TF1 input pipeline over the TFRecords of data_generator.py
(one file per segment <Id>_<seg>).

string_input_producer -> TFRecordReader -> parse_single_example -> decode_raw
-> one segment's frames -> windows of `sequence_length` frames ->
shuffle_batch (training) / batch (evaluation), all driven by queue runners.

Each TFRecord file holds one whole segment, so the window length is chosen
here, at reading time, and never requires regenerating the records. Padding
frames are zeros with mask 0, so losses and metrics skip them.

Training windows (`windows`, defaults.WINDOW_SCHEMES), each drawing every real frame
once per pass over the segments:
  per_segment (default): each segment on its own, after 0..T-1 padding
    frames drawn at random, so its windows' boundaries move from pass to
    pass, and its last window padded to T. MuSe-CaR's topic segments are
    often shorter than a 25 s window, so most of such a window is padding.
  tight: as per_segment, but in the fewest windows that hold the segment: the
    leading padding is drawn among its spare frames (ceil(N/T)*T - N) only.
    A segment shorter than a window fills one window from (nearly) its first
    frame.
  packed: the shuffled train segments follow one another as one
    stream of frames, one padding frame before each segment, and every T
    consecutive frames of the stream are a window. A window may hold the end
    of one segment and the start of the next, but no segment reaches another:
    'reset' [B,T] marks each segment's first frame, where the model's LSTM
    starts from a zero state, and the padding frame between them is wider than
    the reach of the convolutions across a frame edge (under 250 samples), so
    each segment's predictions are those of the segment alone between two
    padding frames.

Usage (graph mode):
    batch = data_provider.get_split('tfrecords', 'train', 5, 100, is_training=True)
    ... tf.train.start_queue_runners(sess) ...
"""

import helper
from ser import paths
from ser import defaults
from ser.dataset import DatasetInfo

tf = helper.import_tensorflow()

# Windows kept in the shuffle queue after each dequeue: with T=100, S=4000 a
# window is 1.6 MB, so 64 of them (~100 MB) mix several segments.
MIN_AFTER_DEQUEUE = 64
# Frames the packing queue holds, in windows: one being cut while the next
# segment is read in.
PACKING_QUEUE_WINDOWS = 2


def read_segment(filename_queue, frame_samples, embedding_dim):
    """Tensors of the next segment: audio [N, S], embeddings [N, E], labels
    [N, 2] float32, timestamps [N] int64, mask [N] ones, id (scalar string)."""
    _, serialized = tf.TFRecordReader().read(filename_queue)
    features = tf.parse_single_example(serialized, {
        'id': tf.FixedLenFeature([], tf.string),
        'n_frames': tf.FixedLenFeature([], tf.int64),
        'timestamps': tf.VarLenFeature(tf.int64),
        'audio': tf.FixedLenFeature([], tf.string),
        'embeddings': tf.FixedLenFeature([], tf.string),
        'labels': tf.FixedLenFeature([], tf.string),
    })
    n_frames = tf.cast(features['n_frames'], tf.int32)

    def frames(name, width):
        values = tf.reshape(tf.decode_raw(features[name], tf.float32), [n_frames, width])
        values.set_shape([None, width])
        return values

    return {
        'audio': frames('audio', frame_samples),
        'embeddings': frames('embeddings', embedding_dim),
        'labels': frames('labels', len(paths.DIMENSIONS)),
        'timestamps': tf.reshape(tf.sparse.to_dense(features['timestamps']), [n_frames]),
        'mask': tf.ones([n_frames], tf.float32),
        'id': features['id'],
    }


def to_windows(segment, sequence_length, offset):
    """Cut one segment into [W, T, ...] windows. `offset` padding frames go
    before the first real frame (so window boundaries move between passes),
    and the last window is padded to T; padding is zeros with mask 0."""
    n_frames = tf.shape(segment['mask'])[0]
    n_windows = (offset + n_frames + sequence_length - 1) // sequence_length
    after = n_windows * sequence_length - offset - n_frames
    windows = {}
    for name, values in segment.items():
        if name == 'id':
            windows[name] = tf.fill([n_windows], values)
            continue
        inner = values.shape.as_list()[1:]
        padded = tf.pad(values, [[offset, after]] + [[0, 0]] * len(inner))
        windows[name] = tf.reshape(padded, [n_windows, sequence_length] + inner)
    return windows


def leading_padding(n_frames, sequence_length, windows, seed):
    """Random number of padding frames before a segment of n_frames: up to the
    spare frames of its fewest windows ('tight') or up to T-1 ('per_segment')."""
    if windows == 'tight':
        spare = -n_frames % sequence_length
    else:
        spare = sequence_length - 1
    return tf.random_uniform([], 0, spare + 1, tf.int32, seed=seed)


def separated_frames(segment):
    """The segment's frames after one padding frame (zeros, mask 0, id ''),
    with 'reset' 1 on its first real frame and 'id' repeated per frame."""
    n_frames = tf.shape(segment['mask'])[0]
    frames = {}
    for name, values in segment.items():
        if name == 'id':
            frames[name] = tf.concat([[''], tf.fill([n_frames], values)], 0)
            continue
        frames[name] = tf.pad(values, [[1, 0]] + [[0, 0]] * (values.shape.ndims - 1))
    frames['reset'] = tf.one_hot(1, n_frames + 1, dtype=tf.float32)
    return frames


def packed_windows(segment, sequence_length):
    """Windows of `sequence_length` consecutive frames of the stream of
    segments (separated_frames, one segment after another as the reader hands
    them out): a dict of [T, ...] tensors, 'id' and 'reset' per frame. A queue
    of frames, fed a whole segment at a time by its own queue runner, is cut
    T frames at a time."""
    frames = separated_frames(segment)
    names = sorted(frames)
    queue = tf.FIFOQueue(PACKING_QUEUE_WINDOWS * sequence_length,
                         [frames[n].dtype for n in names],
                         shapes=[frames[n].shape[1:] for n in names], name='packing_queue')
    # One thread: the stream's order depends on the seed only.
    tf.train.add_queue_runner(tf.train.QueueRunner(
        queue, [queue.enqueue_many([frames[n] for n in names])]))
    return dict(zip(names, queue.dequeue_many(sequence_length)))


def get_split(dataset_dir, portion, batch_size, sequence_length, is_training, seed=0,
              num_epochs=None, windows=defaults.WINDOWS):
    """Batches of one portion as a dict of tensors:
      'audio' [B,T,S] float32, 'embeddings' [B,T,E] float32,
      'labels' [B,T,2] float32, 'mask' [B,T] float32 (1 real frame, 0 padding),
      'id' [B] string, 'timestamps' [B,T] int64 (ms; 0 on padding).

    sequence_length T > 0: windows of T frames.
      is_training: files and windows shuffled (seeded), static shapes,
      `num_epochs` None repeats forever, windows cut as `windows` says (see
      the module's docstring): 'packed' adds 'reset' [B,T] float32 (1 on a
      segment's first frame) and gives 'id' per frame [B,T] ('' on padding);
      'tight' and 'per_segment' windows each come from one segment, 'id' [B].
      Otherwise: windows of one segment each, from its first frame, in file
      order; with a finite `num_epochs` the last batch may be smaller (batch
      dimension None) and OutOfRangeError ends it.
    (Evaluation reads whole segments itself: ser.evaluation.)
    Finite `num_epochs` needs tf.local_variables_initializer()."""
    info = DatasetInfo.load(dataset_dir)
    paths = info.portion_files(portion)
    if not sequence_length or sequence_length < 1:
        raise ValueError('windows need a sequence_length of at least 1 frame, got %r'
                         % (sequence_length,))
    if windows not in defaults.WINDOW_SCHEMES:
        raise ValueError('windows must be one of %s, got %r' % (', '.join(defaults.WINDOW_SCHEMES),
                                                                 windows))
    filename_queue = tf.train.string_input_producer(
        paths, num_epochs=num_epochs, shuffle=is_training, seed=seed)
    segment = read_segment(filename_queue, info.frame_samples, info.embedding_dim)
    names = sorted(segment)
    if is_training and windows == 'packed':
        window = packed_windows(segment, sequence_length)
        names = sorted(window)
        batch = tf.train.shuffle_batch(
            [window[n] for n in names], batch_size, capacity=MIN_AFTER_DEQUEUE + 1,
            min_after_dequeue=MIN_AFTER_DEQUEUE, num_threads=1, seed=seed)
        return dict(zip(names, batch))

    offset = (leading_padding(tf.shape(segment['mask'])[0], sequence_length, windows, seed)
              if is_training else tf.constant(0))
    windows = to_windows(segment, sequence_length, offset)
    tensors = [windows[n] for n in names]
    if is_training:
        # The queue hands out windows one at a time, each as soon as it holds more
        # than min_after_dequeue. With one enqueuing thread and room for just one
        # more, every pick is made from a full queue whose content does not depend
        # on thread timing: the batches depend on the seed only.
        batch = tf.train.shuffle_batch(
            tensors, batch_size, capacity=MIN_AFTER_DEQUEUE + 1,
            min_after_dequeue=MIN_AFTER_DEQUEUE, num_threads=1, seed=seed, enqueue_many=True)
    else:
        batch = tf.train.batch(tensors, batch_size, num_threads=1,
                               capacity=MIN_AFTER_DEQUEUE + batch_size, enqueue_many=True,
                               allow_smaller_final_batch=num_epochs is not None)
    return dict(zip(names, batch))
