"""models.py: the structure of the paper, checked variable by variable against
shapes written out by hand, plus output range, dropout, input checks and
training without the padding (skip_padding)."""

import numpy as np
import pytest

import models
from ser import checkpoints

tf = models.tf


def expected_variables(S, E, hidden):
    """The paper's model for S samples and E embedding values per frame, written
    out layer by layer (name -> shape)."""
    lstm_input = 512
    return {
        # acoustic extractor: conv kernels are [width, in channels, filters]
        'model/acoustic/conv1/weights': [8, 1, 50], 'model/acoustic/conv1/biases': [50],
        'model/acoustic/conv2/weights': [6, 50, 125], 'model/acoustic/conv2/biases': [125],
        'model/acoustic/conv3/weights': [6, 125, 250], 'model/acoustic/conv3/biases': [250],
        # fuse(acoustic, embeddings): widths differ -> projections to 1024
        'model/fusion_input/project_x/weights': [S, 1024],
        'model/fusion_input/project_x/biases': [1024],
        'model/fusion_input/project_y/weights': [E, 1024],
        'model/fusion_input/project_y/biases': [1024],
        'model/fusion_input/score_vector': [1024], 'model/fusion_input/score_bias': [],
        # three parallel FC 512
        'model/hidden1/weights': [1024, 512], 'model/hidden1/biases': [512],
        'model/hidden2/weights': [1024, 512], 'model/hidden2/biases': [512],
        'model/hidden3/weights': [1024, 512], 'model/hidden3/biases': [512],
        # fuse(fuse(h1, h2), h3): equal widths, no projection
        'model/fusion_hidden12/score_vector': [512], 'model/fusion_hidden12/score_bias': [],
        'model/fusion_hidden123/score_vector': [512], 'model/fusion_hidden123/score_bias': [],
        # LSTM with peepholes
        'model/recurrent/rnn/lstm/kernel': [lstm_input + hidden, 4 * hidden],
        'model/recurrent/rnn/lstm/bias': [4 * hidden],
        'model/recurrent/rnn/lstm/w_f_diag': [hidden],
        'model/recurrent/rnn/lstm/w_i_diag': [hidden],
        'model/recurrent/rnn/lstm/w_o_diag': [hidden],
        # linear output to (arousal, valence)
        'model/output/weights': [hidden, 2], 'model/output/biases': [2],
    }


def expected_parameter_count(S, E, hidden):
    conv = (8 * 1 * 50 + 50) + (6 * 50 * 125 + 125) + (6 * 125 * 250 + 250)
    input_fusion = (S * 1024 + 1024) + (E * 1024 + 1024) + (1024 + 1)
    hidden_fc = 3 * (1024 * 512 + 512)
    hidden_fusions = 2 * (512 + 1)
    lstm = (512 + hidden) * 4 * hidden + 4 * hidden + 3 * hidden
    output = hidden * 2 + 2
    return conv + input_fusion + hidden_fc + hidden_fusions + lstm + output


def build(S, E, hidden=256, is_training=True):
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        audio = tf.placeholder(tf.float32, [None, None, S])
        embeddings = tf.placeholder(tf.float32, [None, None, E])
        predictions = models.build_model(audio, embeddings, hidden_units=hidden,
                                         is_training=is_training)
    return graph, audio, embeddings, predictions


def run(graph, audio, embeddings, predictions, batch, repeats=1, scale=1.0):
    S, E = audio.shape[-1], embeddings.shape[-1]
    rng = np.random.default_rng(0)
    feed = {audio: scale * rng.normal(size=(batch[0], batch[1], S)).astype(np.float32),
            embeddings: scale * rng.normal(size=(batch[0], batch[1], E)).astype(np.float32)}
    with tf.Session(graph=graph) as session:
        session.run(tf.variables_initializer(graph.get_collection('variables')))
        return [session.run(predictions, feed) for _ in range(repeats)]


@pytest.mark.parametrize('S, E, hidden', [(4000, 100, 256), (500, 8, 16)])
def test_variables_match_the_structure_written_out_by_hand(S, E, hidden):
    graph, *_ = build(S, E, hidden)
    with graph.as_default():
        found = {v.op.name: v.shape.as_list() for v in tf.trainable_variables()}
        total = models.model_summary()
    assert found == expected_variables(S, E, hidden)
    assert total == expected_parameter_count(S, E, hidden)


def test_output_shape_and_range():
    graph, audio, embeddings, predictions = build(500, 8)
    assert predictions.shape.as_list() == [None, None, 2]
    # Loud input drives the pre-activations far from zero; tanh must still bound them.
    (out,) = run(graph, audio, embeddings, predictions, batch=(3, 7), scale=100.0)
    assert out.shape == (3, 7, 2)
    assert np.all(np.abs(out) < 1.0) and np.isfinite(out).all()


def test_dropout_only_while_training():
    training = run(*build(500, 8, is_training=True), batch=(2, 4), repeats=2)
    evaluation = run(*build(500, 8, is_training=False), batch=(2, 4), repeats=2)
    assert not np.allclose(training[0], training[1])
    np.testing.assert_array_equal(evaluation[0], evaluation[1])


def test_mask_stops_the_lstm_at_the_sequence_length():
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(1)   # the weights too: a test that passes once passes every time
        audio = tf.placeholder(tf.float32, [None, None, 250])
        embeddings = tf.placeholder(tf.float32, [None, None, 4])
        mask = tf.placeholder(tf.float32, [None, None])
        predictions = models.build_model(audio, embeddings, is_training=False, mask=mask)
        bias = [v for v in tf.trainable_variables() if v.op.name == 'model/output/biases'][0]
        rng = np.random.default_rng(1)
        feed = {audio: rng.normal(size=(3, 5, 250)), embeddings: rng.normal(size=(3, 5, 4)),
                mask: [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 1, 1, 0]]}
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            session.run(bias.assign([0.3, -0.2]))
            out = session.run(predictions, feed)
    # Past the last real frame the LSTM emits zeros, so only the output bias is left.
    bias_only = np.tanh([0.3, -0.2])
    np.testing.assert_allclose(out[1, 3:], [bias_only] * 2, rtol=1e-6)
    np.testing.assert_allclose(out[2, 4:], [bias_only], rtol=1e-6)
    # Before it (leading padding included) the LSTM runs.
    for row, end in ((0, 5), (1, 3), (2, 4)):
        assert not np.isclose(out[row, :end], bias_only).any()


def test_segments_packed_in_one_window_predict_as_if_alone():
    """The data provider's packed window: segment a, a padding frame, segment b,
    with `reset` on each segment's first frame. Each segment's predictions must
    be those of the segment alone between padding frames: the LSTM starts
    afresh and the convolutions do not reach across the padding frame."""
    S, E = 250, 4
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(7, S)), rng.normal(size=(5, S))
    a_words, b_words = rng.normal(size=(7, E)), rng.normal(size=(5, E))
    gap, no_words = np.zeros((1, S)), np.zeros((1, E))

    def row(*parts):
        return np.concatenate(parts)[None]

    def resets(length, *starts):
        flags = np.zeros((1, length))
        flags[0, list(starts)] = 1
        return flags

    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(2)   # the weights too: a test that passes once passes every time
        audio = tf.placeholder(tf.float32, [None, None, S])
        embeddings = tf.placeholder(tf.float32, [None, None, E])
        reset = tf.placeholder(tf.float32, [None, None])
        predictions = models.build_model(audio, embeddings, 16, is_training=False, reset=reset)
        names = {v.op.name for v in tf.trainable_variables()}
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())

            def predict(audio_row, words_row, reset_row):
                return session.run(predictions, {audio: audio_row, embeddings: words_row,
                                                 reset: reset_row})[0]
            packed_audio, packed_words = row(gap, a, gap, b), row(no_words, a_words, no_words,
                                                                 b_words)
            packed = predict(packed_audio, packed_words, resets(14, 1, 9))
            never_reset = predict(packed_audio, packed_words, resets(14))
            a_alone = predict(row(gap, a, gap), row(no_words, a_words, no_words), resets(9, 1))
            b_alone = predict(row(gap, b), row(no_words, b_words), resets(6, 1))
    # The wrapper adds no variable scope: checkpoints load with or without it.
    assert names == set(expected_variables(S, E, 16))
    np.testing.assert_allclose(packed[1:8], a_alone[1:8], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(packed[9:], b_alone[1:], rtol=1e-5, atol=1e-6)
    # Without the reset, segment b would hear segment a through the LSTM state.
    assert np.abs(never_reset[9:] - b_alone[1:]).max() > 1e-3


@pytest.mark.parametrize('width_y', [6, 10])
def test_fusion_is_the_attention_worked_out_in_numpy(width_y):
    """models.fuse on known weights: a softmax over the two candidates of
    their scores (c . v + b) / sqrt(W), and their weighted sum; inputs of
    different widths first projected (ReLU) to the projection width."""
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(2, 3, 6)), rng.normal(size=(2, 3, width_y))
    with tf.Graph().as_default():
        fused = models.fuse(tf.constant(x, tf.float32), tf.constant(y, tf.float32), units=4)
        variables = {v.op.name: v for v in tf.global_variables()}
        values = {name: rng.normal(size=v.shape.as_list()) for name, v in variables.items()}
        with tf.Session() as session:
            session.run([v.assign(values[name]) for name, v in variables.items()])
            got = session.run(fused)
    if width_y != x.shape[-1]:
        x, y = (np.maximum(0, a @ values['fusion/project_%s/weights' % n]
                           + values['fusion/project_%s/biases' % n])
                for a, n in ((x, 'x'), (y, 'y')))
    width = x.shape[-1]
    candidates = np.stack([x, y], axis=-2)
    scores = (candidates @ values['fusion/score_vector'] + values['fusion/score_bias']) \
        / np.sqrt(width)
    weights = np.exp(scores) / np.exp(scores).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(got, (candidates * weights[..., None]).sum(axis=-2), rtol=1e-5,
                               atol=1e-6)


def numpy_conv_block(signal, weights, biases, pool):
    """[L,C] -> [L/pool,F] in the paper's order: a 'SAME' convolution plus its
    bias, the ReLU, then the max-pool."""
    width = weights.shape[0]
    before = (width - 1) // 2
    padded = np.pad(signal, [[before, width - 1 - before], [0, 0]])
    windows = np.stack([padded[k:k + len(signal)] for k in range(width)], axis=1)
    activations = np.maximum(0, np.einsum('lkc,kcf->lf', windows, weights) + biases)
    return activations.reshape(len(signal) // pool, pool, -1).max(axis=1)


def test_acoustic_features_are_the_paper_s_blocks_worked_out_in_numpy():
    """The bias and the ReLU come after the max-pool in models.py, and the
    features must still be max-pool(relu(conv + b)): biases of both signs,
    several of them negative enough to cut whole channels."""
    rng = np.random.default_rng(11)
    audio = rng.normal(size=(2, 3, 500))
    with tf.Graph().as_default():
        features = models.acoustic_features(tf.constant(audio, tf.float32), is_training=False)
        variables = {v.op.name: v for v in tf.global_variables()}
        values = {name: rng.normal(scale=0.5, size=v.shape.as_list())
                  for name, v in variables.items()}
        with tf.Session() as session:
            session.run([v.assign(values[name]) for name, v in variables.items()])
            got = session.run(features)
    expected = []
    for signal in audio.reshape(2, -1, 1):
        for block, (_, _, pool) in enumerate(models.CONV_BLOCKS, start=1):
            signal = numpy_conv_block(signal, values['acoustic/conv%d/weights' % block],
                                      values['acoustic/conv%d/biases' % block], pool)
        expected.append(signal.reshape(3, 500))
    expected = np.array(expected)
    assert (expected == 0).mean() > 0.1
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_lstm_computes_what_tensorflow_s_peephole_lstm_cell_computes(monkeypatch):
    """models.lstm against tf.nn.rnn_cell.LSTMCell on the same variables, with
    sequence lengths, a carried-in state, and a clip small enough to act."""
    monkeypatch.setattr(models, 'LSTM_CELL_CLIP', 0.5)
    B, T, width, hidden = 3, 9, 20, 8
    rng = np.random.default_rng(5)
    with tf.Graph().as_default():
        features = tf.constant(3 * rng.normal(size=(B, T, width)), tf.float32)
        state = tf.nn.rnn_cell.LSTMStateTuple(
            *tf.unstack(tf.constant(rng.normal(size=(2, B, hidden)), tf.float32)))
        lengths = tf.constant([9, 5, 7])
        ours = models.lstm(features, hidden, lengths, initial_state=state)
        with tf.variable_scope('recurrent', reuse=True):
            cell = tf.nn.rnn_cell.LSTMCell(hidden, use_peepholes=True, cell_clip=0.5, name='lstm')
            theirs = tf.nn.dynamic_rnn(cell, features, sequence_length=lengths,
                                       initial_state=state)
        with tf.Session() as session:
            session.run([v.assign(tf.random.normal(tf.shape(v), seed=6))
                         for v in tf.global_variables()])
            ours, theirs = session.run([ours, theirs])
    (outputs, (c, h)), (their_outputs, (their_c, their_h)) = ours, theirs
    np.testing.assert_allclose(outputs, their_outputs, atol=1e-6)
    np.testing.assert_allclose(c, their_c, atol=1e-6)
    np.testing.assert_allclose(h, their_h, atol=1e-6)
    assert np.abs(c).max() == pytest.approx(0.5)


# Windows as the data provider cuts them (1 real frame, 0 padding), B=6, T=12:
# padding before and after a segment, a full window, segments that meet either
# edge, a packed window's single padding frame between two segments, and a
# single padding frame at the start.
PADDED_WINDOWS = np.array([[0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0],
                           [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
                           [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
                           [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
                           [1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1],
                           [0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]], np.float32)


def padded_batch(S, E, seed=3):
    """Random audio and embeddings on PADDED_WINDOWS' real frames, zeros on the
    padding, as in the TFRecords' windows."""
    rng = np.random.default_rng(seed)
    real = PADDED_WINDOWS[..., None]
    shape = PADDED_WINDOWS.shape
    return (real * rng.normal(size=shape + (S,)).astype(np.float32),
            real * rng.normal(size=shape + (E,)).astype(np.float32))


def far_from_real_frames(mask):
    """Padding frames that are not next to a real frame of their window."""
    real = mask > 0
    near = real.copy()
    near[:, 1:] |= real[:, :-1]
    near[:, :-1] |= real[:, 1:]
    return ~near


def build_with_and_without_padding(S, E, is_training=False):
    """One graph, one set of weights, the model built twice: padding computed,
    then skipped. Returns (graph, inputs, [computed, skipped] predictions)."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(4)
        inputs = (tf.placeholder(tf.float32, [None, None, S]),
                  tf.placeholder(tf.float32, [None, None, E]),
                  tf.placeholder(tf.float32, [None, None]))
        predictions = []
        for skip_padding in (False, True):
            with tf.variable_scope(tf.get_variable_scope(), reuse=skip_padding):
                predictions.append(models.build_model(*inputs[:2], 16, is_training=is_training,
                                                      mask=inputs[2], skip_padding=skip_padding))
    return graph, inputs, predictions


def test_skipping_padding_predicts_every_real_frame_as_computing_it():
    """Without dropout the frames' features are exact: each real frame's
    prediction must be what the whole window computed gives, windows whose
    segment meets an edge (SAME padding) and leading padding included. Padding
    far from real frames is never read: NaN there changes nothing."""
    S, E = 250, 4
    audio, words = padded_batch(S, E)
    far = far_from_real_frames(PADDED_WINDOWS)
    unread_audio, unread_words = audio.copy(), words.copy()
    unread_audio[far], unread_words[far] = np.nan, np.nan
    graph, (audio_in, words_in, mask_in), (computed, skipped) = build_with_and_without_padding(S, E)
    with tf.Session(graph=graph) as session:
        session.run(tf.variables_initializer(graph.get_collection('variables')))

        def predict(predictions, audio_values, words_values):
            return session.run(predictions, {audio_in: audio_values, words_in: words_values,
                                             mask_in: PADDED_WINDOWS})
        reference = predict(computed, audio, words)
        with_skipping = predict(skipped, audio, words)
        nan_far_skipped = predict(skipped, unread_audio, unread_words)
        nan_far_computed = predict(computed, unread_audio, unread_words)
    real = PADDED_WINDOWS > 0
    # Padding's too: before the last real frame from pool frames, after it the LSTM has stopped.
    np.testing.assert_allclose(with_skipping, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(nan_far_skipped[real], with_skipping[real])
    # Computing the padding reads it: the NaN before window 0's segment reaches it.
    assert np.isnan(nan_far_computed[0][real[0]]).all()


def test_skipping_padding_trains_every_variable():
    """With dropout, as in training: gradients reach every variable, finite,
    and the convolutions' (fed by the compact signal only) are not zero."""
    S, E = 250, 4
    audio, words = padded_batch(S, E)
    graph, (audio_in, words_in, mask_in), (_, skipped) = build_with_and_without_padding(
        S, E, is_training=True)
    with graph.as_default():
        variables = tf.trainable_variables()
        gradients = tf.gradients(tf.reduce_sum(skipped * mask_in[..., None]), variables)
        assert None not in gradients
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            values = session.run(gradients, {audio_in: audio, words_in: words,
                                             mask_in: PADDED_WINDOWS})
    for variable, value in zip(variables, values):
        assert np.isfinite(value).all(), variable.op.name
        if '/acoustic/' in variable.op.name:
            assert np.abs(value).max() > 0, variable.op.name


@pytest.mark.parametrize('S', [300, 4100])
def test_frame_samples_must_be_a_multiple_of_250(S):
    with pytest.raises(ValueError, match='multiple of 250'):
        build(S, 8)


def test_checkpoint_path_lists_the_existing_steps(tmp_path):
    for step in (10, 200, 30):
        for suffix in ('.index', '.meta', '.data-00000-of-00001'):
            (tmp_path / ('model.ckpt-%d%s' % (step, suffix))).write_text('')
    (tmp_path / '.model.ckpt-999.index').write_text('')   # hidden: ignored
    assert checkpoints.available_steps(str(tmp_path)) == [10, 30, 200]
    assert checkpoints.checkpoint_path(str(tmp_path)) == (str(tmp_path / 'model.ckpt-200'), 200)
    assert checkpoints.checkpoint_path(str(tmp_path), 30) == (str(tmp_path / 'model.ckpt-30'), 30)
    assert len(checkpoints.checkpoint_files(str(tmp_path / 'model.ckpt-30'))) == 3
    with pytest.raises(models.helper.InputError, match='available steps: 10, 30, 200'):
        checkpoints.checkpoint_path(str(tmp_path), 20)
