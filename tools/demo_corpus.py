"""The demo corpus: a small synthetic MuSe-CaR 2020 in its distributed layout,
with real speech from espeak, so the whole pipeline can run, be tested and be
benchmarked without the licensed data.

Every video is one "car review": sentences built from templates with car parts
and opinion words, spoken word by word by one espeak voice, with pauses between
sentences and now and then between words. Because the generator places every
word itself it knows when each word is spoken, and writes that truth beside the
corpus for the tests of alignment.

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

Each video is cut into 2 to 4 topic segments (fewer when it is too short),
cut in pauses between sentences so that no word straddles two segments. Label
rows cover every 250-ms frame lying wholly inside the video: timestamps 0,
250, ... up to the last t with t + 250 <= duration; the value of row t is the
annotation trace at t + 125 ms. A segment owns label rows first..last, its
last row repeated as the next segment's first, and its audio is the video's
[first timestamp, last timestamp + 250 ms): it starts at its first label
timestamp, as MuSe-CaR's baseline assumes.

Word transcripts are what a recogniser would give: MuSe's tokens (capitals,
punctuation, <filler> where the speaker hesitates) in integer ms of VIDEO
time, each onset and offset moved by an independent uniform draw within
+-TIMING_JITTER_MS of the truth.

Layout written (video ids "1", "2", ... "N", not zero-padded, like MuSe-CaR's):
  <output_dir>/metadata/partition.csv                   Id,Proposal (train/devel/test)
  <output_dir>/c1_muse_wild/audio_segments/<Id>/<Id>_<seg>.wav
                                                        48 kHz stereo, 16 kHz or 22.05 kHz mono
  <output_dir>/c1_muse_wild/transcription_segments/<Id>/<Id>_<seg>.csv
                                                        start,end,segment_id,word (ms, video time);
                                                        none for one segment (no_transcript_segment)
  <output_dir>/c1_muse_wild/label_segments/{arousal,valence}/<Id>.csv
                                                        timestamp,value,segment_id (ms, video time);
                                                        none for the test videos (withheld)
  <output_dir>/c1_muse_wild/feature_segments/label_aligned/loudness/<Id>.csv
                                                        timestamp,segment_id,loudness_db, one row
                                                        per label row, every video (with
                                                        label_aligned_features)
  <output_dir>/.demo_corpus.json                        hidden marker: settings and summary
  plus Mac litter (.DS_Store, ._<name>) in a few folders, which the pipeline must ignore.
  <truth_dir>/word_timings/<Id>/<Id>_<seg>.csv          start,end,word (seconds from the start of
                                                        the segment audio, normalised words)
  <truth_dir>/segments.csv                              Id,segment,start_ms,end_ms,transcript
  <truth_dir>/sentences/<Id>.csv                        spoken span (video s), levels, prosody
  <truth_dir>/recordings.csv                            voice, format and size per video
  <truth_dir>/withheld_labels/{arousal,valence}/<Id>.csv   the test videos' labels
  <truth_dir>/.demo_corpus.json                         hidden marker

Partition: half the videos train, about one in eight test (audio and
transcripts, no labels), the rest devel (16 -> 8 / 6 / 2), given to the ids at
random by the seed. With late_unlabelled, a test video's first topic segment
is left out (no audio, transcript or labels, as a video's intro outside every
segment), so its segments start late in the video, numbered from 2. Each
video has its own voice (16 espeak voices) and one of three audio formats in
turn. The segment without a transcript is the last
segment of the first train video (by id).

The corpus is built in hidden staging folders beside the targets and swapped in
when complete, so an interrupted run leaves the previous corpus (or nothing). A
rerun with the same settings finds the markers and skips, unless overwrite.
Same seed, same bytes (WAV included), whatever the number of workers.
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

import helper
from ser import paths
from ser import defaults
from ser.text import normalise_words

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
TRANSCRIPT_HEADER = ('start', 'end', 'segment_id', 'word')
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
TIMING_JITTER_MS = 50       # +- ms on every transcript onset and offset, like a recogniser's
SENTENCE_ATTEMPTS = 5        # sentences tried before a recording is considered full
TRACE_STEP = 0.01            # seconds; resolution of the annotation trace
ANNOTATOR_LAG = 0.3          # seconds; time constant of the trace's low-pass
ANNOTATOR_NOISE = 0.04       # std of the slow annotation noise
RELAX_TIME = 1.5             # seconds; how fast the trace returns to 0 after the speech
SEGMENTS_PER_VIDEO = (2, 4)  # topic segments of a video, drawn in this range
BOUNDARY_MARGIN = 0.02       # s of silence kept between a segment cut and the nearest word
MIN_SEGMENT_SECONDS = 3.0    # no topic segment is shorter
NOISE_RMS = (0.0015, 0.004)  # background noise, per recording
RUMBLE_HZ = 150.0            # cut-off of the cabin rumble part of the noise
CORPUS_VERSION = 4
FEATURE_NAME = 'loudness'    # the label-aligned feature the corpus writes
TASK_DIR = helper.DEFAULT_TASK_DIR
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
        placed, spans = _place_words(rng, sentence['tokens'], voice, (speed, pitch, amplitude),
                                     cursor)
        if placed[-1][1] + MIN_TAIL_SILENCE > seconds:
            failures += 1
            continue
        for start, _, _, samples in placed:
            offset = int(round(start * ESPEAK_RATE))
            signal[offset:offset + samples.size] += samples
        sentence.update(speed=speed, pitch=pitch, amplitude=amplitude, token_spans=spans,
                        words=[(start, end, word) for start, end, word, _ in placed])
        sentences.append(sentence)
        cursor = placed[-1][1] + rng.uniform(*SENTENCE_PAUSE)
    if not sentences:
        raise ValueError('%g s is too short for a sentence; use longer recordings' % seconds)
    return signal * SPEECH_GAIN, sentences


def _place_words(rng, tokens, voice, prosody_values, cursor):
    """([(start, end, word, samples)] of the spoken words of `tokens` from
    `cursor` on, [(start, end, token)] of every token): a filler is silence,
    not a word, and its token spans that silence."""
    speed = prosody_values[0]
    placed, spans, gap, filler = [], [], 0.0, False
    for token in tokens:
        if token == FILLER:
            gap, filler = rng.uniform(*FILLER_PAUSE), True
            continue
        first = len(placed)
        for word in normalise_words(token):
            if placed:
                if filler:
                    spans.append((placed[-1][1], placed[-1][1] + gap, FILLER))
                cursor += gap
            filler = False
            samples = synthesise_word(word, voice, *prosody_values)
            # Word ends are whole samples, so placed words never overlap.
            start = round(cursor * ESPEAK_RATE) / ESPEAK_RATE
            end = start + samples.size / ESPEAK_RATE
            placed.append((start, end, word, samples))
            cursor = end
            gap = (rng.uniform(*WORD_PAUSE) if rng.uniform() < WORD_PAUSE_PROBABILITY
                   else rng.uniform(*WORD_GAP) * 175.0 / speed)
        spans.append((placed[first][0], placed[-1][1], token))
    return placed, spans


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
        for (when, level), (next_time, _) in zip(anchors, anchors[1:] + [(np.inf, None)]):
            target[(times >= when) & (times < next_time)] = level
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
    return int(round(seconds * 1000)) // paths.LABEL_STEP_MS


def label_rows(times, trace, bounds):
    """(timestamp ms, value, segment_id) for every frame inside the audio, the
    value read at the frame's centre; like MuSe, the last row of a segment is
    repeated as the first row of the next."""
    step = paths.LABEL_STEP_MS
    timestamps = np.arange(bounds[-1] + 1) * step
    values = np.interp((timestamps + step / 2.0) / 1000.0, times, trace)
    values = [_tidy(v) for v in values]
    rows = []
    for segment_id, (first, last) in enumerate(zip(bounds[:-1], bounds[1:]), start=1):
        rows += [(int(timestamps[i]), values[i], segment_id) for i in range(first, last + 1)]
    return rows


def segment_bounds(rng, n_rows, sentences, count):
    """Label row indices where the video's segments start and end (neighbours
    share the index): up to `count` segments, each cut at a row whose frame
    [t, t + 250 ms) lies in a pause between sentences, near an even split."""
    step = paths.LABEL_STEP_MS / 1000.0
    candidates = []
    for before, after in zip(sentences[:-1], sentences[1:]):
        quiet_from = before['words'][-1][1] + BOUNDARY_MARGIN
        quiet_to = after['words'][0][0] - BOUNDARY_MARGIN
        candidates += [row for row in range(int(math.ceil(quiet_from / step)),
                                            int(math.floor(quiet_to / step)))
                       if 0 < row < n_rows - 1]
    inner = []
    shortest = int(MIN_SEGMENT_SECONDS / step)
    for target in np.linspace(0, n_rows - 1, count + 1)[1:-1]:
        free = [row for row in candidates
                if all(abs(row - other) >= shortest for other in [0, n_rows - 1] + inner)]
        if free:
            inner.append(min(free, key=lambda row: (abs(row - target + rng.uniform(-1, 1)), row)))
    return [0] + sorted(inner) + [n_rows - 1]


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
    """Synthesise one video and write its segments' files into the staging
    folders. Depends only on the job, so order and worker count cannot change
    a byte."""
    video_id, seconds = job['id'], job['seconds']
    speech, sentences = compose_recording(job['seed'], job['index'], seconds, job['voice'])
    rng = np.random.default_rng([job['seed'], job['index'], 2])
    bounds = segment_bounds(np.random.default_rng([job['seed'], job['index'], 3]),
                            label_count(seconds), sentences, job['segments'])
    step = paths.LABEL_STEP_MS
    # Each segment: [first label timestamp, last label timestamp + one step) of the video, in ms.
    spans = [(first * step, (last + 1) * step) for first, last in zip(bounds[:-1], bounds[1:])]
    numbered = list(enumerate(spans, start=1))
    if job['late_start'] and len(numbered) > 1:
        numbered = numbered[1:]
    write_labels(rng, job, sentences, bounds, numbered[0][0])
    rate, channels = job['format']
    audio = render_audio(rng, speech, rate, channels)
    layout = paths.MuseLayout(job['corpus_dir'], TASK_DIR)
    if job['features']:
        write_features(layout, video_id, audio, rate, bounds, numbered[0][0])
    jitter = np.random.default_rng([job['seed'], job['index'], 4])
    tokens = [span for sentence in sentences for span in sentence['token_spans']]
    words = [word for sentence in sentences for word in sentence['words']]
    for number, (start_ms, end_ms) in numbered:
        name = paths.segment_name(video_id, number)
        # Whole samples from the first at or after the timestamp (22.05 kHz has no sample
        # on every ms).
        write_wav(os.path.join(layout.audio_dir(video_id), name + '.wav'),
                  audio[-(-start_ms * rate // 1000):-(-end_ms * rate // 1000)], rate)
        rows = transcript_rows(jitter, inside(tokens, start_ms, end_ms), number)
        if not (job['drop_last_transcript'] and number == len(spans)):
            helper.write_csv(layout.transcript_path(name), TRANSCRIPT_HEADER, rows)
        helper.write_csv(os.path.join(job['truth_dir'], 'word_timings', video_id, name + '.csv'),
                         ('start', 'end', 'word'),
                         [('%.4f' % (start - start_ms / 1000.0), '%.4f' % (end - start_ms / 1000.0),
                           word) for start, end, word in inside(words, start_ms, end_ms)])
    write_sentences(job, sentences)
    helper.development_msg('video %s: %s, %d Hz x %d, %d segments, %d sentences, %d words',
                           video_id, job['voice'], rate, channels, len(spans), len(sentences),
                           len(words))
    return {'id': video_id, 'voice': job['voice'], 'sample_rate': rate, 'channels': channels,
            'seconds': seconds, 'sentences': len(sentences), 'words': len(words),
            'segments': [(paths.segment_name(video_id, number), start, end)
                         for number, (start, end) in numbered]}



def inside(spans, start_ms, end_ms):
    """The (start, end, text) spans (seconds) whose midpoint lies in [start_ms, end_ms)."""
    return [span for span in spans if start_ms <= (span[0] + span[1]) * 500.0 < end_ms]


def transcript_rows(rng, tokens, segment):
    """A recogniser's rows of the tokens: integer ms of video time, onset and
    offset each off by up to TIMING_JITTER_MS, still in order and not empty."""
    rows = []
    for start, end, token in tokens:
        start_ms, end_ms = (int(round(t * 1000.0 + rng.uniform(-TIMING_JITTER_MS,
                                                                TIMING_JITTER_MS)))
                            for t in (start, end))
        start_ms = max(start_ms, rows[-1][0] if rows else 0, 0)
        rows.append((start_ms, max(end_ms, start_ms + 10), segment, token))
    return rows


def write_labels(rng, job, sentences, bounds, first_segment):
    """Both dimensions' label segments from `first_segment` on; a test
    video's go to the truth folder instead, as MuSe withholds them."""
    seconds = job['seconds']
    for dimension in paths.DIMENSIONS:
        times, trace = annotation_trace(rng, sentences, seconds, dimension)
        if job['labelled']:
            path = paths.MuseLayout(job['corpus_dir'], TASK_DIR).label_path(dimension, job['id'])
        else:
            path = os.path.join(job['truth_dir'], 'withheld_labels', dimension, job['id'] + '.csv')
        helper.write_csv(path, ('timestamp', 'value', 'segment_id'),
                         [(t, '%.4f' % v, k) for t, v, k in label_rows(times, trace, bounds)
                          if k >= first_segment])


def write_features(layout, video_id, audio, rate, bounds, first_segment):
    """A label-aligned feature file: per label row from `first_segment` on,
    the loudness (dB) of the audio in its frame [t, t + 250 ms)."""
    step = paths.LABEL_STEP_MS
    mono = audio.astype(np.float64).mean(axis=1) / 32767.0
    rows = []
    for segment_id, (first, last) in enumerate(zip(bounds[:-1], bounds[1:]), start=1):
        for index in range(first, last + 1) if segment_id >= first_segment else ():
            frame = mono[index * step * rate // 1000:(index + 1) * step * rate // 1000]
            power = float(np.mean(frame ** 2)) if frame.size else 0.0
            rows.append((index * step, segment_id, '%.2f' % (10.0 * math.log10(power + 1e-10))))
    helper.write_csv(os.path.join(layout.task_path, 'feature_segments', 'label_aligned',
                                  FEATURE_NAME, video_id + '.csv'),
                     ('timestamp', 'segment_id', 'loudness_db'), rows)


def write_sentences(job, sentences):
    """The sentences' spoken spans (video seconds), levels and prosody."""
    helper.write_csv(os.path.join(job['truth_dir'], 'sentences', job['id'] + '.csv'),
                     ('start', 'end', 'arousal', 'valence', 'speed', 'pitch', 'amplitude',
                      'positive', 'negative'),
                     [('%.4f' % s['words'][0][0], '%.4f' % s['words'][-1][1],
                       '%.1f' % s['arousal'], '%.4f' % s['valence'], s['speed'], s['pitch'],
                       s['amplitude'], s['positive'], s['negative']) for s in sentences])


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


def plan_corpus(videos, seconds_per_video, seed, late_unlabelled=False, features=False):
    """One job per video: id, partition, voice, audio format and number of
    segments, all from the seed. The first train video (by id) loses its last
    segment's transcript; with late_unlabelled, a test video its first
    segment; with features, every video gets a label-aligned feature file."""
    rng = np.random.default_rng([seed, 0])
    train, devel, test = partition_sizes(videos)
    proposals = rng.permutation(['train'] * train + ['devel'] * devel + ['test'] * test)
    voices = rng.permutation(VOICES)
    segments = rng.integers(SEGMENTS_PER_VIDEO[0], SEGMENTS_PER_VIDEO[1] + 1, size=videos)
    first_train = list(proposals).index('train')
    return [{'id': str(index + 1), 'index': index, 'seed': seed,
             'seconds': float(seconds_per_video), 'proposal': str(proposals[index]),
             'labelled': bool(proposals[index] != 'test'),
             'voice': str(voices[index % len(voices)]),
             'format': AUDIO_FORMATS[(index + seed) % len(AUDIO_FORMATS)],
             'segments': int(segments[index]), 'drop_last_transcript': index == first_train,
             'late_start': bool(late_unlabelled and proposals[index] == 'test'),
             'features': bool(features)}
            for index in range(videos)]


def drop_mac_litter(corpus_dir, first_id):
    """.DS_Store and AppleDouble files, as on MuSe copies that went through a Mac."""
    layout = paths.MuseLayout(corpus_dir, TASK_DIR)
    first = paths.segment_name(first_id, 1)
    litter = {os.path.join(corpus_dir, 'metadata', '.DS_Store'): _DS_STORE,
              os.path.join(layout.task_path, '.DS_Store'): _DS_STORE,
              os.path.join(os.path.dirname(layout.audio_dir(first_id)), '.DS_Store'): _DS_STORE,
              os.path.join(layout.audio_dir(first_id), '._%s.wav' % first): _APPLE_DOUBLE,
              os.path.join(layout.transcript_dir(first_id), '._%s.csv' % first): _APPLE_DOUBLE,
              os.path.join(layout.label_dir('arousal'), '.DS_Store'): _DS_STORE,
              os.path.join(layout.label_dir('valence'), '._%s.csv' % first_id): _APPLE_DOUBLE}
    for path, content in litter.items():
        with helper.atomic_write(path, 'wb') as handle:
            handle.write(content)


def _marker_settings(videos, seconds_per_video, seed, options):
    """The settings a corpus is made from; options only when set, so a corpus
    made before they existed is still recognised."""
    return dict({'generator': 'make_demo_corpus.py', 'version': CORPUS_VERSION,
                 'videos': int(videos), 'seconds_per_video': float(seconds_per_video),
                 'seed': int(seed)}, **{key: True for key, value in options.items() if value})


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
                    overwrite=False, late_unlabelled=False, label_aligned_features=False):
    """Write the demo corpus and its truth (late_unlabelled and
    label_aligned_features as plan_corpus's late_unlabelled and features say).
    Returns a summary dict: videos,
    seconds, segments, sentences, words, no_transcript (segment names),
    partition counts, wall_seconds and skipped
    (True when a complete corpus with these settings was already there)."""
    began = time.monotonic()
    if videos < 1 or seconds_per_video < 5.0 or seed < 0:
        raise ValueError('need at least 1 video of at least 5 s and a seed >= 0, got %d of %g s, '
                         'seed %d' % (videos, seconds_per_video, seed))
    corpus_abs, truth_abs = os.path.abspath(output_dir), os.path.abspath(truth_dir)
    if os.path.commonpath([corpus_abs, truth_abs]) in (corpus_abs, truth_abs):
        raise ValueError('output_dir and truth_dir must not contain one another')
    options = {'late_unlabelled': late_unlabelled, 'label_aligned_features': label_aligned_features}
    settings = _marker_settings(videos, seconds_per_video, seed, options)
    markers = [_read_marker(d) for d in (output_dir, truth_dir)]
    if not overwrite and all(m is not None and m.get('settings') == settings for m in markers):
        logging.info('%s already holds this corpus (seed %d); nothing to do (--overwrite to redo)',
                     output_dir, seed)
        return dict(markers[0]['summary'], wall_seconds=time.monotonic() - began, skipped=True)
    _check_replaceable(output_dir)
    _check_replaceable(truth_dir)
    corpus_stage, truth_stage = _staging_dir(output_dir), _staging_dir(truth_dir)
    try:
        summary = _write_corpus(plan_corpus(videos, seconds_per_video, seed, late_unlabelled,
                                            label_aligned_features),
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
    """Every video, then the partition, the truth's index and the litter."""
    for job in jobs:
        job.update(corpus_dir=corpus_dir, truth_dir=truth_dir)
    results = sorted(helper.parallel_map(make_recording, jobs, workers, 'synthesising'),
                     key=lambda result: int(result['id']))
    helper.write_csv(paths.MuseLayout(corpus_dir, TASK_DIR).partition_path, ('Id', 'Proposal'),
                     [(job['id'], job['proposal']) for job in jobs])
    proposals = {job['id']: job['proposal'] for job in jobs}
    helper.write_csv(os.path.join(truth_dir, 'recordings.csv'),
                     ('Id', 'Proposal', 'voice', 'sample_rate', 'channels', 'seconds',
                      'segments', 'sentences', 'words'),
                     [(r['id'], proposals[r['id']], r['voice'], r['sample_rate'], r['channels'],
                       '%g' % r['seconds'], len(r['segments']), r['sentences'], r['words'])
                      for r in results])
    missing = {paths.segment_name(job['id'], len(result['segments']))
               for job, result in zip(sorted(jobs, key=lambda job: int(job['id'])), results)
               if job['drop_last_transcript']}
    helper.write_csv(os.path.join(truth_dir, 'segments.csv'),
                     ('Id', 'segment', 'start_ms', 'end_ms', 'transcript'),
                     [(r['id'], name, start, end, int(name not in missing))
                      for r in results for name, start, end in r['segments']])
    drop_mac_litter(corpus_dir, jobs[0]['id'])
    return {'videos': len(results), 'seconds': sum(r['seconds'] for r in results),
            'segments': sum(len(r['segments']) for r in results),
            'sentences': sum(r['sentences'] for r in results),
            'words': sum(r['words'] for r in results), 'no_transcript': sorted(missing),
            'partition': {p: sum(job['proposal'] == p for job in jobs) for p in defaults.PORTIONS}}
