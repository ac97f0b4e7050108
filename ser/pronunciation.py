"""Pronunciations, in the CMU phones of PocketSphinx's en-us model, for words
its dictionary lacks (car makes and models, "q7", numbers, misspellings).

espeak (the same program aeneas synthesises with) spells each word out in its
own phoneme mnemonics (`espeak -x`); those are mapped to CMU phones by a fixed
table. espeak runs as a subprocess, one line per word, so nothing of it stays
in the calling process and the same word always gets the same phones.

    pronounce(['q7', 'cayenne'])  ->  {'q7': 'K Y UW S EH V AH N', 'cayenne': ...}
"""
import subprocess

ESPEAK = 'espeak'
ESPEAK_VOICE = 'en-us'
ESPEAK_TIMEOUT_SECONDS = 30
# espeak's marks of stress, syllables and pauses: not phones.
MARKS = str.maketrans('', '', "',%=_;|!")
# espeak en-us mnemonics -> CMU phones. Longer mnemonics are matched first
# (aI@ before aI before a); r-coloured vowels spell out their R.
ESPEAK_TO_CMU = {
    'a': 'AE', 'aa': 'AE', 'a#': 'AH', 'A:': 'AA', 'A': 'AA', 'A@': 'AA R', 'A#': 'AA',
    'aI': 'AY', 'aI@': 'AY ER', 'aI3': 'AY ER', 'aU': 'AW', 'aU@': 'AW ER',
    '@': 'AH', '@2': 'AH', '@5': 'AH', '@L': 'AH L', '@r': 'ER', '3': 'ER', '3:': 'ER',
    'e': 'EH', 'E': 'EH', 'E2': 'EH', 'E#': 'EH', 'e@': 'EH R', 'eI': 'EY',
    'i': 'IY', 'i:': 'IY', 'i@': 'IY AH', 'i@r': 'IH R', 'i@3': 'IH R', 'I': 'IH', 'I2': 'IH', 'I#': 'IH',
    'I2#': 'IH', '0': 'AA', '0#': 'AA', 'O': 'AO', 'O:': 'AO', 'O@': 'AO R', 'o@': 'AO R',
    'OI': 'OY', 'oU': 'OW', 'oU#': 'OW', 'o': 'OW', 'U': 'UH', 'U@': 'UH R', 'u': 'UW',
    'u:': 'UW', 'V': 'AH', 'y': 'UW',
    'p': 'P', 'b': 'B', 't': 'T', 't#': 'T', 'd': 'D', 'd#': 'D', 'k': 'K', 'g': 'G',
    'f': 'F', 'v': 'V', 'T': 'TH', 'D': 'DH', 's': 'S', 'z': 'Z', 'z#': 'Z', 'S': 'SH',
    'Z': 'ZH', 'h': 'HH', 'x': 'K', 'C': 'HH', 'm': 'M', 'm-': 'M', 'n': 'N', 'n-': 'N',
    'N': 'NG', 'l': 'L', 'l-': 'L', 'L': 'L', 'r': 'R', 'r-': 'R', 'w': 'W', 'w#': 'W',
    'j': 'Y', 'tS': 'CH', 'dZ': 'JH', '?': 'T',
}
LONGEST = max(len(mnemonic) for mnemonic in ESPEAK_TO_CMU)


class PronunciationError(Exception):
    """espeak failed or gave a word no phone."""


def pronounce(words):
    """{word: 'CMU phones'} of each distinct word, from espeak's phonemes."""
    distinct = sorted(set(words))
    if not distinct:
        return {}
    lines = espeak_phonemes(distinct)
    pronunciations = {}
    for word, line in zip(distinct, lines):
        phones = cmu_phones(line)
        if not phones:
            raise PronunciationError('espeak gave no phonemes for %r' % word)
        pronunciations[word] = ' '.join(phones)
    return pronunciations


def espeak_phonemes(words):
    """espeak's phoneme line of each word (one word per input line)."""
    try:
        result = subprocess.run([ESPEAK, '-q', '-x', '-v', ESPEAK_VOICE],
                                input='\n'.join(words) + '\n', capture_output=True, text=True,
                                timeout=ESPEAK_TIMEOUT_SECONDS, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        raise PronunciationError('espeak failed: %s' % error) from None
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if len(lines) != len(words):
        raise PronunciationError('espeak gave %d phoneme lines for %d words'
                                 % (len(lines), len(words)))
    return lines


def cmu_phones(mnemonics):
    """CMU phones of one word's espeak mnemonics, matched longest first; a
    character the table does not know is left out, and an R that an
    r-coloured vowel already spelt out is not doubled (zero: Z IH R OW)."""
    text = mnemonics.translate(MARKS).replace(' ', '')
    phones, position = [], 0
    while position < len(text):
        for length in range(min(LONGEST, len(text) - position), 0, -1):
            mapped = ESPEAK_TO_CMU.get(text[position:position + length])
            if mapped:
                phones += [phone for phone in mapped.split()
                           if not (phone == 'R' and phones and phones[-1] == 'R')]
                position += length
                break
        else:
            position += 1
    return phones
