"""A trained model applied to recordings: load once, predict many.

    predictor = Predictor.from_saved_model('exported/', device=-1)
    samples = audio.read_file(path, predictor.sample_rate)   # or audio.decode_bytes(data, ...)
    timestamps, predictions = predictor.timeline(samples, words)   # [N] ms, [N, 2]

The model comes from a train.py directory (from_checkpoint: model.ckpt-N,
dataset.json, model.json) or an export_model.py SavedModel
(from_saved_model: the export base directory, whose highest version is used,
or one version directory). Sample rate, frame size, label step and word
vectors come from the dataset.json kept with the model, so a recording is
framed exactly as the training data were. A recording runs through the model
in chunks (defaults.CHUNK_SECONDS), the LSTM state carried from one to the next
and a little audio on either side for the convolutions: the one-pass timeline
(within float rounding) in memory bounded whatever the length. `words` are [(start, end, word)] in seconds: word
timings from a recogniser (read_words), a sentence transcript aligned with
aeneas (align_transcript) or plain text aligned over the whole recording
(ser.alignment.align_text); None means no text (zero embeddings, as silence
gets in training).
"""

import contextlib
import logging
import math
import os

import numpy as np
from absl import app

import helper
import models
from ser import alignment, audio, dataset, embeddings, recognition, records
from ser import defaults
from ser import checkpoints
from ser import paths
from ser.text import normalise_words

tf = helper.import_tensorflow()

WORD_COLUMNS = [('start', float), ('end', float), ('word', str)]
TRANSCRIPT_COLUMNS = [('start', float), ('end', float), ('sentence', str)]
SIGNATURE_KEY = 'serving_default'
# The signature that runs one chunk of a recording from a given LSTM state.
CHUNK_SIGNATURE_KEY = 'chunk'
# export_model.py puts dataset.json, model.json and the word vectors here.
EXTRA_DIR = 'assets.extra'
EMBEDDINGS_DIR = 'embeddings'
# A transcript may end this much past the audio (rounding of its times).
END_TOLERANCE = 0.05
# aeneas needs a few MFCC frames of audio to align anything.
MIN_ALIGN_SECONDS = 0.1
# Word labels are drawn on the plot only while they stay readable.
MAX_PLOT_WORDS = 60


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------
# One AUDIO_REDUCTION-sample block of audio on either side of a chunk is
# enough, and whole blocks keep the pooling grid where it is.
REACH_BEFORE, REACH_AFTER = models.conv_reach()


def acoustic_in_context(audio, context, lengths=None):
    """[B, C, S] acoustic features (models.acoustic_features) of the C frames
    of audio [B, T, S] inside `context` = (before, after) frames. The
    convolutions run on those frames and one AUDIO_REDUCTION-sample block of
    context on either side (more than they reach), not on the whole context
    frames: a frame streamed alone costs S + 500 samples of convolution, not
    3 S. Blocks are cut whole, so the pooling grid stays where it was.
    `lengths` [B] (optional): the frames of each row that are its recording's,
    the rest padding that the convolutions treat as beyond its end."""
    block = models.AUDIO_REDUCTION
    frame_samples = int(audio.shape[-1])
    if frame_samples % block:
        raise ValueError('frame_samples must be a multiple of %d, got %d'
                         % (block, frame_samples))
    batch = tf.shape(audio)[0]
    blocks = tf.reshape(audio, [batch, -1, block])
    edges = None if lengths is None else tf.sequence_mask(
        lengths * (frame_samples // block), tf.shape(blocks)[1])
    kept = tf.minimum(context, 1)
    cut = context * (frame_samples // block) - kept
    blocks = blocks[:, cut[0]:tf.shape(blocks)[1] - cut[1]]
    if edges is not None:
        edges = edges[:, cut[0]:tf.shape(edges)[1] - cut[1]]
    features = models.acoustic_features(blocks, is_training=False, edges=edges)
    features = features[:, kept[0]:tf.shape(features)[1] - kept[1]]
    return tf.reshape(features, [batch, -1, frame_samples])


def inference_graph(frame_samples, embedding_dim, hidden_units, modality=defaults.MODALITY,
                    padded=False):
    """The inference model (no dropout) for a whole recording or one chunk of
    it, in `modality`. Returns (inputs, outputs), dicts of tensors:

        audio       [B, T, S]   the chunk's frames with `context` frames around
        embeddings  [B, C, E]   the chunk's C = T - before - after frames
        context     [2] int32   frames of audio before and after them (default 0, 0)
        state_c, state_h  [B, H]  the LSTM state the chunk starts from (default zeros)
        lengths     [B] int32   with `padded` only: the frames of each row that
                                are its recording's, padding after them (default T)
      ->
        predictions [B, C, 2];  state_c, state_h [B, H] after the chunk's last frame

    A whole recording is one chunk without context from the zero state.
    The context frames feed the convolutions only (acoustic_in_context):
    their features are dropped before the fusion, so every chunk frame's
    features equal the whole pass's (the convolutions reach REACH_BEFORE /
    REACH_AFTER samples past a frame).

    With `padded`, recordings of different lengths run as one batch: a row's
    predictions up to its length are those of the recording alone (the LSTM
    reads forwards, so the padding after them changes nothing before it), and
    its state outputs are not the recording's."""
    audio, embeddings = models.inference_inputs(frame_samples, embedding_dim)
    batch = tf.shape(audio)[0]
    context = tf.placeholder_with_default(tf.zeros([2], tf.int32), [2], name='context')
    state_c, state_h = [tf.placeholder_with_default(tf.zeros([batch, hidden_units]),
                                                    [None, hidden_units], name=name)
                        for name in ('state_c', 'state_h')]
    lengths = tf.placeholder_with_default(tf.fill([batch], tf.shape(audio)[1]), [None],
                                          name='lengths') if padded else None
    with tf.variable_scope('model'):
        heard_audio, heard_embeddings = models.select_modality(audio, embeddings, modality)
        acoustic = acoustic_in_context(heard_audio, context, lengths)
        fused = models.semantic_acoustic_fusion(acoustic, heard_embeddings)
        outputs, state = models.lstm(fused, hidden_units,
                                     initial_state=tf.nn.rnn_cell.LSTMStateTuple(state_c, state_h))
        predictions = models.output_layer(outputs)
    inputs = {'audio': audio, 'embeddings': embeddings, 'context': context,
              'state_c': state_c, 'state_h': state_h}
    if padded:
        inputs['lengths'] = lengths
    outputs = {'predictions': predictions, 'state_c': tf.identity(state.c, name='next_state_c'),
               'state_h': tf.identity(state.h, name='next_state_h')}
    return inputs, outputs


def saved_model_version_dir(export_dir):
    """`export_dir` itself when it holds saved_model.pb, else its highest
    integer version directory (the one TensorFlow Serving would serve)."""
    if os.path.isfile(os.path.join(export_dir, 'saved_model.pb')):
        return export_dir
    versions = [int(name) for name in helper.list_dir(export_dir) if name.isdigit()
                and os.path.isfile(os.path.join(export_dir, name, 'saved_model.pb'))]
    if not versions:
        raise helper.InputError(export_dir, None, 'no saved_model.pb, nor version directories '
                                'holding one (export_model.py writes <export_dir>/<steps>/)')
    return os.path.join(export_dir, str(max(versions)))


@contextlib.contextmanager
def closed_on_error(session):
    """A session that failed to load its model is closed, not leaked."""
    try:
        yield
    except BaseException:
        session.close()
        raise


def chunk_frames_for(chunk_seconds, step_ms):
    """Frames per chunk of `chunk_seconds` (at least one); None for 0: one pass."""
    if not chunk_seconds:
        return None
    return max(1, int(round(chunk_seconds * 1000.0 / step_ms)))


class Predictor:
    """A trained model in its own graph and session, with the framing of the
    data it was trained on (`dataset`, a DatasetInfo). Thread-safe: one
    Predictor serves concurrent callers (TensorFlow's Session.run is).

    A recording runs in chunks of frames, the LSTM state carried from one to
    the next and a frame of audio on either side for the convolutions, so
    that memory stays bounded whatever its length and the timeline equals
    the one-pass one (to float rounding)."""

    def __init__(self, session, inputs, outputs, info, description):
        self._session = session
        self._inputs, self._outputs = inputs, outputs
        self.dataset = info
        self.description = description
        # The framing of the data the model was trained on.
        self.sample_rate, self.frame_samples = info.sample_rate, info.frame_samples
        self.embedding_dim, self.step_ms = info.embedding_dim, info.label_step_ms
        self.modality = description.get('modality')
        self._embedder = None

    @classmethod
    def from_checkpoint(cls, checkpoint_dir, steps=None, device=0, modality=None,
                        allow_modality_mismatch=False):
        """model.ckpt-<steps> (latest when None) of a train.py directory, in
        `modality` (None: the one it was trained with; another one only with
        allow_modality_mismatch)."""
        info = dataset.DatasetInfo.load(checkpoint_dir)
        config = checkpoints.read_model_config(checkpoint_dir)
        modality = checkpoints.choose_modality(
            os.path.join(checkpoint_dir, checkpoints.MODEL_CONFIG_FILE), config['modality'],
            modality, allow_modality_mismatch)
        prefix, step = checkpoints.checkpoint_path(checkpoint_dir, steps)
        graph = tf.Graph()
        with graph.as_default(), tf.device(helper.configure_device(device)):
            inputs, outputs = inference_graph(info.frame_samples, info.embedding_dim,
                                              config['hidden_units'], modality)
        session = tf.Session(graph=graph, config=helper.session_config(device))
        with graph.as_default(), closed_on_error(session):
            checkpoints.restore(session, prefix)
        return cls(session, inputs, outputs, info,
                   {'checkpoint': os.path.abspath(checkpoint_dir), 'step': step,
                    'modality': modality})

    @classmethod
    def from_saved_model(cls, export_dir, device=0, modality=None):
        """An export_model.py SavedModel, through its 'chunk' signature. Its
        graph applies the modality it was trained with (assets.extra/model.json);
        asking for another one is an error, since no input can undo the
        zeroing."""
        model_dir = saved_model_version_dir(export_dir)
        extra_dir = os.path.join(model_dir, EXTRA_DIR)
        info = dataset.DatasetInfo.load(extra_dir)
        exported = checkpoints.read_model_config(extra_dir)['modality']
        if modality not in (None, exported):
            raise helper.InputError(os.path.join(extra_dir, checkpoints.MODEL_CONFIG_FILE), None,
                                    'this export hears modality %r, fixed in its graph; run '
                                    '--modality %s from the training checkpoint instead'
                                    % (exported, modality))
        helper.configure_device(device)
        graph = tf.Graph()
        session = tf.Session(graph=graph, config=helper.session_config(device))
        with closed_on_error(session):
            meta_graph = tf.saved_model.loader.load(
                session, [tf.saved_model.tag_constants.SERVING], model_dir)
            signatures = meta_graph.signature_def
            if CHUNK_SIGNATURE_KEY not in signatures:
                raise helper.InputError(model_dir, None, 'no %r signature (found: %s)' % (
                    CHUNK_SIGNATURE_KEY, ', '.join(signatures) or 'none'))
        signature = signatures[CHUNK_SIGNATURE_KEY]

        def tensors(infos):
            return {name: graph.get_tensor_by_name(value.name) for name, value in infos.items()}

        inputs, outputs = tensors(signature.inputs), tensors(signature.outputs)
        with graph.as_default():
            outputs['predictions'] = tf.stack([outputs.pop(name) for name in paths.DIMENSIONS],
                                              axis=-1)
        version = os.path.basename(os.path.normpath(model_dir))
        return cls(session, inputs, outputs, info,
                   {'saved_model': os.path.abspath(model_dir),
                    'step': int(version) if version.isdigit() else None, 'modality': exported})

    @property
    def embedder(self):
        """The word vectors of the training data, loaded on first use (an
        acoustic-only caller never needs them)."""
        if self._embedder is None:
            path = self.dataset.embeddings_path
            if not path:
                raise helper.InputError(self.dataset.path, None,
                                        'names no word vectors: text cannot be used')
            embedder = embeddings.load_embedder(path)
            if embedder.dim != self.embedding_dim:
                raise helper.InputError(path, None, 'vectors have %d values, the model expects '
                                        '%d' % (embedder.dim, self.embedding_dim))
            self._embedder = embedder
        return self._embedder

    def n_frames(self, samples):
        """Frames covering every sample; the last one may be partial."""
        return max(1, math.ceil(len(samples) / self.frame_samples))

    def frame_vectors(self, words, n_frames):
        """[n_frames, E] embeddings of words [(start, end, word)] in seconds
        (None: no text, zeros)."""
        if words is None:
            return np.zeros((n_frames, self.embedding_dim), dtype=np.float32)
        return embeddings.frame_embeddings(words, n_frames, self.step_ms / 1000.0, self.embedder)

    def model_inputs(self, samples, words=None):
        """(audio [N,S], embeddings [N,E]) of mono samples at self.sample_rate
        and words [(start, end, word)] in seconds (None: no text, zeros)."""
        n_frames = self.n_frames(samples)
        return (records.frame_audio(samples, self.frame_samples, n_frames),
                self.frame_vectors(words, n_frames))

    def zero_state(self):
        """The LSTM state a recording starts from: (c, h), each [1, H]."""
        units = int(self._inputs['state_c'].shape[-1])
        return tuple(np.zeros((1, units), dtype=np.float32) for _ in range(2))

    def run_chunk(self, audio_frames, embedding_frames, context=(0, 0), state=None):
        """(predictions [C,2], next state) of one chunk of a recording: audio
        [C + before + after, S] holding `context` = (before, after) frames
        around the chunk's C frames, embeddings [C, E], from `state` (None:
        the start of the recording)."""
        feed = {self._inputs['audio']: np.asarray(audio_frames, dtype=np.float32)[None],
                self._inputs['embeddings']: np.asarray(embedding_frames, dtype=np.float32)[None]}
        feed[self._inputs['context']] = np.asarray(context, dtype=np.int32)
        if state is not None:
            feed[self._inputs['state_c']], feed[self._inputs['state_h']] = state
        predictions, state_c, state_h = self._session.run(
            [self._outputs[name] for name in ('predictions', 'state_c', 'state_h')], feed)
        return predictions[0], (state_c, state_h)

    def predict(self, audio_frames, embedding_frames, chunk_frames=None):
        """[N,2] float32 (arousal, valence) for audio [N,S] and embeddings
        [N,E] of one recording, in chunks of `chunk_frames` (None: one pass)."""
        audio_frames = np.asarray(audio_frames, dtype=np.float32)
        embedding_frames = np.asarray(embedding_frames, dtype=np.float32)
        for name, array, width in (('audio', audio_frames, self.frame_samples),
                                   ('embeddings', embedding_frames, self.embedding_dim)):
            if array.ndim != 2 or array.shape[1] != width:
                raise ValueError('%s frames must be [N, %d], got %s' % (name, width, array.shape))
        if len(audio_frames) != len(embedding_frames):
            raise ValueError('%d audio frames but %d embedding frames'
                             % (len(audio_frames), len(embedding_frames)))
        return self._run(len(audio_frames), lambda first, stop: audio_frames[first:stop],
                         embedding_frames, chunk_frames)

    def timeline(self, samples, words=None, chunk_seconds=defaults.CHUNK_SECONDS,
                 cancelled=None):
        """(timestamps [N] int64 ms, predictions [N,2]) of one recording, in
        chunks of `chunk_seconds` (0: one pass); framed chunk by chunk, so
        that no copy of the whole recording is made. helper.Cancelled before
        the next chunk once `cancelled` (an Event) is set."""
        n_frames = self.n_frames(samples)
        timestamps = np.arange(n_frames, dtype=np.int64) * self.step_ms
        size = self.frame_samples

        def frames(first, stop):
            return records.frame_audio(samples[first * size:stop * size], size, stop - first)

        return timestamps, self._run(n_frames, frames, self.frame_vectors(words, n_frames),
                                     chunk_frames_for(chunk_seconds, self.step_ms), cancelled)

    def _run(self, n_frames, audio, embedding_frames, chunk_frames, cancelled=None):
        """Predictions of frames [0, n_frames) chunk by chunk; audio(first,
        stop) gives frames [first, stop) as [stop - first, S]."""
        if chunk_frames is None or chunk_frames >= n_frames:
            return self.run_chunk(audio(0, n_frames), embedding_frames)[0]
        predictions, state = [], None
        for first in range(0, n_frames, chunk_frames):
            if cancelled is not None and cancelled.is_set():
                raise helper.Cancelled('the model run stopped: the caller left')
            stop = min(first + chunk_frames, n_frames)
            # A frame of audio on either side, where the recording has one.
            before, after = min(first, 1), min(n_frames - stop, 1)
            part, state = self.run_chunk(audio(first - before, stop + after),
                                         embedding_frames[first:stop], (before, after), state)
            predictions.append(part)
        return np.concatenate(predictions)

    def close(self):
        self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


# --------------------------------------------------------------------------
# The options that choose the model and its text (predict.py, serve.py)
# --------------------------------------------------------------------------
def check_model_choice(*, checkpoint, saved_model, steps):
    """app.UsageError unless exactly one of a checkpoint directory and a
    SavedModel is given, and steps only with the checkpoint."""
    if bool(checkpoint) == bool(saved_model):
        raise app.UsageError('give exactly one of --checkpoint and --saved_model')
    if steps is not None and not checkpoint:
        raise app.UsageError('--steps goes with --checkpoint')


def check_recognition_language(*, recognise, language):
    """app.UsageError when words are to be recognised in a language the
    recogniser does not know."""
    if recognise and language not in recognition.LANGUAGES:
        raise app.UsageError('--recognise recognises English only (--language eng)')


def load_predictor(*, checkpoint=None, saved_model=None, steps=None, device=0, modality=None,
                   allow_modality_mismatch=False):
    """The Predictor of `checkpoint` (a train.py directory, at `steps`) or
    else of `saved_model` (an export_model.py export); see from_checkpoint
    and from_saved_model for the modality."""
    if checkpoint:
        return Predictor.from_checkpoint(checkpoint, steps, device, modality,
                                         allow_modality_mismatch)
    return Predictor.from_saved_model(saved_model, device, modality)


def unheard_input_warning(modality, has_words):
    """What to tell the user when the modality discards the text given, or
    leaves the model nothing at all to hear; None when all is well."""
    if modality == 'audio' and has_words:
        return 'modality audio: the model does not hear the words'
    if modality == 'text' and not has_words:
        return 'modality text without any text: the model hears nothing but zeros'
    return None


# --------------------------------------------------------------------------
# Text: word timings from an ASR, or aligned from a transcript
# --------------------------------------------------------------------------
def read_words(path):
    """[(start, end, word)] of an ASR word file (header start,end,word,
    seconds), normalised as the training text was (normalise_word_timings)."""
    return normalise_word_timings(helper.read_table(path, WORD_COLUMNS, line_numbers=True), path)


def normalise_word_timings(rows, name):
    """[(start, end, word)] of recognised words, normalised as the training
    text was: a token that is only a filler or punctuation is left out, one
    that holds several words (e-mail) shares its span among them by character
    length. `rows`: [(row number, (start, end, word))]; bad times or an
    empty word are an InputError naming `name` and the row."""
    words = []
    for row_number, (start, end, word) in rows:
        if not word:
            raise helper.InputError(name, row_number, 'empty word')
        if start < 0 or end < start:
            raise helper.InputError(name, row_number, 'word %r spans %s..%s s: times must be '
                                    'non-negative and end must not precede start'
                                    % (word, start, end))
        tokens = normalise_words(word)
        if not tokens:
            helper.development_msg('%s, row %d: %r is no word, left out', name, row_number, word)
        words += [(float(first), float(last), token) for token, (first, last)
                  in zip(tokens, alignment.spread_by_characters(tokens, start, end))]
    return words


def read_transcript(path, duration):
    """[(start, end, sentence)] of a sentence-level transcript (header
    start,end,sentence, seconds), checked against the audio's duration; and
    the row number of each sentence in the file."""
    numbered = helper.read_table(path, TRANSCRIPT_COLUMNS, line_numbers=True)
    for row, (start, end, text) in numbered:
        if start < 0 or end <= start:
            raise helper.InputError(path, row, 'start %.3f s and end %.3f s do not make a '
                                    'span (end must come after start, both >= 0)' % (start, end))
        if end > duration + END_TOLERANCE:
            raise helper.InputError(path, row, 'sentence ends at %.3f s, past the end of the '
                                    'audio (%.3f s)' % (end, duration))
        if not normalise_words(text):
            raise helper.InputError(path, row, 'sentence %r has no words once punctuation and '
                                    'fillers are removed' % text)
    return [sentence for _, sentence in numbered], [row for row, _ in numbered]


def check_alignable(samples, sample_rate, name):
    if len(samples) < MIN_ALIGN_SECONDS * sample_rate:
        raise helper.InputError(name, None, 'audio lasts %.3f s, too short to align a '
                                'transcript' % (len(samples) / sample_rate))


def align_transcript(transcript_path, audio_path, language):
    """[(start, end, word)] of a sentence-level transcript and the number of
    sentences aeneas could not align (their words are spread over the
    sentence), aligned at the aligner's sample rate."""
    samples = audio.read_file(audio_path, alignment.SAMPLE_RATE)
    check_alignable(samples, alignment.SAMPLE_RATE, audio_path)
    sentences, row_numbers = read_transcript(transcript_path,
                                             len(samples) / alignment.SAMPLE_RATE)
    try:
        rows, fallbacks = alignment.align_sentences(samples, alignment.SAMPLE_RATE, sentences,
                                                    language)
    except alignment.AlignmentError as error:
        raise helper.InputError(audio_path, None,
                                'cannot align the transcript: %s' % error) from None
    for index, reason in fallbacks:
        logging.warning('%s, row %d: sentence not aligned (%s); its words were spread over its '
                        'span by character length', transcript_path, row_numbers[index], reason)
    return [(start, end, word) for _, start, end, word in rows], len(fallbacks)


def align_plain_text(samples, text, language, name, align=None):
    """(words, fallbacks) of plain `text` spoken over 16-kHz `samples`
    (alignment.SAMPLE_RATE), by ser.alignment.align_text in this process or
    by `align(samples, text, language)` (an IsolatedAligner's align_text);
    a recording too short to align is an InputError naming `name`."""
    check_alignable(samples, alignment.SAMPLE_RATE, name)
    try:
        if align is None:
            return alignment.align_text(samples, alignment.SAMPLE_RATE, text, language)
        return align(samples, text, language)
    except alignment.AlignmentError as error:
        raise helper.InputError(name, None, 'cannot align the transcript: %s' % error) from None


def check_words_inside(words, duration, path):
    """Words past the end of the audio touch no frame: say so, since it
    usually means the times are not in seconds or belong to another file."""
    outside = sum(1 for start, _, _ in words if start >= duration)
    if outside:
        logging.warning('%s: %d of %d words start after the end of the audio (%.2f s) and are '
                        'ignored; are the times in seconds?', path, outside, len(words), duration)


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------
def timeline_rows(timestamps, predictions):
    """(timestamp ms, arousal, valence) rows as written: values to 6 decimals."""
    return [(int(t),) + tuple(round(float(v), 6) for v in values)
            for t, values in zip(timestamps, predictions)]


def write_timeline(path, timestamps, predictions):
    helper.write_csv(path, ('timestamp',) + paths.DIMENSIONS,
                     [(t,) + tuple('%.6f' % v for v in values)
                      for t, *values in timeline_rows(timestamps, predictions)])


def plot_timeline(path, timestamps, predictions, step_ms, words, title):
    """Both dimensions over time, each frame a step of step_ms; the words on
    top when there are few enough to read."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    edges = np.append(timestamps, timestamps[-1] + step_ms) / 1000.0
    figure = Figure(figsize=(min(24.0, max(8.0, len(timestamps) / 20.0)), 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for index, name in enumerate(paths.DIMENSIONS):
        axes.stairs(predictions[:, index], edges, baseline=None, label=name, linewidth=1.5)
    axes.set(xlabel='time (s)', ylabel='prediction', ylim=(-1.05, 1.05), title=title)
    axes.axhline(0.0, color='grey', linewidth=0.5)
    if words and len(words) <= MAX_PLOT_WORDS:
        for start, end, word in words:
            axes.axvspan(start, end, color='grey', alpha=0.08, linewidth=0)
            axes.text((start + end) / 2, 1.0, word, rotation=90, fontsize=7, ha='center',
                      va='top', color='dimgrey')
    axes.legend(loc='lower right')
    figure.tight_layout()
    with helper.atomic_output(path) as tmp_path:
        figure.savefig(tmp_path, format='png')
