"""The service side: one recording in, an arousal/valence timeline out.

    python predict.py --checkpoint checkpoints/ [--steps N] --audio call.wav \\
        [--transcript call.csv | --words asr.csv] --output call_emotion.csv \\
        [--plot call_emotion.png] [--json call_emotion.json] [--device -1]
    python predict.py --saved_model exported/ --audio call.wav ...

The model comes from a train.py directory (--checkpoint, with --steps, default
the latest) or from an export_model.py SavedModel (--saved_model: the export
base directory, whose highest version is used, or one version directory).
Sample rate, frame size, label step and word vectors are read from the
dataset.json kept with the model, so the recording is framed exactly as the
training data were.

The text, if any, comes in one of three ways:
  --transcript  sentence-level `start,end,sentence` (seconds), aligned word by
                word with aeneas by the same code as synchronisation_map_generator.py;
  --words       word timings `start,end,word` (seconds) as a voicebot's ASR
                gives them, not realigned (words are normalised as the training
                text was: lower case, no punctuation, fillers dropped);
  neither       acoustic only: every frame gets a zero embedding, as silence
                does in training (the log and the --json summary say so).

The model hears what it was trained to hear (its modality in model.json:
both, audio or text; the --json summary names it): a model trained on audio
alone ignores the words, one trained on text alone the sound. --modality asks
for another one, which a checkpoint runs only with --allow_modality_mismatch
and a SavedModel never (its graph does the zeroing).

The output CSV has the header `timestamp,arousal,valence`, one row per
label step (250 ms) from 0 ms, covering the whole recording (the last partial
frame is zero-padded). The whole recording runs through the model as one
sequence, as eval.py does. For a voicebot, `Predictor` loads the model once
and predicts any number of utterances:

    predictor = predict.Predictor.from_saved_model('exported/', device=-1)
    samples = helper.read_audio(path, predictor.sample_rate)    # or the call's buffer
    timestamps, predictions = predictor.timeline(samples, asr_words)  # [N], [N, 2]
"""

import contextlib
import logging
import math
import os

from absl import app, flags
import numpy as np

import data_generator
import helper
import models
import synchronisation_map_generator as alignment

tf = helper.import_tensorflow()

# --------------------------------------------------------------------------
# Flags. Every flag allows override: the pipeline's scripts share flag names
# and this one imports two of them, which absl otherwise refuses.
# --------------------------------------------------------------------------
FLAGS = flags.FLAGS
flags.DEFINE_string('checkpoint', None,
                    'Training directory of train.py (model.ckpt-N, dataset.json, model.json). '
                    'Give exactly one of --checkpoint and --saved_model.', allow_override=True)
flags.DEFINE_integer('steps', None,
                     'With --checkpoint: use model.ckpt-<steps>; default the latest.',
                     lower_bound=0, allow_override=True)
flags.DEFINE_string('saved_model', None,
                    'SavedModel of export_model.py: the export directory (its highest version '
                    'is used) or one version directory.', allow_override=True)
flags.DEFINE_string('audio', None, 'The recording: any format ffmpeg reads, any sample rate, '
                    'mono or stereo.', allow_override=True)
flags.DEFINE_string('transcript', None,
                    'Sentence-level transcript, header start,end,sentence (seconds); its words '
                    'are aligned to the audio with aeneas.', allow_override=True)
flags.DEFINE_string('words', None,
                    'Word timings, header start,end,word (seconds), e.g. from an ASR; '
                    'used without alignment.', allow_override=True)
flags.DEFINE_string('output', None, 'CSV timeline to write: timestamp (ms),arousal,valence.',
                    allow_override=True)
flags.DEFINE_string('plot', None, 'Optional PNG of the timeline.', allow_override=True)
flags.DEFINE_string('json', None, 'Optional JSON summary of the run (text used, frames, means).',
                    allow_override=True)
# --language is synchronisation_map_generator.py's flag (same meaning, same
# check of the code), listed here as one of this script's own.
flags.declare_key_flag('language')
flags.DEFINE_enum('modality', None, list(models.MODALITIES),
                  'What the model hears: both, audio (zero embeddings) or text (zero audio '
                  'frames); default: the modality the model was trained with (model.json). A '
                  'SavedModel applies its own inside its graph and can run in no other.',
                  allow_override=True)
flags.DEFINE_bool('allow_modality_mismatch', False,
                  'With --checkpoint: run with a --modality other than the model\'s instead of '
                  'refusing.', allow_override=True)
flags.DEFINE_integer('device', 0, 'GPU id to run on; -1 for the CPU.', allow_override=True)
flags.DEFINE_bool('overwrite', False, 'Replace an existing --output (otherwise the run is '
                  'skipped).', allow_override=True)
flags.DEFINE_bool('verbose', False,
                  'Development messages (frames, word counts, tokens left out).',
                  allow_override=True)

WORD_COLUMNS = [('start', float), ('end', float), ('word', str)]
SIGNATURE_KEY = 'serving_default'
# export_model.py puts dataset.json, model.json and the word vectors here.
EXTRA_DIR = 'assets.extra'
EMBEDDINGS_DIR = 'embeddings'
# Word labels are drawn on the plot only while they stay readable.
MAX_PLOT_WORDS = 60


# --------------------------------------------------------------------------
# The model: load once, predict many recordings
# --------------------------------------------------------------------------
def read_dataset_info(path):
    """The dataset.json kept with a model, checked for what framing needs."""
    if not os.path.isfile(path):
        raise helper.InputError(path, None, 'file not found: the model directory must hold the '
                                'dataset.json the model was trained on')
    info = helper.read_json(path)
    for key in ('sample_rate', 'frame_samples', 'label_step_ms', 'embedding_dim'):
        if not isinstance(info.get(key), int) or info[key] <= 0:
            raise helper.InputError(path, None, 'missing positive integer field %r' % key)
    if info['frame_samples'] * 1000 != info['sample_rate'] * info['label_step_ms']:
        raise helper.InputError(path, None, 'frame_samples %d is not %d ms at %d Hz' % (
            info['frame_samples'], info['label_step_ms'], info['sample_rate']))
    return info


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


class Predictor:
    """A trained model in its own graph and session, with the framing of the
    data it was trained on. Build it once with from_checkpoint or
    from_saved_model; then `timeline(samples, words)` per recording or
    utterance, or `predict(audio_frames, embeddings)` on frames."""

    def __init__(self, session, audio, embeddings, predictions, dataset, embeddings_path,
                 description):
        self._session = session
        self._audio, self._embeddings, self._predictions = audio, embeddings, predictions
        self.dataset = dataset
        self.embeddings_path = embeddings_path
        self.description = description
        self._embedder = None

    @classmethod
    def from_checkpoint(cls, checkpoint_dir, steps=None, device=0, modality=None,
                        allow_modality_mismatch=False):
        """model.ckpt-<steps> (latest when None) of a train.py directory, in
        `modality` (None: the one it was trained with; another one only with
        allow_modality_mismatch)."""
        dataset = read_dataset_info(os.path.join(checkpoint_dir, models.DATASET_FILE))
        config = models.read_model_config(checkpoint_dir)
        modality = models.choose_modality(os.path.join(checkpoint_dir, models.MODEL_CONFIG_FILE),
                                          config['modality'], modality, allow_modality_mismatch)
        prefix, step = models.checkpoint_path(checkpoint_dir, steps)
        graph = tf.Graph()
        with graph.as_default(), tf.device(helper.configure_device(device)):
            audio, embeddings = models.inference_inputs(dataset['frame_samples'],
                                                        dataset['embedding_dim'])
            predictions = models.build_model(audio, embeddings, config['hidden_units'],
                                             is_training=False, modality=modality)
        session = tf.Session(graph=graph, config=helper.session_config(device))
        with graph.as_default(), closed_on_error(session):
            models.restore(session, prefix)
        return cls(session, audio, embeddings, predictions, dataset, dataset.get('embeddings'),
                   {'checkpoint': os.path.abspath(checkpoint_dir), 'step': step,
                    'modality': modality})

    @classmethod
    def from_saved_model(cls, export_dir, device=0, modality=None):
        """An export_model.py SavedModel, through its serving signature. Its
        graph applies the modality it was trained with (assets.extra/model.json);
        asking for another one is an error, since no input can undo the zeroing."""
        model_dir = saved_model_version_dir(export_dir)
        extra_dir = os.path.join(model_dir, EXTRA_DIR)
        dataset = read_dataset_info(os.path.join(extra_dir, models.DATASET_FILE))
        exported = models.read_model_config(extra_dir)['modality']
        if modality not in (None, exported):
            raise helper.InputError(os.path.join(extra_dir, models.MODEL_CONFIG_FILE), None,
                                    'this export hears modality %r, fixed in its graph; run '
                                    '--modality %s from the training checkpoint instead'
                                    % (exported, modality))
        helper.configure_device(device)
        graph = tf.Graph()
        session = tf.Session(graph=graph, config=helper.session_config(device))
        with closed_on_error(session):
            meta_graph = tf.saved_model.loader.load(
                session, [tf.saved_model.tag_constants.SERVING], model_dir)
            if SIGNATURE_KEY not in meta_graph.signature_def:
                raise helper.InputError(model_dir, None, 'no %r signature (found: %s)' % (
                    SIGNATURE_KEY, ', '.join(meta_graph.signature_def) or 'none'))
        signature = meta_graph.signature_def[SIGNATURE_KEY]

        def tensor(info):
            return graph.get_tensor_by_name(info.name)

        with graph.as_default():
            predictions = tf.stack([tensor(signature.outputs[name]) for name in helper.DIMENSIONS],
                                   axis=-1)
        # The word vectors travel with the export unless it was made without them.
        bundled = os.path.join(extra_dir, EMBEDDINGS_DIR)
        embeddings_path = dataset.get('embeddings')
        if embeddings_path and os.path.isdir(bundled):
            embeddings_path = os.path.join(bundled, os.path.basename(embeddings_path))
        version = os.path.basename(os.path.normpath(model_dir))
        return cls(session, tensor(signature.inputs['audio']),
                   tensor(signature.inputs['embeddings']), predictions, dataset, embeddings_path,
                   {'saved_model': os.path.abspath(model_dir),
                    'step': int(version) if version.isdigit() else None, 'modality': exported})

    @property
    def sample_rate(self):
        return self.dataset['sample_rate']

    @property
    def frame_samples(self):
        return self.dataset['frame_samples']

    @property
    def embedding_dim(self):
        return self.dataset['embedding_dim']

    @property
    def step_ms(self):
        return self.dataset['label_step_ms']

    @property
    def embedder(self):
        """The word vectors of the training data, loaded on first use (an
        acoustic-only service never needs them)."""
        if self._embedder is None:
            if not self.embeddings_path:
                raise helper.InputError(self.description.get('checkpoint')
                                        or self.description.get('saved_model'), None,
                                        'dataset.json names no word vectors: text cannot be used')
            self._embedder = data_generator.load_embedder(self.embeddings_path)
            if self._embedder.dim != self.embedding_dim:
                raise helper.InputError(self.embeddings_path, None,
                                        'vectors have %d values, the model expects %d'
                                        % (self._embedder.dim, self.embedding_dim))
        return self._embedder

    def n_frames(self, samples):
        """Frames covering every sample; the last one may be partial."""
        return max(1, math.ceil(len(samples) / self.frame_samples))

    def model_inputs(self, samples, words=None):
        """(audio [N,S], embeddings [N,E]) of mono samples at self.sample_rate
        and words [(start, end, word)] in seconds (None: no text, zeros)."""
        n_frames = self.n_frames(samples)
        audio = data_generator.frame_audio(samples, self.frame_samples, n_frames)
        if words is None:
            embeddings = np.zeros((n_frames, self.embedding_dim), dtype=np.float32)
        else:
            embeddings = data_generator.frame_embeddings(words, n_frames, self.step_ms / 1000.0,
                                                         self.embedder)
        return audio, embeddings

    def predict(self, audio_frames, embeddings):
        """[N,2] float32 (arousal, valence) for audio [N,S] and embeddings
        [N,E] of one recording, run as one sequence."""
        audio_frames = np.asarray(audio_frames, dtype=np.float32)
        embeddings = np.asarray(embeddings, dtype=np.float32)
        for name, array, width in (('audio', audio_frames, self.frame_samples),
                                   ('embeddings', embeddings, self.embedding_dim)):
            if array.ndim != 2 or array.shape[1] != width:
                raise ValueError('%s frames must be [N, %d], got %s' % (name, width, array.shape))
        if len(audio_frames) != len(embeddings):
            raise ValueError('%d audio frames but %d embedding frames'
                             % (len(audio_frames), len(embeddings)))
        return self._session.run(self._predictions, {self._audio: audio_frames[None],
                                                     self._embeddings: embeddings[None]})[0]

    def timeline(self, samples, words=None):
        """(timestamps [N] int64 ms, predictions [N,2]) of one recording."""
        audio, embeddings = self.model_inputs(samples, words)
        timestamps = np.arange(len(audio), dtype=np.int64) * self.step_ms
        return timestamps, self.predict(audio, embeddings)

    def close(self):
        self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


# --------------------------------------------------------------------------
# Text: word timings from an ASR, or aligned from a transcript
# --------------------------------------------------------------------------
def read_words(path):
    """[(start, end, word)] of an ASR word file (header start,end,word,
    seconds), normalised as the training text was: a token that is only a
    filler or punctuation is left out, one that holds several words (e-mail)
    shares its span among them by character length."""
    words = []
    for row_number, (start, end, word) in helper.read_table(path, WORD_COLUMNS, line_numbers=True):
        if not word:
            raise helper.InputError(path, row_number, 'empty word')
        if start < 0 or end < start:
            raise helper.InputError(path, row_number, 'word %r spans %s..%s s: times must be '
                                    'non-negative and end must not precede start'
                                    % (word, start, end))
        tokens = helper.normalise_words(word)
        if not tokens:
            helper.development_msg('%s, row %d: %r is no word, left out', path, row_number, word)
        words += [(float(first), float(last), token) for token, (first, last)
                  in zip(tokens, alignment.spread_by_characters(tokens, start, end))]
    return words


def align_transcript(transcript_path, audio_path, language):
    """[(start, end, word)] of a sentence-level transcript and the number of
    sentences aeneas could not align (their words are spread over the
    sentence): checked and aligned by step 1's own code, at its sample rate."""
    samples = helper.read_audio(audio_path, alignment.SAMPLE_RATE)
    if len(samples) < alignment.MIN_AUDIO_SECONDS * alignment.SAMPLE_RATE:
        raise helper.InputError(audio_path, None, 'audio lasts %.3f s, too short to align a '
                                'transcript' % (len(samples) / alignment.SAMPLE_RATE))
    sentences, row_numbers = alignment.read_transcript(transcript_path,
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
def write_timeline(path, timestamps, predictions):
    helper.write_csv(path, ('timestamp',) + helper.DIMENSIONS,
                     [(int(t),) + tuple('%.6f' % v for v in values)
                      for t, values in zip(timestamps, predictions)])


def plot_timeline(path, timestamps, predictions, step_ms, words, title):
    """Both dimensions over time, each frame a step of step_ms; the words on
    top when there are few enough to read."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    edges = np.append(timestamps, timestamps[-1] + step_ms) / 1000.0
    figure = Figure(figsize=(min(24.0, max(8.0, len(timestamps) / 20.0)), 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for index, name in enumerate(helper.DIMENSIONS):
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


def summary(predictor, samples, text, words, fallbacks, predictions):
    """What the run used and produced, for --json and the log."""
    return {
        'audio': os.path.abspath(FLAGS.audio),
        'output': os.path.abspath(FLAGS.output),
        'duration_seconds': len(samples) / predictor.sample_rate,
        'sample_rate': predictor.sample_rate,
        'frames': len(predictions),
        'label_step_ms': predictor.step_ms,
        'text': text,
        'words': None if words is None else len(words),
        'fallback_sentences': fallbacks,
        'model': predictor.description,
        'mean': {name: float(np.mean(predictions[:, index]))
                 for index, name in enumerate(helper.DIMENSIONS)},
    }


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------
def check_flags():
    if bool(FLAGS.checkpoint) == bool(FLAGS.saved_model):
        raise app.UsageError('give exactly one of --checkpoint and --saved_model')
    if FLAGS.transcript and FLAGS.words:
        raise app.UsageError('give at most one of --transcript and --words')
    if FLAGS.steps is not None and not FLAGS.checkpoint:
        raise app.UsageError('--steps goes with --checkpoint')
    for name in ('audio', 'output'):
        if not FLAGS[name].value:
            raise app.UsageError('--%s is required' % name)


def load_predictor():
    if FLAGS.checkpoint:
        return Predictor.from_checkpoint(FLAGS.checkpoint, FLAGS.steps, FLAGS.device,
                                         FLAGS.modality, FLAGS.allow_modality_mismatch)
    return Predictor.from_saved_model(FLAGS.saved_model, FLAGS.device, FLAGS.modality)


def read_text():
    """('words' | 'transcript' | 'none', word timings or None, fallback
    sentences or None). Runs before the model loads: a bad file fails fast."""
    if FLAGS.words:
        return 'words', read_words(FLAGS.words), None
    if FLAGS.transcript:
        return ('transcript',) + align_transcript(FLAGS.transcript, FLAGS.audio, FLAGS.language)
    logging.warning('no --transcript or --words: acoustic only, every frame gets a zero '
                    'embedding (as silence does in training)')
    return 'none', None, None


def warn_unheard_input(modality, words):
    """Say so when the modality discards what the user gave, or leaves the
    model nothing at all to hear."""
    if modality == 'audio' and words is not None:
        logging.warning('modality audio: the model does not hear the words')
    elif modality == 'text' and words is None:
        logging.warning('modality text without --transcript or --words: the model hears '
                        'nothing but zeros')


def run():
    """Text, model, audio at the model's rate, prediction. Returns
    (timestamps, predictions, words, summary)."""
    text, words, fallbacks = read_text()
    with load_predictor() as predictor:
        logging.info('model: %s', predictor.description)
        warn_unheard_input(predictor.description['modality'], words)
        samples = helper.read_audio(FLAGS.audio, predictor.sample_rate)
        if words:
            check_words_inside(words, len(samples) / predictor.sample_rate,
                               FLAGS.words or FLAGS.transcript)
        timestamps, predictions = predictor.timeline(samples, words)
    helper.development_msg('%d frames of %d samples, %s words', len(timestamps),
                           predictor.frame_samples, 'no' if words is None else len(words))
    return timestamps, predictions, words, summary(predictor, samples, text, words, fallbacks,
                                                   predictions)


def main(argv):
    del argv
    check_flags()
    helper.setup_logging(FLAGS.verbose)
    if os.path.exists(FLAGS.output) and not FLAGS.overwrite:
        logging.info('%s exists, skipped (--overwrite to redo it)', FLAGS.output)
        return 0
    try:
        timestamps, predictions, words, info = run()
    except helper.InputError as error:
        logging.error('%s', error)
        return 1
    write_timeline(FLAGS.output, timestamps, predictions)
    if FLAGS.plot:
        plot_timeline(FLAGS.plot, timestamps, predictions, info['label_step_ms'], words,
                      os.path.basename(FLAGS.audio))
    if FLAGS.json:
        helper.write_json(FLAGS.json, info)
    logging.info('%s: %.2f s of audio, %d frames, text: %s; mean arousal %.3f, valence %.3f -> %s',
                 FLAGS.audio, info['duration_seconds'], info['frames'], info['text'],
                 info['mean']['arousal'], info['mean']['valence'], FLAGS.output)
    return 0


if __name__ == '__main__':
    app.run(main)
