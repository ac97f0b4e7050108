"""Words of audio that comes without text, recognised by PocketSphinx's
en-us recogniser (the acoustic model, dictionary and trigram language model
inside its wheel: offline), so that the semantic branch hears something where
no transcript was given.

    words = recognise_words(samples_16k)    # [(start s, end s, word)]

The words are normalised as the training text was (ser.text.normalise_words);
silences, noises and fillers are left out. Each call builds its own
recogniser: the n-gram search keeps state from one recording to the next (on
audio with nothing to hear its answer changed with the recordings before).
The service builds one in its aligner helper process and recognises in forks
of it (ser.isolated_alignment), each from that same state. Cepstral mean
normalisation is computed per recording.
"""
from pocketsphinx import Decoder

from ser import phonetic_alignment
from ser.text import normalise_words

SAMPLE_RATE = phonetic_alignment.SAMPLE_RATE
LANGUAGES = phonetic_alignment.LANGUAGES
DECODER_SETTINGS = {'loglevel': 'FATAL', 'cmn': 'batch'}


class RecognitionError(Exception):
    """The recogniser failed on the recording."""


def recognise_words(samples):
    """[(start, end, word)] in seconds (rounded to ms) of the words heard in
    16-kHz mono `samples`, in order; [] when none is heard."""
    return Recogniser().words(samples)


class Recogniser:
    """One recogniser, for one recording: its search keeps state from one to
    the next. Built once in a process that then forks (the service's aligner
    helper), each fork recognises from the same state."""

    def __init__(self):
        try:
            self._engine = Decoder(**DECODER_SETTINGS)
        except RuntimeError as error:
            raise RecognitionError('PocketSphinx failed: %s' % error) from None

    def words(self, samples):
        """recognise_words of `samples`, by this recogniser."""
        engine = self._engine
        try:
            phonetic_alignment.run_utterance(engine, samples)
        except RuntimeError as error:
            raise RecognitionError('PocketSphinx failed: %s' % error) from None
        if engine.hyp() is None:
            return []
        words = []
        for segment in engine.seg():
            token = phonetic_alignment.ALTERNATIVE.sub('', segment.word)
            if token in phonetic_alignment.NOT_WORDS:
                continue
            start = round(segment.start_frame * phonetic_alignment.FRAME_SECONDS, 3)
            end = round((segment.end_frame + 1) * phonetic_alignment.FRAME_SECONDS, 3)
            words += [(start, end, word) for word in normalise_words(token)]
        return words
