"""One recording in, an arousal/valence timeline out.

    python predict.py --checkpoint checkpoints/ [--steps N] --audio call.wav \\
        [--text "plain transcript" | --transcript call.csv | --words asr.csv] \\
        --output call_emotion.csv [--plot call_emotion.png] [--json call_emotion.json] \\
        [--device -1]
    python predict.py --saved_model exported/ --audio call.wav ...

The model comes from a train.py directory (--checkpoint, with --steps, default
the latest) or from an export_model.py SavedModel (--saved_model: the export
base directory, whose highest version is used, or one version directory).
Sample rate, frame size, label step and word vectors are read from the
dataset.json kept with the model, so the recording is framed exactly as the
training data were.

The text, if any, comes in one of four ways:
  --text        plain text spoken over the whole recording, aligned word by
                word exactly as serve.py aligns a request's transcript (same
                input, same timeline): by the phonetic aligner for English,
                aeneas for other --language codes;
  --transcript  sentence-level `start,end,sentence` (seconds), each sentence
                aligned within its span by the same aligner;
  --words       word timings `start,end,word` (seconds) as a voicebot's ASR
                gives them, not realigned (words are normalised as the training
                text was: lower case, no punctuation, fillers dropped);
  --recognise   no text given: the words are recognised from the audio by
                PocketSphinx's en-us recogniser (English only; BENCHMARKS.md
                gives its word error rate and what it does to the CCC);
  none          acoustic only: every frame gets a zero embedding, as silence
                does in training (the log and the --json summary say so).

The model hears what it was trained to hear (its modality in model.json:
both, audio or text; the --json summary names it). --modality asks for
another one, which a checkpoint runs only with --allow_modality_mismatch and a
SavedModel never (its graph does the zeroing).

The output CSV has the header `timestamp,arousal,valence`, one row per label
step (250 ms) from 0 ms, covering the whole recording (the last partial frame
is zero-padded). The recording runs through the model in chunks of
--chunk_seconds (60), the LSTM state carried from chunk to chunk, so that an
hour of audio fits in bounded memory and gives the one-pass timeline.
For many utterances, load the model once: ser.inference.Predictor, or serve.py.
"""

import logging
import os

from absl import app, flags
import numpy as np

import helper
from ser import alignment, audio, inference, recognition
from ser import paths
from ser.text import normalise_words

# ---- Model flags ----
helper.define_flags('checkpoint', 'steps', 'saved_model')
helper.define_flags('modality', 'allow_modality_mismatch')

# ---- Inference flags ----
helper.define_flags('chunk_seconds')

# ---- Input flags ----
flags.DEFINE_string('audio', None, 'The recording: any format ffmpeg reads, any sample rate, '
                    'mono or stereo.')
flags.DEFINE_string('text', None, 'Plain transcript of the whole recording, aligned word by '
                    'word as serve.py does: PocketSphinx for English, aeneas for other '
                    'languages.')
flags.DEFINE_string('transcript', None,
                    'Sentence-level transcript, header start,end,sentence (seconds); its words '
                    'are aligned to the audio within each sentence\'s span, as --text is.')
flags.DEFINE_string('words', None,
                    'Word timings, header start,end,word (seconds), e.g. from an ASR; '
                    'used without alignment.')
helper.define_flags('recognise', 'language')

# ---- Output flags ----
helper.define_flags('output')
flags.DEFINE_string('plot', None, 'Optional PNG of the timeline.')
helper.define_flags('json', 'overwrite')

# ---- Device flags ----
helper.define_flags('device')

# ---- Logging flags ----
helper.define_flags('verbose')

FLAGS = flags.FLAGS


def check_flags():
    inference.check_model_choice(checkpoint=FLAGS.checkpoint, saved_model=FLAGS.saved_model,
                                 steps=FLAGS.steps)
    if sum(FLAGS[name].value is not None for name in ('text', 'transcript', 'words')) > 1:
        raise app.UsageError('give at most one of --text, --transcript and --words')
    if FLAGS.recognise and any(FLAGS[name].value is not None
                               for name in ('text', 'transcript', 'words')):
        raise app.UsageError('--recognise is for audio without text: not with --text, '
                             '--transcript or --words')
    inference.check_recognition_language(recognise=FLAGS.recognise, language=FLAGS.language)
    for name in ('audio', 'output'):
        if not FLAGS[name].value:
            raise app.UsageError('--%s is required' % name)


def read_text():
    """('text' | 'words' | 'transcript' | 'recognised' | 'none', word timings or None,
    fallback sentences or None). Runs before the model loads: bad text fails
    fast."""
    if FLAGS.text is not None and normalise_words(FLAGS.text):
        samples = audio.read_file(FLAGS.audio, alignment.SAMPLE_RATE)
        words, fallbacks = inference.align_plain_text(samples, FLAGS.text, FLAGS.language,
                                                      FLAGS.audio)
        if fallbacks:
            logging.warning('%s: neither aligner could align --text; its words were spread over '
                            'the recording by character length', FLAGS.audio)
        return 'text', words, fallbacks
    if FLAGS.words:
        return 'words', inference.read_words(FLAGS.words), None
    if FLAGS.transcript:
        return ('transcript',) + inference.align_transcript(FLAGS.transcript, FLAGS.audio,
                                                            FLAGS.language)
    if FLAGS.recognise:
        words = recognition.recognise_words(audio.read_file(FLAGS.audio, recognition.SAMPLE_RATE))
        shown = ' '.join(word for _, _, word in words[:20])
        logging.info('%s: %d word(s) recognised: %s%s', FLAGS.audio, len(words), shown,
                     ' ...' if len(words) > 20 else '')
        return 'recognised', words, None
    logging.warning('no text (--text, --transcript or --words): acoustic only, every frame gets '
                    'a zero embedding (as silence does in training)')
    return 'none', None, None


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
        'chunk_seconds': FLAGS.chunk_seconds,
        'mean': {name: float(np.mean(predictions[:, index]))
                 for index, name in enumerate(paths.DIMENSIONS)},
    }


def run():
    """Text, model, audio at the model's rate, prediction. Returns
    (timestamps, predictions, words, summary)."""
    text, words, fallbacks = read_text()
    with inference.load_predictor(checkpoint=FLAGS.checkpoint, saved_model=FLAGS.saved_model,
                                  steps=FLAGS.steps, device=FLAGS.device, modality=FLAGS.modality,
                                  allow_modality_mismatch=FLAGS.allow_modality_mismatch) \
            as predictor:
        logging.info('model: %s', predictor.description)
        warning = inference.unheard_input_warning(predictor.modality, words is not None)
        if warning:
            logging.warning('%s', warning)
        samples = audio.read_file(FLAGS.audio, predictor.sample_rate)
        if words:
            inference.check_words_inside(words, len(samples) / predictor.sample_rate,
                                         FLAGS.words or FLAGS.transcript or FLAGS.audio)
        timestamps, predictions = predictor.timeline(samples, words, FLAGS.chunk_seconds)
    helper.development_msg('%d frames of %d samples, %s words', len(timestamps),
                           predictor.frame_samples, 'no' if words is None else len(words))
    return timestamps, predictions, words, summary(predictor, samples, text, words, fallbacks,
                                                   predictions)


def main(argv):
    del argv
    check_flags()
    if os.path.exists(FLAGS.output) and not FLAGS.overwrite:
        logging.info('%s exists, skipped (--overwrite to redo it)', FLAGS.output)
        return 0
    timestamps, predictions, words, info = run()
    inference.write_timeline(FLAGS.output, timestamps, predictions)
    if FLAGS.plot:
        inference.plot_timeline(FLAGS.plot, timestamps, predictions, info['label_step_ms'], words,
                                os.path.basename(FLAGS.audio))
    if FLAGS.json:
        helper.write_json(FLAGS.json, info)
    logging.info('%s: %.2f s of audio, %d frames, text: %s; mean arousal %.3f, valence %.3f -> %s',
                 FLAGS.audio, info['duration_seconds'], info['frames'], info['text'],
                 info['mean']['arousal'], info['mean']['valence'], FLAGS.output)
    return 0


if __name__ == '__main__':
    helper.run(main)
