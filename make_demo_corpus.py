"""Write a small synthetic corpus in the MuSe-CaR input layout (DESIGN.md), with
real speech from espeak, so the whole pipeline can run, be tested and be
benchmarked without the licensed data.

Every recording is one "car review": sentences built from templates with car
parts and opinion words, spoken word by word by one espeak voice, with pauses
between sentences and now and then between words. Because the generator places
every word itself it knows when each word is spoken, and writes that truth
beside the corpus for the tests of forced alignment.

The labels are built so that both sides of the paper's model matter:
  * arousal is HOW it is said: a sentence's arousal level sets espeak's speed,
    pitch and, most strongly, amplitude;
  * valence is WHAT is said: a sentence's valence level is the balance of
    positive and negative opinion words it contains, drawn independently of
    arousal, and the prosody never depends on it.
Annotation traces follow what has been heard: arousal jumps to the sentence's
level with its first word, valence moves with each opinion word to the balance
of the opinions so far. They drift toward the next sentence in pauses, are
low-pass filtered (an annotator's lag) and carry a little noise.

Layout written (Ids are "1", "2", ... "N", not zero-padded, like MuSe-CaR's
plain numeric ids; so sorted as strings "10" comes before "2"):
  <output_dir>/metadata/partition.csv            Id,Proposal (train/devel/test)
  <output_dir>/audio/<Id>.wav                    48 kHz stereo, 16 kHz or 22.05 kHz mono
  <output_dir>/transcriptions/<Id>.csv           start,end,sentence (seconds)
  <output_dir>/label_segments/{arousal,valence}/<Id>.csv
                                                 timestamp,value,segment_id (ms, every 250 ms;
                                                 adjacent segments repeat their boundary row);
                                                 none for the test recordings (withheld)
  <output_dir>/.demo_corpus.json                 hidden marker: settings and summary
  plus Mac litter (.DS_Store, ._<name>) in a few folders, which the pipeline must ignore.
  <truth_dir>/word_timings/<Id>.csv              start,end,word (seconds, normalised words)
  <truth_dir>/sentences/<Id>.csv                 spoken span, levels and prosody per sentence
  <truth_dir>/recordings.csv                     voice, format and size per recording
  <truth_dir>/withheld_labels/{arousal,valence}/<Id>.csv   the test recordings' labels
  <truth_dir>/.demo_corpus.json                  hidden marker

Partition: half the recordings train, about one in eight test (audio and
transcript, no labels), the rest devel (16 -> 8 / 6 / 2), given to the ids at
random by the seed. Each recording has its own voice (16 espeak voices) and one
of three audio formats in turn.

Label rows cover every 250-ms frame lying wholly inside the audio: timestamps
0, 250, ... up to the last t with t + 250 <= duration. The value of row t is the
annotation trace at the frame's centre, t + 125 ms.

The corpus is built in hidden staging folders beside the targets and swapped in
when complete, so an interrupted run leaves the previous corpus (or nothing). A
rerun with the same settings finds the markers and skips, unless --overwrite.
Same seed, same bytes (WAV included), whatever the number of workers.

Usage:
  .venv/bin/python make_demo_corpus.py --output_dir demo/MuSe-CaR --truth_dir demo/truth
"""

import functools
import logging
import math
import os
import re
import shutil
import subprocess
import time
import wave

import numpy as np
from absl import app, flags

import helper

# --------------------------------------------------------------------------
# Flags
# --------------------------------------------------------------------------
FLAGS = flags.FLAGS
# allow_override: tests import this module beside the other scripts, which
# share flag names (--output_dir, --seed, ...); absl otherwise refuses.
DEFINE = dict(allow_override=True)
flags.DEFINE_string('output_dir', 'demo/MuSe-CaR',
                    'Corpus folder to write, in the MuSe-CaR input layout of DESIGN.md.', **DEFINE)
flags.DEFINE_string('truth_dir', 'demo/truth',
                    'Folder for what only the generator knows: true word timings, '
                    'sentence levels, withheld test labels.', **DEFINE)
flags.DEFINE_integer('videos', 16, 'Number of recordings.', lower_bound=1, **DEFINE)
flags.DEFINE_float('seconds_per_video', 60.0, 'Length of every recording in seconds.',
                   lower_bound=5.0, **DEFINE)
flags.DEFINE_integer('seed', 0, 'Seed of every random choice; same seed, same bytes.',
                     lower_bound=0, **DEFINE)
flags.DEFINE_integer('workers', helper.default_workers(),
                     'Recordings synthesised in parallel (default: all cores).', lower_bound=1, **DEFINE)
flags.DEFINE_boolean('overwrite', False,
                     'Regenerate even if a complete corpus with the same settings exists.', **DEFINE)
flags.DEFINE_boolean('verbose', False, 'Show development messages.', **DEFINE)

# --------------------------------------------------------------------------
# Vocabulary. Opinion words carry valence; everything else is neutral.
# Kept moderate so words met in train recur in devel and test.
# --------------------------------------------------------------------------
POSITIVE_WORDS = (
    'excellent', 'great', 'smooth', 'comfortable', 'brilliant', 'superb', 'responsive',
    'elegant', 'solid', 'spacious', 'refined', 'impressive', 'lovely', 'fantastic',
    'wonderful', 'reliable', 'precise', 'stylish')
NEGATIVE_WORDS = (
    'terrible', 'awful', 'noisy', 'cheap', 'harsh', 'sluggish', 'cramped', 'clunky',
    'flimsy', 'disappointing', 'ugly', 'annoying', 'poor', 'weak', 'horrible',
    'uncomfortable', 'boring', 'dull')
_POSITIVE, _NEGATIVE = frozenset(POSITIVE_WORDS), frozenset(NEGATIVE_WORDS)
CAR_PARTS = (
    'engine', 'gearbox', 'steering', 'suspension', 'interior', 'dashboard', 'touchscreen',
    'infotainment system', "driver's seat", 'boot', 'headlight design', 'braking', 'cabin',
    'sound system', 'ride', 'handling', 'acceleration', 'transmission', 'paintwork',
    'wheel design', 'clutch', 'cockpit', 'display', 'navigation', 'climate control',
    'sunroof', 'rear bench', 'steering wheel', 'gear lever', 'exhaust note', 'chassis',
    'headroom', 'legroom', 'trim', 'instrument cluster', 'parking camera')
BRANDS = ('Audi', 'BMW', 'Mercedes', 'Porsche', 'Tesla', 'Volkswagen', 'Volvo', 'Skoda',
          'Jaguar', 'Toyota')
# {o}: an opinion word, {p}: a car part, {b}: a brand. Three to five opinions
# per sentence, so most spoken frames are close to a polar word.
TEMPLATES = (
    'The {p} is {o}, {o} and really {o}.',
    'Honestly, the {p} feels {o} and {o}, and the {p} looks {o}.',
    'I think this {p} is {o}, {o} and {o}.',
    'What a {o} {p}, so {o} and {o}!',
    'The {p} on this {b} is {o}, the {p} is {o} and the {p} feels {o}.',
    'You get a {o} {p}, a {o} {p} and a {o} {p}.',
    'Driving it, the {p} feels {o}, {o}, {o} and {o}.',
    'Overall the {b} is {o} and {o}, with a {o} {p}.',
    'So the {p} here is {o}, really {o}, and the {p} is just {o}.',
    "Isn't the {p} {o}, {o} and {o}?",
    'My first impression of the {p} is {o}, {o} and {o}.',
    "Let's talk about the {p}, which is {o}, {o} and very {o}.",
    'In the city the {p} is {o}, and on the motorway it is {o} and {o}.',
    'For the money, this {b} gives you a {o} {p} and a {o}, {o} {p}.',
    'The {p} is {o} and {o}, the {p} is {o} and {o}.',
    'I have to say the {b} is {o}, {o}, {o} and {o}!',
)
FILLER = '<filler>'
# "a useless", not "an useless": words spelt with a vowel but said with a consonant.
_CONSONANT_SOUNDING = ('useless', 'useful', 'unique', 'european')

# --------------------------------------------------------------------------
# Voices, formats, prosody and timing.
# --------------------------------------------------------------------------
VOICES = ('en+m1', 'en+m2', 'en+m3', 'en+m4', 'en+m5', 'en+m6', 'en+m7', 'en+f1', 'en+f2',
          'en+f3', 'en+f4', 'en-us', 'en-us+f2', 'en-us+m3', 'en-sc', 'en-uk-north')
# (sample rate, channels): MuSe-CaR mixes YouTube audio of several formats.
AUDIO_FORMATS = ((48000, 2), (16000, 1), (22050, 1))
ESPEAK_RATE = 22050          # espeak's native rate; recordings are composed at it
SPEECH_GAIN = 0.6            # keeps amplitude 200 plus noise clear of clipping
AROUSAL_LEVELS = np.round(np.arange(-9, 10) / 10.0, 1)   # few levels, so syntheses repeat
SPEED_RANGE = (120, 270)     # espeak words per minute, calm -> excited
PITCH_RANGE = (20, 85)       # espeak pitch 0..99
AMPLITUDE_RANGE = (30, 200)  # espeak amplitude 0..200, nearly linear in RMS
VALENCE_SCALE = 0.9          # valence of a sentence whose opinions all agree
# Reviewers mostly praise or criticise a feature outright; the other sentences
# mix opinions in any proportion.
ONE_SIDED_PROBABILITY = 0.6
LEAD_SILENCE = (0.3, 1.0)    # seconds before the first sentence
MIN_TAIL_SILENCE = 0.3       # seconds after the last sentence, at least
SENTENCE_PAUSE = (0.4, 2.0)
WORD_GAP = (0.01, 0.05)      # at espeak's default speed; shorter when faster
WORD_PAUSE = (0.15, 0.6)     # an occasional hesitation between words
WORD_PAUSE_PROBABILITY = 0.12
FILLER_PAUSE = (0.2, 0.5)    # silence where the transcript marks a filler
FILLER_PROBABILITY = 0.25
TRANSCRIPT_MARGIN = (0.05, 0.3)
SENTENCE_ATTEMPTS = 5        # sentences tried before a recording is considered full
TRACE_STEP = 0.01            # seconds; resolution of the annotation trace
ANNOTATOR_LAG = 0.3          # seconds; time constant of the trace's low-pass
ANNOTATOR_NOISE = 0.04       # std of the slow annotation noise
RELAX_TIME = 1.5             # seconds; how fast the trace returns to 0 after the speech
SEGMENT_SECONDS = 15.0       # typical length of a label segment
NOISE_RMS = (0.0015, 0.004)  # background noise, per recording
RUMBLE_HZ = 150.0            # cut-off of the cabin rumble part of the noise
CORPUS_VERSION = 3
MARKER = '.demo_corpus.json'
# Bytes a Mac leaves behind: a .DS_Store header and an AppleDouble header.
_DS_STORE = b'\x00\x00\x00\x01Bud1' + bytes(24)
_APPLE_DOUBLE = (b'\x00\x05\x16\x07\x00\x02\x00\x00' + b'Mac OS X        '
                 + b'\x00\x01\x00\x00\x00\x09\x00\x00\x00\x32\x00\x00\x0e\xb0' + bytes(16))


# --------------------------------------------------------------------------
# Speech synthesis: one word at a time, trimmed, cached.
# --------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def synthesise_word(word, voice, speed, pitch, amplitude):
    """Samples (float32, ESPEAK_RATE, read-only) of one word with its leading
    and trailing silence removed. Same arguments, same audio."""
    command = ['espeak', '-v', voice, '-s', str(speed), '-p', str(pitch),
               '-a', str(amplitude), '-z', '--stdout', word]
    try:
        result = subprocess.run(command, capture_output=True, check=True)
    except FileNotFoundError:
        raise RuntimeError('espeak is not installed (Debian package espeak; make setup)') from None
    except subprocess.CalledProcessError as error:
        raise RuntimeError('espeak failed on %r: %s'
                           % (word, error.stderr.decode(errors='replace'))) from None
    samples = _wav_stream_samples(result.stdout)
    samples = trim_silence(samples)
    if samples.size == 0:
        raise RuntimeError('espeak produced no sound for %r with voice %s' % (word, voice))
    samples.setflags(write=False)
    return samples


def _wav_stream_samples(data):
    """16-bit mono samples of espeak's --stdout WAV, whose header sizes are
    placeholders for a stream: the samples are everything after 'data'."""
    start = data.find(b'data')
    if data[:4] != b'RIFF' or start < 0:
        raise RuntimeError('espeak did not write a WAV stream')
    payload = data[start + 8:]
    payload = payload[:len(payload) // 2 * 2]
    return np.frombuffer(payload, dtype='<i2').astype(np.float32) / 32768.0


def trim_silence(samples, threshold=0.02, keep_seconds=0.002, fade_seconds=0.003):
    """Cut what is quieter than `threshold` x peak at both ends, keeping a hair
    of context, with short fades so concatenated words do not click."""
    loud = np.flatnonzero(np.abs(samples) > threshold * np.abs(samples).max(initial=0.0))
    if loud.size == 0:
        return samples[:0].copy()
    keep = int(keep_seconds * ESPEAK_RATE)
    trimmed = samples[max(0, loud[0] - keep):loud[-1] + 1 + keep].copy()
    fade = min(int(fade_seconds * ESPEAK_RATE), trimmed.size // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)
        trimmed[:fade] *= ramp
        trimmed[-fade:] *= ramp[::-1]
    return trimmed


def prosody(arousal):
    """espeak (speed, pitch, amplitude) of an arousal level in [-1, 1]: the
    calmer, the slower, lower and quieter. Valence has no say here."""
    position = (arousal + 1.0) / 2.0

    def scale(low_high):
        low, high = low_high
        return int(round(low + position * (high - low)))
    return scale(SPEED_RANGE), scale(PITCH_RANGE), scale(AMPLITUDE_RANGE)


# --------------------------------------------------------------------------
# Sentences: template filled with parts and opinion words.
# --------------------------------------------------------------------------
def draw_sentence(rng):
    """A transcript sentence as display tokens (natural casing, punctuation,
    maybe a filler) with its valence and arousal levels, drawn independently."""
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    opinions = template.count('{o}')
    if rng.uniform() < ONE_SIDED_PROBABILITY:
        positives = opinions if rng.uniform() < 0.5 else 0
    else:
        positives = int(rng.integers(0, opinions + 1))
    polarity = rng.permutation([True] * positives + [False] * (opinions - positives))
    positive_words = iter(rng.choice(POSITIVE_WORDS, size=positives, replace=False))
    negative_words = iter(rng.choice(NEGATIVE_WORDS, size=opinions - positives, replace=False))
    parts = iter(rng.choice(CAR_PARTS, size=template.count('{p}'), replace=False))
    brand = BRANDS[rng.integers(len(BRANDS))]
    polarity_iter = iter(polarity)

    def fill(match):
        slot = match.group(1)
        if slot == 'o':
            return str(next(positive_words) if next(polarity_iter) else next(negative_words))
        return str(next(parts)) if slot == 'p' else brand
    tokens = _fix_articles(re.sub(r'\{([opb])\}', fill, template).split())
    if rng.uniform() < FILLER_PROBABILITY:
        tokens.insert(int(rng.integers(1, len(tokens))), FILLER)
    valence = VALENCE_SCALE * (2 * positives - opinions) / opinions
    valence = float(np.clip(valence + rng.uniform(-0.05, 0.05), -1.0, 1.0))
    arousal = float(AROUSAL_LEVELS[rng.integers(len(AROUSAL_LEVELS))])
    return {'tokens': tokens, 'valence': valence, 'arousal': arousal,
            'positive': positives, 'negative': opinions - positives}


def _fix_articles(tokens):
    fixed = list(tokens)
    for i in range(len(fixed) - 1):
        following = fixed[i + 1].lower()
        if fixed[i].lower() == 'a' and following[0] in 'aeiou' \
                and not following.startswith(_CONSONANT_SOUNDING):
            fixed[i] += 'n'
    return fixed


# --------------------------------------------------------------------------
# One recording: words placed on a timeline, labels traced, files written.
# --------------------------------------------------------------------------
def compose_recording(seed, index, seconds, voice):
    """Speech samples at ESPEAK_RATE (exactly `seconds` long) and the sentences
    placed in it, each with its words' true (start, end, word) in seconds."""
    rng = np.random.default_rng([seed, index, 1])
    total = int(round(seconds * ESPEAK_RATE))
    signal = np.zeros(total, dtype=np.float32)
    cursor = rng.uniform(*LEAD_SILENCE)
    sentences, failures = [], 0
    while failures < SENTENCE_ATTEMPTS:
        sentence = draw_sentence(rng)
        speed, pitch, amplitude = prosody(sentence['arousal'])
        placed = _place_words(rng, sentence['tokens'], voice, (speed, pitch, amplitude), cursor)
        if placed[-1][1] + MIN_TAIL_SILENCE > seconds:
            failures += 1
            continue
        for start, _, _, samples in placed:
            offset = int(round(start * ESPEAK_RATE))
            signal[offset:offset + samples.size] += samples
        sentence.update(speed=speed, pitch=pitch, amplitude=amplitude,
                        words=[(start, end, word) for start, end, word, _ in placed])
        sentences.append(sentence)
        cursor = placed[-1][1] + rng.uniform(*SENTENCE_PAUSE)
    if not sentences:
        raise ValueError('%g s is too short for a sentence; use longer recordings' % seconds)
    return signal * SPEECH_GAIN, sentences


def _place_words(rng, tokens, voice, prosody_values, cursor):
    """[(start, end, word, samples)] of the spoken words of `tokens` from
    `cursor` on; a filler is silence, not a word."""
    speed = prosody_values[0]
    placed, gap = [], 0.0
    for token in tokens:
        if token == FILLER:
            gap = rng.uniform(*FILLER_PAUSE)
            continue
        for word in helper.normalise_words(token):
            if placed:
                cursor += gap
            samples = synthesise_word(word, voice, *prosody_values)
            # Word ends are whole samples, so placed words never overlap.
            start = round(cursor * ESPEAK_RATE) / ESPEAK_RATE
            end = start + samples.size / ESPEAK_RATE
            placed.append((start, end, word, samples))
            cursor = end
            gap = (rng.uniform(*WORD_PAUSE) if rng.uniform() < WORD_PAUSE_PROBABILITY
                   else rng.uniform(*WORD_GAP) * 175.0 / speed)
    return placed


def transcript_rows(rng, sentences, seconds):
    """(start, end, sentence) with a human transcriber's margins around the
    spoken words, never reaching into the neighbours' margins."""
    rows = []
    for i, sentence in enumerate(sentences):
        first, last = sentence['words'][0][0], sentence['words'][-1][1]
        before = first if i == 0 else first - sentences[i - 1]['words'][-1][1]
        after = (seconds - last if i == len(sentences) - 1
                 else sentences[i + 1]['words'][0][0] - last)
        start = first - min(rng.uniform(*TRANSCRIPT_MARGIN), 0.45 * before)
        end = last + min(rng.uniform(*TRANSCRIPT_MARGIN), 0.45 * after)
        rows.append((start, end, ' '.join(sentence['tokens'])))
    return rows


def annotation_trace(rng, sentences, seconds, dimension):
    """An annotator's trace of `dimension` on a TRACE_STEP grid: it holds the
    level of what has been heard so far (sentence_anchors), eases through the
    pauses toward the next sentence, relaxes to 0 after the speech, and is
    low-passed (lag) plus slow noise, within [-1, 1]."""
    times = np.arange(int(math.ceil(seconds / TRACE_STEP)) + 1) * TRACE_STEP
    target = np.zeros(times.size)
    previous_time, previous_level = 0.0, 0.0
    for sentence in sentences:
        anchors = sentence_anchors(sentence, dimension)
        # Ease from the last level heard to the sentence's first level.
        first_time, first_level = anchors[0]
        inside = (times >= previous_time) & (times < first_time)
        fraction = (times[inside] - previous_time) / max(first_time - previous_time, 1e-9)
        target[inside] = previous_level + (first_level - previous_level) * (
            1.0 - np.cos(np.pi * fraction)) / 2.0
        # Within the sentence each level holds until the next one is heard.
        for (time, level), (next_time, _) in zip(anchors, anchors[1:] + [(np.inf, None)]):
            target[(times >= time) & (times < next_time)] = level
        previous_time, previous_level = sentence['words'][-1][1], anchors[-1][1]
    after = times >= previous_time
    target[after] = previous_level * np.exp(-(times[after] - previous_time) / RELAX_TIME)
    noise = _low_pass(rng.normal(size=times.size), 1.0)
    noise *= ANNOTATOR_NOISE / max(float(noise.std()), 1e-9)
    return times, np.clip(_low_pass(target, ANNOTATOR_LAG) + noise, -1.0, 1.0)


def sentence_anchors(sentence, dimension):
    """[(time, level)] an annotator follows through a sentence. Arousal is heard
    at once, in the voice: the sentence's level from its first word. Valence is
    heard in the opinions: after each opinion word the balance of the opinions
    so far, so that a listener (and a model that runs forward in time) can know
    it; the last one is the sentence's level."""
    words = sentence['words']
    if dimension == 'arousal':
        return [(words[0][0], sentence['arousal'])]
    opinions = [(end, 1.0 if word in _POSITIVE else -1.0) for _, end, word in words
                if word in _POSITIVE or word in _NEGATIVE]
    balance = np.cumsum([polarity for _, polarity in opinions]) / np.arange(1, len(opinions) + 1)
    # The sentence's small random offset (draw_sentence) applies to every level.
    offset = sentence['valence'] - VALENCE_SCALE * balance[-1]
    return [(end, float(np.clip(VALENCE_SCALE * b + offset, -1.0, 1.0)))
            for (end, _), b in zip(opinions, balance)]


def _low_pass(values, time_constant):
    """One-pole low-pass on the TRACE_STEP grid, started at the first value."""
    from scipy.signal import lfilter
    alpha = TRACE_STEP / (time_constant + TRACE_STEP)
    return lfilter([alpha], [1.0, alpha - 1.0], values, zi=[(1.0 - alpha) * values[0]])[0]


def label_count(seconds):
    """Label rows of a recording: one per 250-ms frame lying wholly inside it."""
    return int(round(seconds * 1000)) // helper.LABEL_STEP_MS


def label_rows(times, trace, bounds):
    """(timestamp ms, value, segment_id) for every frame inside the audio, the
    value read at the frame's centre; like MuSe, the last row of a segment is
    repeated as the first row of the next."""
    step = helper.LABEL_STEP_MS
    timestamps = np.arange(bounds[-1] + 1) * step
    values = np.interp((timestamps + step / 2.0) / 1000.0, times, trace)
    values = [_tidy(v) for v in values]
    rows = []
    for segment_id, (first, last) in enumerate(zip(bounds[:-1], bounds[1:]), start=1):
        rows += [(int(timestamps[i]), values[i], segment_id) for i in range(first, last + 1)]
    return rows


def segment_bounds(rng, n_rows, seconds):
    """Row indices where segments start and end; neighbours share the index.
    At least two segments when there are enough rows, so boundaries exist."""
    count = max(2, int(round(seconds / SEGMENT_SECONDS))) if n_rows >= 6 else 1
    even = np.linspace(0, n_rows - 1, count + 1)
    jitter = rng.uniform(-0.25, 0.25, size=count + 1) * (n_rows - 1) / count
    inner = np.round(even[1:-1] + jitter[1:-1]).astype(int)
    return [0] + sorted(set(np.clip(inner, 2, n_rows - 3).tolist())) + [n_rows - 1]


def _tidy(value):
    value = round(float(value), 4)
    return 0.0 if value == 0 else value


def render_audio(rng, speech, rate, channels):
    """The stored recording: speech resampled to `rate`, low background noise
    (a little cabin rumble plus hiss), int16, one column per channel."""
    import soxr
    from scipy.signal import lfilter
    length = int(round(speech.size / ESPEAK_RATE * rate))
    if rate != ESPEAK_RATE:
        speech = soxr.resample(speech, ESPEAK_RATE, rate)
    speech = np.pad(speech, (0, max(0, length - speech.size)))[:length]
    noise_rms = rng.uniform(*NOISE_RMS)
    pole = math.exp(-2.0 * math.pi * RUMBLE_HZ / rate)
    columns = []
    for _ in range(channels):
        hiss = rng.normal(size=length)
        rumble = lfilter([1.0 - pole], [1.0, -pole], rng.normal(size=length))
        noise = hiss / hiss.std() + rumble / max(rumble.std(), 1e-9)
        columns.append(speech + noise * noise_rms / math.sqrt(2.0))
    mixed = np.clip(np.stack(columns, axis=1), -1.0, 1.0)
    return np.round(mixed * 32767.0).astype('<i2')


def write_wav(path, samples, rate):
    """16-bit PCM WAV, atomically; the header holds no date, so same samples,
    same bytes."""
    with helper.atomic_output(path) as tmp_path:
        with wave.open(tmp_path, 'wb') as handle:
            handle.setnchannels(samples.shape[1])
            handle.setsampwidth(2)
            handle.setframerate(rate)
            handle.writeframes(samples.tobytes())


def make_recording(job):
    """Synthesise one recording and write its files into the staging folders.
    Depends only on the job, so order and worker count cannot change a byte."""
    recording_id, seconds = job['id'], job['seconds']
    speech, sentences = compose_recording(job['seed'], job['index'], seconds, job['voice'])
    rng = np.random.default_rng([job['seed'], job['index'], 2])
    helper.write_csv(helper.transcript_path(job['corpus_dir'], recording_id),
                     ('start', 'end', 'sentence'),
                     [('%.3f' % start, '%.3f' % end, text)
                      for start, end, text in transcript_rows(rng, sentences, seconds)])
    write_labels(rng, job, sentences)
    rate, channels = job['format']
    write_wav(os.path.join(job['corpus_dir'], 'audio', recording_id + '.wav'),
              render_audio(rng, speech, rate, channels), rate)
    words = write_truth(job, sentences)
    helper.development_msg('recording %s: %s, %d Hz x %d, %d sentences, %d words', recording_id,
                           job['voice'], rate, channels, len(sentences), words)
    return {'id': recording_id, 'voice': job['voice'], 'sample_rate': rate, 'channels': channels,
            'seconds': seconds, 'sentences': len(sentences), 'words': words}


def write_labels(rng, job, sentences):
    """Both dimensions' label segments; a test recording's go to the truth
    folder instead, as MuSe withholds them."""
    seconds = job['seconds']
    # Segments are stretches of the video, the same for both dimensions.
    bounds = segment_bounds(rng, label_count(seconds), seconds)
    for dimension in helper.DIMENSIONS:
        times, trace = annotation_trace(rng, sentences, seconds, dimension)
        if job['labelled']:
            path = helper.label_segment_path(job['corpus_dir'], dimension, job['id'])
        else:
            path = os.path.join(job['truth_dir'], 'withheld_labels', dimension, job['id'] + '.csv')
        helper.write_csv(path, ('timestamp', 'value', 'segment_id'),
                         [(t, '%.4f' % v, k) for t, v, k in label_rows(times, trace, bounds)])


def write_truth(job, sentences):
    """True word timings and the sentences' levels and prosody; returns the
    number of words."""
    words = [word for sentence in sentences for word in sentence['words']]
    helper.write_csv(os.path.join(job['truth_dir'], 'word_timings', job['id'] + '.csv'),
                     ('start', 'end', 'word'),
                     [('%.4f' % start, '%.4f' % end, word) for start, end, word in words])
    helper.write_csv(os.path.join(job['truth_dir'], 'sentences', job['id'] + '.csv'),
                     ('start', 'end', 'arousal', 'valence', 'speed', 'pitch', 'amplitude',
                      'positive', 'negative'),
                     [('%.4f' % s['words'][0][0], '%.4f' % s['words'][-1][1],
                       '%.1f' % s['arousal'], '%.4f' % s['valence'], s['speed'], s['pitch'],
                       s['amplitude'], s['positive'], s['negative']) for s in sentences])
    return len(words)


# --------------------------------------------------------------------------
# Corpus: ids, partition, voices, formats, Mac litter, staging and swap.
# --------------------------------------------------------------------------
def partition_sizes(videos):
    """(train, devel, test) counts: half train, like MuSe a small test, the
    rest devel; 16 -> 8, 6, 2. Devel gets a recording before test does."""
    train = int(math.ceil(videos / 2.0))
    rest = videos - train
    test = min(max(1, int(round(videos / 8.0))), rest - 1) if rest >= 2 else 0
    return train, rest - test, test


def plan_corpus(videos, seconds_per_video, seed):
    """One job per recording: id, partition, voice and audio format, all from the seed."""
    rng = np.random.default_rng([seed, 0])
    train, devel, test = partition_sizes(videos)
    proposals = rng.permutation(['train'] * train + ['devel'] * devel + ['test'] * test)
    voices = rng.permutation(VOICES)
    return [{'id': str(index + 1), 'index': index, 'seed': seed,
             'seconds': float(seconds_per_video), 'proposal': str(proposals[index]),
             'labelled': bool(proposals[index] != 'test'),
             'voice': str(voices[index % len(voices)]),
             'format': AUDIO_FORMATS[(index + seed) % len(AUDIO_FORMATS)]}
            for index in range(videos)]


def drop_mac_litter(corpus_dir, first_id):
    """.DS_Store and AppleDouble files, as on MuSe copies that went through a Mac."""
    litter = {os.path.join('metadata', '.DS_Store'): _DS_STORE,
              os.path.join('audio', '.DS_Store'): _DS_STORE,
              os.path.join('audio', '._%s.wav' % first_id): _APPLE_DOUBLE,
              os.path.join('transcriptions', '._%s.csv' % first_id): _APPLE_DOUBLE,
              os.path.join('label_segments', 'arousal', '.DS_Store'): _DS_STORE}
    for relative, content in litter.items():
        with helper.atomic_write(os.path.join(corpus_dir, relative), 'wb') as handle:
            handle.write(content)


def _marker_settings(videos, seconds_per_video, seed):
    return {'generator': 'make_demo_corpus.py', 'version': CORPUS_VERSION, 'videos': int(videos),
            'seconds_per_video': float(seconds_per_video), 'seed': int(seed)}


def _read_marker(directory):
    try:
        return helper.read_json(os.path.join(directory, MARKER))
    except helper.InputError:
        return None


def _check_replaceable(directory):
    """Only an empty folder or a previous demo corpus may be replaced."""
    if not os.path.lexists(directory):
        return
    if not os.path.isdir(directory):
        raise ValueError('%s exists and is not a folder' % directory)
    if os.listdir(directory) and _read_marker(directory) is None:
        raise ValueError('refusing to replace %s: it is not a demo corpus made by this script '
                         '(no %s); remove it or choose another folder' % (directory, MARKER))


def _staging_dir(directory):
    parent, name = os.path.split(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, '.%s.partial-%d' % (name, os.getpid()))
    shutil.rmtree(staging, ignore_errors=True)
    os.mkdir(staging)
    return staging


def _install(staging, directory):
    """Swap the finished staging folder in place of `directory`."""
    directory = os.path.abspath(directory)
    old = None
    if os.path.lexists(directory):
        parent, name = os.path.split(directory)
        old = os.path.join(parent, '.%s.old-%d' % (name, os.getpid()))
        os.replace(directory, old)
    os.replace(staging, directory)
    if old is not None:
        shutil.rmtree(old)


def generate_corpus(output_dir, truth_dir, videos, seconds_per_video, seed, workers=1,
                    overwrite=False):
    """Write the demo corpus and its truth. Returns a summary dict: videos,
    seconds, sentences, words, partition counts, wall_seconds and skipped
    (True when a complete corpus with these settings was already there)."""
    began = time.monotonic()
    if videos < 1 or seconds_per_video < 5.0 or seed < 0:
        raise ValueError('need at least 1 video of at least 5 s and a seed >= 0, got %d of %g s, '
                         'seed %d' % (videos, seconds_per_video, seed))
    corpus_abs, truth_abs = os.path.abspath(output_dir), os.path.abspath(truth_dir)
    if os.path.commonpath([corpus_abs, truth_abs]) in (corpus_abs, truth_abs):
        raise ValueError('output_dir and truth_dir must not contain one another')
    settings = _marker_settings(videos, seconds_per_video, seed)
    markers = [_read_marker(d) for d in (output_dir, truth_dir)]
    if not overwrite and all(m is not None and m.get('settings') == settings for m in markers):
        logging.info('%s already holds this corpus (seed %d); nothing to do (--overwrite to redo)',
                     output_dir, seed)
        return dict(markers[0]['summary'], wall_seconds=time.monotonic() - began, skipped=True)
    _check_replaceable(output_dir)
    _check_replaceable(truth_dir)
    corpus_stage, truth_stage = _staging_dir(output_dir), _staging_dir(truth_dir)
    try:
        summary = _write_corpus(plan_corpus(videos, seconds_per_video, seed),
                                corpus_stage, truth_stage, workers)
        for stage in (corpus_stage, truth_stage):
            helper.write_json(os.path.join(stage, MARKER),
                              {'settings': settings, 'summary': summary})
        _install(corpus_stage, output_dir)
        _install(truth_stage, truth_dir)
    finally:
        shutil.rmtree(corpus_stage, ignore_errors=True)
        shutil.rmtree(truth_stage, ignore_errors=True)
    return dict(summary, wall_seconds=time.monotonic() - began, skipped=False)


def _write_corpus(jobs, corpus_dir, truth_dir, workers):
    """Every recording, then the partition, the truth's index and the litter."""
    for job in jobs:
        job.update(corpus_dir=corpus_dir, truth_dir=truth_dir)
    results = sorted(helper.parallel_map(make_recording, jobs, workers, 'synthesising'),
                     key=lambda result: int(result['id']))
    helper.write_csv(helper.muse_partition_path(corpus_dir), ('Id', 'Proposal'),
                     [(job['id'], job['proposal']) for job in jobs])
    proposals = {job['id']: job['proposal'] for job in jobs}
    helper.write_csv(os.path.join(truth_dir, 'recordings.csv'),
                     ('Id', 'Proposal', 'voice', 'sample_rate', 'channels', 'seconds',
                      'sentences', 'words'),
                     [(r['id'], proposals[r['id']], r['voice'], r['sample_rate'], r['channels'],
                       '%g' % r['seconds'], r['sentences'], r['words']) for r in results])
    drop_mac_litter(corpus_dir, jobs[0]['id'])
    return {'videos': len(results), 'seconds': sum(r['seconds'] for r in results),
            'sentences': sum(r['sentences'] for r in results),
            'words': sum(r['words'] for r in results),
            'partition': {p: sum(job['proposal'] == p for job in jobs) for p in helper.PORTIONS}}


def main(argv):
    del argv
    helper.setup_logging(FLAGS.verbose)
    summary = generate_corpus(FLAGS.output_dir, FLAGS.truth_dir, FLAGS.videos,
                              FLAGS.seconds_per_video, FLAGS.seed, FLAGS.workers, FLAGS.overwrite)
    logging.info('demo corpus %s: %d videos (train %d, devel %d, test %d), %.1f s of audio, '
                 '%d sentences, %d words, wall time %.1f s%s', FLAGS.output_dir,
                 summary['videos'], summary['partition']['train'], summary['partition']['devel'],
                 summary['partition']['test'], summary['seconds'], summary['sentences'],
                 summary['words'], summary['wall_seconds'],
                 ' (already complete)' if summary['skipped'] else '')
    logging.info('truth (word timings, sentence levels, withheld labels): %s', FLAGS.truth_dir)


if __name__ == '__main__':
    app.run(main)
