"""Words of audio that comes without text, recognised by PocketSphinx's
en-us recogniser (the acoustic model, dictionary and trigram language model
inside its wheel: offline), so that the semantic branch hears something where
no transcript was given.

    words = recognise_words(samples_16k)    # [(start s, end s, word)]

The words are normalised as the training text was (helper.normalise_words);
silences, noises and fillers are left out. One recogniser per process, built
on first use; as in ser.phonetic_alignment, its front end is reset and
cepstral mean normalisation computed per recording, so an answer does not
depend on what the process recognised before.
"""
import numpy as np
from pocketsphinx import Decoder

import helper
from ser import phonetic_alignment

SAMPLE_RATE = phonetic_alignment.SAMPLE_RATE
LANGUAGES = phonetic_alignment.LANGUAGES
DECODER_SETTINGS = {'loglevel': 'FATAL', 'cmn': 'batch'}

_decoder = None


class RecognitionError(Exception):
    """The recogniser failed on the recording."""


def decoder():
    """The process's recogniser, built once."""
    global _decoder
    if _decoder is None:
        _decoder = Decoder(**DECODER_SETTINGS)
    return _decoder


def recognise_words(samples):
    """[(start, end, word)] in seconds (rounded to ms) of the words heard in
    16-kHz mono `samples`, in order; [] when none is heard."""
    engine = decoder()
    pcm = (np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767).astype('<i2')
    try:
        engine.reinit_feat()
        engine.start_utt()
        engine.process_raw(pcm.tobytes(), full_utt=True)
        engine.end_utt()
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
        words += [(start, end, word) for word in helper.normalise_words(token)]
    return words
