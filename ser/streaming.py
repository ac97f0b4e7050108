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


class StreamError(ValueError):
    """Input a stream cannot take (a bad message or order)."""


class Stream:
    """One utterance: its audio at the model's rate, the words heard so far,
    the LSTM state and the predictions made."""

    def __init__(self, predictor, sample_rate, channels=1, with_words=False):
        if not predictor.carries_state:
            raise StreamError('the model was exported before chunked inference: it cannot '
                              'stream (export it again)')
        self.predictor = predictor
        self.channels = channels
        self.with_words = with_words
        self._resampler = None
        if sample_rate != predictor.sample_rate:
            import soxr
            self._resampler = soxr.ResampleStream(sample_rate, predictor.sample_rate, 1,
                                                  dtype='float32')
        self._partial = b''            # bytes of an incomplete sample
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
    def add_audio(self, data):
        """16-bit little-endian PCM bytes, channels interleaved."""
        if self.finished:
            raise StreamError('audio after the end of the stream')
        data = self._partial + data
        usable = len(data) - len(data) % (2 * self.channels)
        self._partial = data[usable:]
        samples = np.frombuffer(data[:usable], dtype='<i2').astype(np.float32) / PCM_SCALE
        self._append(samples.reshape(-1, self.channels).mean(axis=1, dtype=np.float32))

    def _append(self, samples, last=False):
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=last)
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


def timed_words(rows, name):
    """[(start, end, word)] of [{word, start, end}] (seconds), normalised as the
    training text was (ser.inference.normalise_word_timings); StreamError
    naming `name` for a malformed one."""
    from ser import inference
    parsed = []
    if not isinstance(rows, list):
        raise StreamError('%s must be a list of {"word", "start", "end"}' % name)
    for index, row in enumerate(rows):
        try:
            word, start, end = row['word'], float(row['start']), float(row['end'])
        except (TypeError, KeyError, ValueError):
            raise StreamError('%s[%d] must be {"word": text, "start": seconds, "end": seconds}'
                              % (name, index)) from None
        if not isinstance(word, str) or not np.isfinite([start, end]).all():
            raise StreamError('%s[%d]: the word must be text, the times numbers' % (name, index))
        parsed.append((start, end, word))
    try:
        return inference.normalise_word_timings(enumerate(parsed), name)
    except helper.InputError as error:
        raise StreamError(error.problem) from None
