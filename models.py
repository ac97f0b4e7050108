"""The model of Tzirakis et al. (ICASSP 2021): a raw-waveform convolutional
extractor and word embeddings, fused by attention, then an LSTM over time.

    audio [B,T,S] ─ (conv, pool, dropout) ×3 ─ [B,T,S] ─┐
                                                         fuse ─ h ─ FC ×3 ─ h1, h2, h3
    embeddings [B,T,E] ──────────────────────────────────┘
    fuse(fuse(h1, h2), h3) ─ LSTM ─ FC(2) ─ tanh ─ [B,T,2] (arousal, valence)

The modality (both, audio, text) zeroes one input before the first layers,
for the ablation of either branch; the structure stays the same.

What it takes to rebuild the model from a checkpoint is ser.checkpoints'.
"""

import logging

import numpy as np

import helper
from ser import paths
from ser import defaults

tf = helper.import_tensorflow()
import tf_slim as slim  # noqa: E402  (after helper.import_tensorflow, which must come first)

# --------------------------------------------------------------------------
# Structure constants (the paper's); --hidden_units only sizes the LSTM.
# --------------------------------------------------------------------------
# Acoustic extractor: one (filters, kernel width, pool size) per block.
CONV_BLOCKS = ((50, 8, 10), (125, 6, 5), (250, 6, 5))
DROPOUT_KEEP_PROB = 0.5
# Product of the pool sizes, which is also the last block's filter count:
# T*S samples become T*S/250 positions of 250 channels, i.e. T*S values again.
AUDIO_REDUCTION = int(np.prod([pool for _, _, pool in CONV_BLOCKS]))
assert AUDIO_REDUCTION == CONV_BLOCKS[-1][0]
FUSION_PROJECTION_UNITS = 1024
HIDDEN_FC_UNITS = 512
N_HIDDEN_FC = 3
LSTM_CELL_CLIP = 100.0
# Padding frames computed per training batch to stand for all of its padding
# that the LSTM runs through (compact_frame_features).
PADDING_POOL_FRAMES = 16
# The compact signal's rows are a multiple of this many frames long: oneDNN
# builds its kernels anew for each input shape it meets, which costs more than
# the zero frames the rounding adds.
SIGNAL_ROW_GRANULE = 8
N_OUTPUTS = len(paths.DIMENSIONS)


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------
def acoustic_features(audio, is_training, edges=None):
    """[B,T,S] raw audio -> [B,T,S] learned features. The convolutions run on
    the window's waveform as one signal, so they see across frame edges.
    `edges` [B,T] (optional): where 0, a frame stands for what lies beyond a
    window's edge, zero at the input of every block as 'SAME' padding is."""
    frame_samples = audio.shape[-1]
    if frame_samples is None or frame_samples % AUDIO_REDUCTION:
        raise ValueError('frame_samples must be a known multiple of %d, got %s'
                         % (AUDIO_REDUCTION, frame_samples))
    batch, steps = tf.shape(audio)[0], tf.shape(audio)[1]
    net = tf.reshape(audio, [batch, steps * frame_samples, 1])
    positions_per_frame = frame_samples
    with tf.variable_scope('acoustic'):
        for block, (filters, width, pool) in enumerate(CONV_BLOCKS, start=1):
            if edges is not None:
                net *= tf.repeat(tf.cast(edges, net.dtype), positions_per_frame, axis=1)[..., None]
            positions_per_frame //= pool
            # max-pool(relu(conv + b)) computed as relu(max-pool(conv) + b): the same
            # numbers, as adding a channel's bias and the ReLU are monotonic, but the
            # bias, the ReLU and their gradients run on a tensor `pool` times smaller
            # (BENCHMARKS.md, "What was tried").
            net = slim.conv1d(net, filters, width, padding='SAME', activation_fn=None,
                              biases_initializer=None, scope='conv%d' % block)
            net = slim.pool(net, [pool], 'MAX', stride=[pool], padding='VALID',
                            scope='pool%d' % block)
            net = slim.bias_add(net, activation_fn=tf.nn.relu, scope='conv%d' % block)
            net = slim.dropout(net, DROPOUT_KEEP_PROB, is_training=is_training,
                               scope='dropout%d' % block)
    return tf.reshape(net, [batch, steps, frame_samples])


def conv_reach(blocks=CONV_BLOCKS):
    """(samples before, samples after) the AUDIO_REDUCTION-sample block behind
    one acoustic output that the convolutions read: a width-k kernel with same
    padding reaches (k-1)//2 positions back and k-1-(k-1)//2 ahead, each
    position as many samples wide as the pools before it shrink."""
    before = after = 0
    scale = 1
    for _, width, pool in blocks:
        before += (width - 1) // 2 * scale
        after += (width - 1 - (width - 1) // 2) * scale
        scale *= pool
    return before, after


# 123 and 184 samples, less than a frame: a frame's features depend on its two
# neighbours at most (compact_frame_features and ser.inference's chunks rely on it).
assert max(conv_reach()) <= AUDIO_REDUCTION


def fuse(x, y, units=FUSION_PROJECTION_UNITS, scope='fusion'):
    """Attention over two candidate vectors per frame. Inputs of different
    widths are first brought to `units` by their own ReLU projection."""
    with tf.variable_scope(scope):
        if x.shape[-1] != y.shape[-1]:
            x = slim.fully_connected(x, units, activation_fn=tf.nn.relu, scope='project_x')
            y = slim.fully_connected(y, units, activation_fn=tf.nn.relu, scope='project_y')
        width = int(x.shape[-1])
        candidates = tf.stack([x, y], axis=-2)                      # [B,T,2,W]
        vector = tf.get_variable('score_vector', [width],
                                 initializer=tf.glorot_uniform_initializer())
        bias = tf.get_variable('score_bias', [], initializer=tf.zeros_initializer())
        scores = (tf.tensordot(candidates, vector, axes=1) + bias) / np.sqrt(width)
        weights = tf.nn.softmax(scores, axis=-1)                    # [B,T,2]
        return tf.reduce_sum(candidates * weights[..., None], axis=-2)


def semantic_acoustic_fusion(acoustic, embeddings):
    h = fuse(acoustic, embeddings, scope='fusion_input')
    h1, h2, h3 = [slim.fully_connected(h, HIDDEN_FC_UNITS, activation_fn=tf.nn.relu,
                                       scope='hidden%d' % i)
                  for i in range(1, N_HIDDEN_FC + 1)]
    return fuse(fuse(h1, h2, scope='fusion_hidden12'), h3, scope='fusion_hidden123')


def frame_features(audio, embeddings, is_training):
    """[B,T,S] audio and [B,T,E] embeddings -> [B,T,HIDDEN_FC_UNITS], what
    the LSTM hears of each frame."""
    return semantic_acoustic_fusion(acoustic_features(audio, is_training), embeddings)


def compact_frame_features(audio, embeddings, mask, is_training):
    """frame_features of a batch of windows, computed without the padding frames
    that cannot change a real frame's prediction. Training windows are mostly
    padding when segments are shorter than a window, and the convolutions over
    it are work no prediction needs (BENCHMARKS.md, "Training speed", has what
    leaving it out saves). What is computed, as one signal:

      - every real frame and its two neighbours (their audio reaches a real
        frame's features through the convolutions, conv_reach), in runs;
      - before and after each run a zero frame, which stands for the padding
        beyond it, or for the window's edge (`edges` 0) where the run meets it;
      - a pool of padding frames: one at a window's start, PADDING_POOL_FRAMES
        within a window;
      - zero frames after it, up to SIGNAL_ROW_GRANULE frames a row.

    Padding before a window's last real frame still runs through the LSTM: each
    such frame takes a pool frame's features (of its kind, drawn at random):
    the same values without dropout; with it, each frame's features have the
    same distribution, though the frames of a batch share the pool's draws.
    Padding after the last real frame is left out: the LSTM stops before it and
    the loss ignores it. Returns [B,T,HIDDEN_FC_UNITS] as frame_features does."""
    with tf.name_scope('compact'):
        real = mask > 0
        frame = tf.range(tf.shape(mask)[1])[None, :] + tf.zeros_like(mask, tf.int32)
        last_frame = tf.equal(frame, tf.shape(mask)[1] - 1)
        needed = real | shift(real, 1) | shift(real, -1)
        starts = needed & ~shift(needed, 1)
        ends = needed & ~shift(needed, -1)
        # Each needed frame takes a slot in the signal, a run's first and last
        # also one for the zero frame before and after it.
        is_needed, is_start, is_end = (tf.cast(f, tf.int32) for f in (needed, starts, ends))
        slots = is_needed * (1 + is_start + is_end)
        slot = (tf.reshape(tf.cumsum(tf.reshape(slots, [-1]), exclusive=True), tf.shape(slots))
                + is_start)
        pool_start = tf.reduce_sum(slots)
        # The pool: a window's edge, its first frame, PADDING_POOL_FRAMES more, a zero
        # frame; then zero frames up to a multiple of SIGNAL_ROW_GRANULE per row.
        granule = tf.shape(mask)[0] * SIGNAL_ROW_GRANULE
        n_slots = (pool_start + PADDING_POOL_FRAMES + 3 + granule - 1) // granule * granule
        at_edge = tf.concat([tf.boolean_mask(slot - 1, starts & tf.equal(frame, 0)),
                             tf.boolean_mask(slot + 1, ends & last_frame), [pool_start]], 0)
        edges = tf.tensor_scatter_nd_update(tf.ones([n_slots]), at_edge[:, None],
                                            tf.zeros_like(at_edge, tf.float32))
        # Which frame of the batch each slot holds; the others hold zeros (row B*T).
        n_frames = tf.size(mask)
        source = tf.scatter_nd(tf.boolean_mask(slot, needed)[:, None],
                               tf.boolean_mask(tf.range(1, n_frames + 1), tf.reshape(needed, [-1])),
                               n_slots[None]) - 1
        source = tf.where_v2(source < 0, n_frames, source)

        def with_zeros(values):
            rows = tf.reshape(values, [n_frames, values.shape[-1]])
            return tf.concat([rows, tf.zeros_like(rows[:1])], 0)

        acoustic = signal_acoustic_features(with_zeros(audio), source, edges, tf.shape(mask)[0],
                                            is_training)
        words = tf.gather(with_zeros(embeddings), source)
        features = semantic_acoustic_fusion(acoustic[None], words[None])[0]
        drawn = tf.random.uniform(tf.shape(mask), 0, PADDING_POOL_FRAMES, tf.int32)
        pooled = tf.where_v2(tf.equal(frame, 0), pool_start + 1, pool_start + 2 + drawn)
        return tf.gather(features, tf.where_v2(needed, slot, pooled))


def signal_acoustic_features(frames, source, edges, rows, is_training):
    """acoustic_features of one signal of N frames, frames[source] ([N], into
    frames [F,S]) with their edges [N] (see acoustic_features), as `rows`
    pieces side by side, each with one frame of context on either side, all
    that its frames' features depend on: the convolutions' gradients take far
    longer on a batch of one. Returns [N,S]."""
    n_slots, zeros = tf.shape(source)[0], tf.shape(frames)[0] - 1
    length = (n_slots + rows - 1) // rows
    # Zero frames with `edges` 0 around the signal, as beyond a window's edges.
    around = [[1, rows * length - n_slots + 1]]
    source = tf.pad(source, around, constant_values=zeros)
    edges = tf.pad(edges, around)
    pieces = tf.range(rows)[:, None] * length + tf.range(length + 2)[None, :]
    features = acoustic_features(tf.gather(frames, tf.gather(source, pieces)), is_training,
                                 tf.gather(edges, pieces))
    return tf.reshape(features[:, 1:-1], [rows * length, frames.shape[-1]])[:n_slots]


def shift(flags, frames):
    """[B,T] booleans moved `frames` along T (later when positive), False
    where nothing moves in: flag[b,t] becomes flags[b,t-frames]."""
    length = tf.shape(flags)[1]
    empty = tf.zeros_like(flags[:, :abs(frames)])
    if frames > 0:
        return tf.concat([empty, flags[:, :length - frames]], 1)
    return tf.concat([flags[:, -frames:], empty], 1)


class ResettingCell:
    """An RNN cell run with inputs (x, reset [B,1]): where reset is 1 the
    state is zeroed before the step, so one sequence can hold several
    independent ones (the data provider's packed windows). It opens no
    variable scope of its own: the wrapped cell's variables keep their names,
    and checkpoints load with or without it."""

    def __init__(self, cell):
        self._cell = cell

    @property
    def state_size(self):
        return self._cell.state_size

    @property
    def output_size(self):
        return self._cell.output_size

    def zero_state(self, batch_size, dtype):
        return self._cell.zero_state(batch_size, dtype)

    def __call__(self, inputs, state, scope=None):
        features, reset = inputs
        keep = 1.0 - reset
        state = tf.nest.map_structure(lambda part: part * keep, state)
        return self._cell(features, state, scope=scope)


def recurrent_output(features, hidden_units, mask=None, reset=None):
    """LSTM over time, then a linear layer to the two dimensions, tanh.
    `reset` [B,T] (optional): 1 where a new segment starts and the LSTM
    starts again from a zero state."""
    sequence_length = None
    if mask is not None:
        # The LSTM stops after the last real frame. Padding before the first real
        # frame (a window shifted by the data provider) runs like silence; the
        # loss ignores its outputs either way.
        positions = tf.range(1, tf.shape(mask)[1] + 1)
        sequence_length = tf.reduce_max(tf.cast(tf.cast(mask, tf.bool), tf.int32) * positions,
                                         axis=1)
    outputs, _ = lstm(features, hidden_units, sequence_length, reset)
    return output_layer(outputs)


class PeepholeLSTMCell:
    """The LSTM of tf.nn.rnn_cell.LSTMCell with peepholes, cell clip
    LSTM_CELL_CLIP and forget bias 1, over inputs already multiplied by the
    input rows of its kernel (with the bias added): one matrix product for all
    frames instead of one per step, so that a step of the recurrence computes
    only what depends on the previous state (BENCHMARKS.md, "Training speed",
    has the time it saves). Its variables are LSTMCell's, by name and shape, so
    checkpoints are the same."""

    def __init__(self, hidden_units, recurrent_kernel, peepholes):
        self._units = hidden_units
        self._recurrent_kernel = recurrent_kernel
        self._forget_peephole, self._input_peephole, self._output_peephole = peepholes

    @property
    def state_size(self):
        return tf.nn.rnn_cell.LSTMStateTuple(self._units, self._units)

    @property
    def output_size(self):
        return self._units

    def zero_state(self, batch_size, dtype):
        zeros = tf.zeros([batch_size, self._units], dtype)
        return tf.nn.rnn_cell.LSTMStateTuple(zeros, zeros)

    def __call__(self, projected, state, scope=None):
        c_prev, h_prev = state
        gates = projected + tf.matmul(h_prev, self._recurrent_kernel)
        i, j, f, o = tf.split(gates, 4, axis=1)
        c = (tf.sigmoid(f + 1.0 + self._forget_peephole * c_prev) * c_prev
             + tf.sigmoid(i + self._input_peephole * c_prev) * tf.tanh(j))
        c = tf.clip_by_value(c, -LSTM_CELL_CLIP, LSTM_CELL_CLIP)
        h = tf.sigmoid(o + self._output_peephole * c) * tf.tanh(c)
        return h, tf.nn.rnn_cell.LSTMStateTuple(c, h)


def lstm(features, hidden_units, sequence_length=None, reset=None, initial_state=None):
    """(outputs [B,T,H], final LSTMStateTuple) of the LSTM over `features`,
    from `initial_state` (zeros when None; ser.inference carries it from one
    chunk of a recording to the next)."""
    with tf.variable_scope('recurrent'):
        width = int(features.shape[-1])
        # LSTMCell's names under dynamic_rnn, and its Glorot-uniform initialiser,
        # named here so that --seed fixes these weights too.
        with tf.variable_scope('rnn/lstm', initializer=tf.glorot_uniform_initializer()):
            kernel = tf.get_variable('kernel', [width + hidden_units, 4 * hidden_units])
            bias = tf.get_variable('bias', [4 * hidden_units], initializer=tf.zeros_initializer())
            peepholes = [tf.get_variable(name, [hidden_units])
                         for name in ('w_f_diag', 'w_i_diag', 'w_o_diag')]
        cell = PeepholeLSTMCell(hidden_units, kernel[width:], peepholes)
        inputs = tf.tensordot(features, kernel[:width], axes=1) + bias
        if reset is not None:
            cell = ResettingCell(cell)
            inputs = (inputs, tf.cast(reset, features.dtype)[..., None])
        return tf.nn.dynamic_rnn(cell, inputs, sequence_length=sequence_length,
                                 initial_state=initial_state, dtype=tf.float32)


def output_layer(outputs):
    """The LSTM's outputs to (arousal, valence) in (-1, 1)."""
    return tf.tanh(slim.fully_connected(outputs, N_OUTPUTS, activation_fn=None, scope='output'))


def select_modality(audio, embeddings, modality):
    """The two inputs as the model hears them: 'audio' replaces the embeddings
    by zeros, 'text' the audio frames; 'both' passes them on. Zeros are what the
    data hold where a side is absent (a pause has a zero embedding, silence zero
    samples), and the model keeps its structure and sizes, so runs of the three
    modalities differ only in what reaches the first layers."""
    if modality not in defaults.MODALITIES:
        raise ValueError('modality must be one of %s, got %r' % (', '.join(defaults.MODALITIES), modality))
    with tf.name_scope('modality'):
        if modality == 'audio':
            embeddings = tf.zeros_like(embeddings)
        elif modality == 'text':
            audio = tf.zeros_like(audio)
        return tf.identity(audio, name='audio'), tf.identity(embeddings, name='embeddings')


def build_model(audio, embeddings, hidden_units=defaults.HIDDEN_UNITS, is_training=True,
                mask=None, modality=defaults.MODALITY, reset=None, skip_padding=False):
    """audio [B,T,S] float32, embeddings [B,T,E] float32 (mask [B,T] and reset
    [B,T], see recurrent_output, optional) -> predictions [B,T,2] in (-1, 1),
    (arousal, valence) per frame. `modality` (defaults.MODALITIES) says which of the two
    inputs the model hears. `skip_padding` (with a mask): the frames' features
    by compact_frame_features, which computes only what predictions depend on."""
    with tf.variable_scope('model'):
        audio, embeddings = select_modality(audio, embeddings, modality)
        if skip_padding and mask is not None:
            features = compact_frame_features(audio, embeddings, mask, is_training)
        else:
            features = frame_features(audio, embeddings, is_training)
        return recurrent_output(features, hidden_units, mask, reset)


def model_variables():
    return tf.get_collection(tf.GraphKeys.GLOBAL_VARIABLES, scope='model/')


def model_summary():
    """Log every trainable variable with its shape (debug level), and the total.
    Returns the number of trainable parameters."""
    total = 0
    for variable in tf.trainable_variables():
        count = int(np.prod(variable.shape.as_list()))
        total += count
        helper.development_msg('%-60s %-18s %d', variable.op.name, variable.shape.as_list(), count)
    logging.info('model: %d trainable parameters', total)
    return total


def inference_inputs(frame_samples, embedding_dim):
    """Placeholders for whole recordings: audio [B,T,S] and embeddings [B,T,E]."""
    audio = tf.placeholder(tf.float32, [None, None, frame_samples], name='audio')
    embeddings = tf.placeholder(tf.float32, [None, None, embedding_dim], name='embeddings')
    return audio, embeddings
