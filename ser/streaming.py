"""Emotion while the caller is still speaking: one live utterance run
through the model frame by frame as its audio arrives.

    stream = Stream(predictor, sample_rate=8000, channels=1, with_words=True)
    stream.add_audio(pcm_bytes)                    # 16-bit little-endian PCM, any split
    stream.add_words([(0.3, 0.6, 'engine')], until=0.9)
    frames, chunks = stream.advance()              # what became complete
    frames, chunks = stream.finish()               # the end of the utterance
    summary = stream.summary()                     # as ser.emotion.summary

A frame (250 ms) is run once the audio reaches REACH_AFTER samples past its
end, which the convolutions read, and, when the stream carries words, once
the words are known up to its end (a frame's embedding is that of the word
overlapping it most, so later words cannot change it). Each run takes the
frames that became ready, a frame of audio before them for the
convolutions, and the LSTM state the previous run left, so the timeline is
the one of the whole utterance in one pass (ser.inference.Predictor), to
float rounding. Only the audio not yet run and the frame before it are kept.
"""

import numpy as np

import helper
from ser import emotion, embeddings
from ser.inference import REACH_AFTER

PCM_SCALE = 32768.0
# Frames run at most at once: a client that sends minutes of audio in one
# message is served in bounded memory.
MAX_RUN_FRAMES = 240
# What speech holds (fast speech is 5-6 words and about 20 letters a second;
# the longest English words have about 45 letters): text beyond it can only
# be a wrong transcript, and would cost minutes of alignment. The second of
# slack lets a one-word utterance be shorter than its word.
MAX_WORDS_PER_SECOND = 10
MAX_LETTERS_PER_SECOND = 40
MAX_WORD_LETTERS = 50
SLACK_SECONDS = 1.0
# Words may end this much past the audio (rounding of their times).
END_TOLERANCE_SECONDS = 0.05
# The latest a stream's "until" may name: beyond it, no stream lasts.
MAX_UNTIL_SECONDS = 1e6
# Words recognised while a stream runs (SpeechBlocks): the audio is cut at
# the first pause once a block holds BLOCK_MIN_SECONDS, so that a word is
# seldom cut and the language model has a phrase to work with, and anywhere
# at BLOCK_MAX_SECONDS, which bounds how long a frame waits for its words.
RECOGNITION_RATE = 16000
BLOCK_MIN_SECONDS = 3.0
BLOCK_MAX_SECONDS = 10.0
PAUSE_SECONDS = 0.25
# A 10-ms frame is quiet QUIET_DB below the loudest frame of its block so
# far (what came before it only, so the cut does not depend on how the
# audio was split into messages), or below SILENCE_DBFS whatever came.
PAUSE_FRAME_SECONDS = 0.01
QUIET_DB = 30.0
SILENCE_DBFS = -70.0


class StreamError(ValueError):
    """Input a stream cannot take (a bad message or order); also what is
    wrong with words a caller sent (timed_words, check_speakable)."""


def check_text(text, name):
    """StreamError when `text` cannot be written as UTF-8 (JSON's \\ud800
    escapes make lone surrogates, which no text file or library takes)."""
    try:
        text.encode('utf-8')
    except UnicodeEncodeError as error:
        raise StreamError('%s is not text: character %d is half of a UTF-16 pair'
                          % (name, error.start + 1)) from None


def check_speakable(words, seconds):
    """StreamError when the words (normalised, as strings) are more than
    `seconds` of speech holds: too many, too many letters, or one too long."""
    allowed = seconds + SLACK_SECONDS
    letters = sum(len(word) for word in words)
    longest = max(words, key=len, default='')
    if len(words) > MAX_WORDS_PER_SECOND * allowed:
        raise StreamError('%d words, more than can be spoken in %.2f s of audio'
                          % (len(words), seconds))
    if letters > MAX_LETTERS_PER_SECOND * allowed:
        raise StreamError('%d letters of words, more than can be spoken in %.2f s of audio'
                          % (letters, seconds))
    if len(longest) > MAX_WORD_LETTERS:
        raise StreamError('a word of %d letters (%r...): no spoken word is longer than %d'
                          % (len(longest), longest[:20], MAX_WORD_LETTERS))


def check_words_inside(words, seconds):
    """StreamError for a word that starts after the audio ends, or ends past it."""
    for start, end, word in words:
        if start >= seconds or end > seconds + END_TOLERANCE_SECONDS:
            raise StreamError('the word %r at %.3f-%.3f s is not inside the audio (%.3f s)'
                              % (word, start, end, seconds))


class Stream:
    """One utterance: its audio at the model's rate, the words heard so far,
    the LSTM state and the predictions made."""

    def __init__(self, predictor, sample_rate, channels=1, with_words=False, max_seconds=None):
        self.predictor = predictor
        self.channels = channels
        self.with_words = with_words
        # Audio past this many samples at the model's rate is not taken.
        self.max_samples = None if max_seconds is None else int(max_seconds *
                                                                predictor.sample_rate)
        self._resampler = None
        if sample_rate != predictor.sample_rate:
            import soxr
            self._resampler = soxr.ResampleStream(sample_rate, predictor.sample_rate, 1,
                                                  dtype='float32')
        self._partial = b''            # bytes of an incomplete sample
        self.heard = 0                 # samples received, at the stream's rate
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_start = 0          # sample index of self._audio[0]
        self.received = 0              # samples at the model's rate
        self.words = []                # every word, for the summary
        self._pending_words = []       # those that may still win a frame
        self.words_until = 0.0
        self._state = None
        self.predictions = []          # [arousal, valence] per frame run
        self._chunk_start = 0
        self.finished = False

    # ----------------------------------------------------------------------
    # Input
    # ----------------------------------------------------------------------
    @property
    def full(self):
        """The stream holds max_seconds of audio: it takes no more."""
        return self.max_samples is not None and self.received >= self.max_samples

    def add_audio(self, data):
        """16-bit little-endian PCM bytes, channels interleaved; past
        max_seconds, the rest is dropped (see `full`). Returns the new
        samples mixed to mono, at the stream's rate."""
        if self.finished:
            raise StreamError('audio after the end of the stream')
        data = self._partial + data
        usable = len(data) - len(data) % (2 * self.channels)
        self._partial = data[usable:]
        samples = np.frombuffer(data[:usable], dtype='<i2').astype(np.float32) / PCM_SCALE
        self.heard += usable // (2 * self.channels)
        mono = samples.reshape(-1, self.channels).mean(axis=1, dtype=np.float32)
        self._append(mono)
        return mono

    def _append(self, samples, last=False):
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=last)
        if self.max_samples is not None:
            samples = samples[:max(0, self.max_samples - self.received)]
        self._audio = np.concatenate([self._audio, samples.astype(np.float32)])
        self.received += len(samples)

    def add_words(self, words, until=None):
        """Words [(start, end, word)] in seconds from the start of the stream,
        in order of time, as a recogniser finalises them (normalised as the
        training text was); `until` (default: the end of the last word): the
        time up to which the words are final, i.e. no word still to come
        starts before it."""
        if self.finished:
            raise StreamError('words after the end of the stream')
        # Words may come before their audio: until the end, they are held to
        # what the longest stream holds, then to the audio's duration.
        if self.max_samples is not None:
            check_speakable([word for _, _, word in self.words + words],
                            self.max_samples / self.predictor.sample_rate)
        latest = self.words[-1][0] if self.words else 0.0
        for start, _, word in words:
            if start < latest:
                raise StreamError('words must come in order of time: %r starts at %.3f s, '
                                  'before the word before it' % (word, start))
            latest = start
        self.words.extend(words)
        self._pending_words.extend(words)
        if until is None:
            until = max([end for _, end, _ in words], default=self.words_until)
        self.words_until = max(self.words_until, float(until))

    # ----------------------------------------------------------------------
    # Running
    # ----------------------------------------------------------------------
    @property
    def frames_done(self):
        return len(self.predictions)

    def ready_frames(self):
        """Frames whose audio (and words) are complete and not yet run."""
        size = self.predictor.frame_samples
        heard = (self.received - REACH_AFTER) // size
        if self.with_words:
            heard = min(heard, int(self.words_until * 1000.0 + 1e-6) // self.predictor.step_ms)
        return max(0, heard - self.frames_done)

    def advance(self):
        """Run the frames that became ready. Returns (frames, chunks): the new
        frames as (timestamp ms, arousal, valence) and the 5 s chunks they
        completed, as ser.emotion.chunks gives them."""
        frames = []
        while self.ready_frames():
            frames += self._run(min(self.ready_frames(), MAX_RUN_FRAMES), final=False)
        return frames, self._completed_chunks(final=False)

    def finish(self):
        """The end of the utterance: every remaining frame (the last one
        zero-padded), and the last, possibly shorter, chunk."""
        if self.finished:
            raise StreamError('the stream has ended already')
        if self._resampler is not None:
            self._append(np.zeros(0, dtype=np.float32), last=True)
        self.finished = True
        check_speakable([word for _, _, word in self.words], self.duration)
        check_words_inside(self.words, self.duration)
        frames = []
        total = max(1, -(-self.received // self.predictor.frame_samples))
        while self.frames_done < total:
            frames += self._run(min(total - self.frames_done, MAX_RUN_FRAMES), final=True)
        return frames, self._completed_chunks(final=True)

    def _run(self, count, final):
        size = self.predictor.frame_samples
        first, stop = self.frames_done, self.frames_done + count
        before = min(first, 1)
        # A frame of audio after the run, unless the utterance ends with it.
        after = 0 if final and stop * size >= self.received else 1
        audio = self._samples((first - before) * size, (stop + after) * size)
        predictions, self._state = self.predictor.run_chunk(
            audio.reshape(-1, size), self._embeddings(first, stop), (before, after),
            self._state)
        self.predictions.extend(predictions.tolist())
        # Only the frame before the next run is needed again.
        self._drop_before((stop - 1) * size)
        step = self.predictor.step_ms
        return [((first + index) * step,) + tuple(values)
                for index, values in enumerate(predictions.tolist())]

    def _samples(self, start, stop):
        """Samples [start, stop) at the model's rate, zeros past what arrived."""
        piece = self._audio[start - self._audio_start:stop - self._audio_start]
        return np.concatenate([piece, np.zeros(stop - start - len(piece), dtype=np.float32)])

    def _drop_before(self, sample):
        if sample > self._audio_start:
            self._audio = self._audio[sample - self._audio_start:]
            self._audio_start = sample

    def _embeddings(self, first, stop):
        """[stop - first, E] embeddings of frames [first, stop), as
        ser.embeddings.frame_embeddings gives them for the whole utterance."""
        vectors = np.zeros((stop - first, self.predictor.embedding_dim), dtype=np.float32)
        step = self.predictor.step_ms / 1000.0
        # Words that end before these frames can win none of them, nor any later one.
        self._pending_words = [word for word in self._pending_words if word[1] > first * step]
        if not self._pending_words or self.predictor.modality == 'audio':
            return vectors
        index = embeddings.frame_word_index(self._pending_words, stop, step)[first:]
        speech = index >= 0
        if speech.any():
            vectors[speech] = self.predictor.embedder.vectors(
                [self._pending_words[i][2] for i in index[speech]])
        return vectors

    def _completed_chunks(self, final):
        """The 5 s chunks the frames run so far complete (at the end, the
        last one too), as ser.emotion.chunks gives them."""
        step = self.predictor.step_ms
        size = max(1, emotion.CHUNK_MS // step)
        chunks = []
        while (self.frames_done - self._chunk_start >= size
               or (final and self.frames_done > self._chunk_start)):
            stop = min(self._chunk_start + size, self.frames_done)
            part = emotion.chunks(self.predictions[self._chunk_start:stop], step)[0]
            part['start'] = self._chunk_start * step / 1000.0
            part['end'] = min(stop * step / 1000.0, self.duration)
            chunks.append(part)
            self._chunk_start = stop
        return chunks

    # ----------------------------------------------------------------------
    # Output
    # ----------------------------------------------------------------------
    @property
    def duration(self):
        return self.received / self.predictor.sample_rate

    def summary(self):
        """ser.emotion.summary of the utterance (after finish)."""
        return emotion.summary(np.array(self.predictions), self.predictor.step_ms, self.duration)


class SpeechBlocks:
    """A stream's audio at the recogniser's rate, cut into blocks at pauses
    as it arrives, for its words to be recognised block by block:

        blocks = SpeechBlocks(sample_rate=8000, max_seconds=600)
        for start, samples in blocks.add(mono):   # mono at 8 kHz, any split
            ...                                   # start: seconds into the stream
        last = blocks.finish()                    # (start, samples) or None

    The blocks are the same however the audio was split into messages, and
    joined they are the whole stream resampled."""

    def __init__(self, sample_rate, max_seconds=None):
        self._resampler = None
        if sample_rate != RECOGNITION_RATE:
            import soxr
            self._resampler = soxr.ResampleStream(sample_rate, RECOGNITION_RATE, 1,
                                                  dtype='float32')
        self.max_samples = None if max_seconds is None else int(max_seconds * RECOGNITION_RATE)
        self._audio = np.zeros(0, dtype=np.float32)
        self._start = 0                # sample index of the block's first sample
        self.finished = False

    def add(self, mono):
        """[(start s, 16-kHz samples)] of the blocks `mono` completes."""
        self._take(mono, last=False)
        blocks = []
        cut = self._cut()
        while cut is not None:
            blocks.append(self._split(cut))
            cut = self._cut()
        return blocks

    def finish(self):
        """The last block, (start s, samples), or None when nothing is left."""
        self._take(np.zeros(0, dtype=np.float32), last=True)
        self.finished = True
        return self._split(len(self._audio)) if len(self._audio) else None

    def _take(self, mono, last):
        if self.finished:
            raise StreamError('audio after the end of the stream')
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(np.asarray(mono, dtype=np.float32), last=last)
        if self.max_samples is not None:
            mono = mono[:max(0, self.max_samples - self._start - len(self._audio))]
        self._audio = np.concatenate([self._audio, mono.astype(np.float32)])

    def _split(self, cut):
        block = (self._start / RECOGNITION_RATE, self._audio[:cut])
        self._audio, self._start = self._audio[cut:], self._start + cut
        return block

    def _cut(self):
        """Where the block ends: the middle of its first pause past
        BLOCK_MIN_SECONDS, else at BLOCK_MAX_SECONDS its quietest frame past
        BLOCK_MIN_SECONDS; None until either is known."""
        hop = int(PAUSE_FRAME_SECONDS * RECOGNITION_RATE)
        first = int(BLOCK_MIN_SECONDS / PAUSE_FRAME_SECONDS)
        longest = int(BLOCK_MAX_SECONDS / PAUSE_FRAME_SECONDS)
        # Only the longest block's frames can hold the cut: what a later
        # message brings cannot move it.
        count = min(len(self._audio) // hop, longest)
        if count <= first:
            return None
        frames = self._audio[:count * hop].reshape(count, hop).astype(np.float64)
        level = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
        quiet = (level < np.maximum.accumulate(level) - QUIET_DB) | (level < SILENCE_DBFS)
        run = int(round(PAUSE_SECONDS / PAUSE_FRAME_SECONDS))
        # Frames starting a run of `run` quiet frames: a window sum of `run`.
        sums = np.convolve(quiet[first:].astype(int), np.ones(run, dtype=int), 'valid')
        starts = np.flatnonzero(sums == run)
        if starts.size:
            return (first + starts[0] + run // 2) * hop
        if count < longest:
            return None
        return (first + int(np.argmin(level[first:]))) * hop


def timed_words(rows, name, max_words=None):
    """[(start, end, word)] of [{word, start, end}] (seconds), normalised as the
    training text was (ser.inference.normalise_word_timings); StreamError
    naming `name` for a malformed one: not text, times that are not finite
    numbers, negative, or of no length; more than `max_words` entries."""
    from ser import inference
    if not isinstance(rows, list):
        raise StreamError('%s must be a list of {"word", "start", "end"}' % name)
    if max_words is not None and len(rows) > max_words:
        raise StreamError('%s has %d entries, more than the %d accepted'
                          % (name, len(rows), max_words))
    parsed = []
    for index, row in enumerate(rows):
        where = '%s[%d]' % (name, index)
        if not isinstance(row, dict) or not isinstance(row.get('word'), str) \
                or 'start' not in row or 'end' not in row:
            raise StreamError('%s must be {"word": text, "start": seconds, "end": seconds}'
                              % where)
        check_text(row['word'], where)
        start, end = (time_in_seconds(row.get(key), '%s "%s"' % (where, key)) for key in ('start', 'end'))
        if end <= start:
            raise StreamError('%s: %r ends at %s s, not after its start at %s s'
                              % (where, row['word'], end, start))
        parsed.append((start, end, row['word']))
    try:
        return inference.normalise_word_timings(enumerate(parsed), name)
    except helper.InputError as error:
        raise StreamError(error.problem) from None


def time_in_seconds(value, name):
    """A finite, non-negative time in seconds, or StreamError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StreamError('%s must be a number of seconds' % name)
    try:
        seconds = float(value)
    except OverflowError:
        seconds = float('inf')
    if not 0 <= seconds <= MAX_UNTIL_SECONDS:
        raise StreamError('%s must be a time from 0 to %g s' % (name, MAX_UNTIL_SECONDS))
    return seconds
