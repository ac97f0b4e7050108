"""The queue-based TF1 input pipeline over the TFRecords of data_generator.py.

string_input_producer -> TFRecordReader -> parse_single_example -> decode_raw
-> one recording's frames -> windows of `sequence_length` frames ->
shuffle_batch (training) / batch (evaluation), all driven by queue runners.

Each TFRecord file holds one whole recording, so the window length is chosen
here, at reading time, and never requires regenerating the records. Windows
are cut inside one recording (none mixes two); the frames that pad a window to
its full length are zeros with mask 0, so losses and metrics skip them.

Usage (graph mode):
    batch = data_provider.get_split('tfrecords', 'train', 5, 100, is_training=True)
    ... tf.train.start_queue_runners(sess) ...
"""

import os

import helper

tf = helper.import_tensorflow()

DATASET_INFO = 'dataset.json'
REQUIRED_KEYS = ('sample_rate', 'frame_samples', 'label_step_ms', 'embedding_dim',
                 'embeddings', 'label_names', 'partition', 'recordings')
# Windows kept in the shuffle queue after each dequeue: with T=100, S=4000 a
# window is 1.6 MB, so 64 of them (~100 MB) mix several recordings.
MIN_AFTER_DEQUEUE = 64


def load_dataset_info(dataset_dir):
    """dataset.json of `dataset_dir` as a dict. InputError when it is missing
    or malformed, or when a portion it lists has no directory."""
    path = os.path.join(dataset_dir, DATASET_INFO)
    if not os.path.isfile(path):
        raise helper.InputError(path, None, 'not found: run data_generator.py first, or point '
                                '--dataset_dir at the tfrecords directory it wrote')
    info = helper.read_json(path)
    if not isinstance(info, dict):
        raise helper.InputError(path, None, 'expected a JSON object')
    missing = [key for key in REQUIRED_KEYS if key not in info]
    if missing:
        raise helper.InputError(path, None, 'missing keys: %s' % ', '.join(missing))
    for key in ('sample_rate', 'frame_samples', 'embedding_dim'):
        if not isinstance(info[key], int) or info[key] <= 0:
            raise helper.InputError(path, None, '%s must be a positive integer, not %r'
                                    % (key, info[key]))
    partition = info['partition']
    if not isinstance(partition, dict) or not all(
            isinstance(ids, list) for ids in partition.values()):
        raise helper.InputError(path, None, 'partition must map portions to lists of ids')
    for portion, ids in partition.items():
        if ids and not os.path.isdir(os.path.join(dataset_dir, portion)):
            raise helper.InputError(os.path.join(dataset_dir, portion), None,
                                    'directory of portion %s not found' % portion)
    return info


def portion_files(dataset_dir, info, portion):
    """Sorted TFRecord paths of the recordings dataset.json lists for `portion`."""
    if portion not in helper.PORTIONS:
        raise ValueError('portion must be one of %s, not %r' % (', '.join(helper.PORTIONS),
                                                                portion))
    directory = os.path.join(dataset_dir, portion)
    ids = sorted(info['partition'].get(portion, []))
    if not ids:
        raise helper.InputError(directory, None, 'no %s recordings in this dataset' % portion)
    paths = [os.path.join(directory, recording_id + '.tfrecords') for recording_id in ids]
    for path in paths:
        if not os.path.isfile(path):
            raise helper.InputError(path, None, 'listed in %s but missing' % DATASET_INFO)
    return paths


def read_recording(filename_queue, frame_samples, embedding_dim):
    """Tensors of the next recording: audio [N, S], embeddings [N, E], labels
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
        'labels': frames('labels', len(helper.DIMENSIONS)),
        'timestamps': tf.reshape(tf.sparse.to_dense(features['timestamps']), [n_frames]),
        'mask': tf.ones([n_frames], tf.float32),
        'id': features['id'],
    }


def to_windows(recording, sequence_length, offset):
    """Cut one recording into [W, T, ...] windows. `offset` padding frames go
    before the first real frame (so window boundaries move between passes),
    and the last window is padded to T; padding is zeros with mask 0."""
    n_frames = tf.shape(recording['mask'])[0]
    n_windows = (offset + n_frames + sequence_length - 1) // sequence_length
    after = n_windows * sequence_length - offset - n_frames
    windows = {}
    for name, values in recording.items():
        if name == 'id':
            windows[name] = tf.fill([n_windows], values)
            continue
        inner = values.shape.as_list()[1:]
        padded = tf.pad(values, [[offset, after]] + [[0, 0]] * len(inner))
        windows[name] = tf.reshape(padded, [n_windows, sequence_length] + inner)
    return windows


def get_split(dataset_dir, portion, batch_size, sequence_length, is_training, seed=0,
              num_epochs=None):
    """Batches of one portion as a dict of tensors:
      'audio' [B,T,S] float32, 'embeddings' [B,T,E] float32,
      'labels' [B,T,2] float32, 'mask' [B,T] float32 (1 real frame, 0 padding),
      'id' [B] string, 'timestamps' [B,T] int64 (ms; 0 on padding).

    sequence_length T > 0: windows of T frames, each from one recording.
      is_training: files and windows shuffled (seeded), a random start offset
      per recording pass, static shapes; `num_epochs` None repeats forever.
      Otherwise: windows in file order; with a finite `num_epochs` the last
      batch may be smaller (batch dimension None) and OutOfRangeError ends it.
    sequence_length None or 0: whole recordings, one per batch element, in
      sorted id order, padded to the longest in the batch (T dimension None),
      one epoch unless `num_epochs` says otherwise; for evaluation only.
    Finite `num_epochs` needs tf.local_variables_initializer()."""
    info = load_dataset_info(dataset_dir)
    paths = portion_files(dataset_dir, info, portion)
    whole = not sequence_length
    if whole and is_training:
        raise ValueError('training needs a sequence_length')
    if whole and num_epochs is None:
        num_epochs = 1
    filename_queue = tf.train.string_input_producer(
        paths, num_epochs=num_epochs, shuffle=is_training, seed=seed)
    recording = read_recording(filename_queue, info['frame_samples'], info['embedding_dim'])
    names = sorted(recording)
    if whole:
        # One thread keeps the recordings in file order.
        batch = tf.train.batch([recording[n] for n in names], batch_size, num_threads=1,
                               capacity=2 * batch_size, dynamic_pad=True,
                               allow_smaller_final_batch=True)
        return dict(zip(names, batch))

    offset = (tf.random_uniform([], 0, sequence_length, tf.int32, seed=seed)
              if is_training else tf.constant(0))
    windows = to_windows(recording, sequence_length, offset)
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
