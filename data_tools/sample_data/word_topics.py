"""Generate the demo's downstream task: which kind of thing a sentence talks about (8 classes).

Each example is a neutral frame ("关于{x}，你知道多少？") around one word of the sample corpus's word lists
(cities, foods, sports, technologies, school subjects, weather, people, companies); the label is the list the
word comes from.  The words are split per class: half of them appear only in ``train.tsv``, the other half
only in ``dev.tsv`` / ``test.tsv``.  So the frames carry no signal, and a classifier can only get the held-out
words right by knowing, from elsewhere, what kind of thing they are: a model pretrained on the sample corpus
has seen them in their contexts (火锅 and 小笼包 fill the same slots), a randomly initialised one has not
(it can only lean on characters shared between words, such as 雨 in 小雨 / 大雨).  Chance is 1/8.

Every frame and word was written for this project.  Deterministic for a given seed:

    python -m data_tools.sample_data.word_topics --out DIR [--seed 7]
"""
from __future__ import annotations

import argparse
import os
import random
from typing import Dict, List, Tuple

from data_tools.io_utils import atomic_write_text
from data_tools.sample_data import generate as corpus

CLASSES: Dict[str, List[str]] = {
    "city": corpus.CITIES,
    "food": corpus.FOODS,
    "sport": corpus.SPORTS,
    "tech": corpus.TECH,
    "subject": corpus.SUBJECTS,
    "weather": corpus.WEATHER,
    "person": corpus.PEOPLE,
    "company": corpus.COMPANIES,
}
FRAMES = [
    "{x}",
    "我想说说{x}。",
    "关于{x}，你知道多少？",
    "今天又听到有人在谈{x}。",
    "{x}，这就是我的答案。",
    "大家都在讨论{x}",
    "说起{x}，我有很多话想说。",
    "{x}？",
    "这次的主题是{x}。",
    "请写一段关于{x}的介绍。",
]

Example = Tuple[str, str]  # (label, text)


def make_splits(seed: int = 7, frames_per_word: int = 8) -> Tuple[List[Example], List[Example], List[Example]]:
    """(train, dev, test): train words and dev/test words of each class are disjoint."""
    rng = random.Random(seed)
    train, dev, test = [], [], []
    for label in sorted(CLASSES):
        words = list(CLASSES[label])
        rng.shuffle(words)
        n_train = len(words) // 2
        for i, word in enumerate(words):
            examples = [(label, f.format(x=word)) for f in rng.sample(FRAMES, frames_per_word)]
            if i < n_train:
                train += examples
            elif (i - n_train) % 2 == 0:
                dev += examples
            else:
                test += examples
    for split in (train, dev, test):
        rng.shuffle(split)
    return train, dev, test


def write_tsv(path: str, examples: List[Example]) -> None:
    atomic_write_text(path, "label\ttext_a\n" + "".join(f"{label}\t{text}\n" for label, text in examples))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory for train.tsv, dev.tsv, test.tsv")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for name, examples in zip(("train", "dev", "test"), make_splits(args.seed)):
        write_tsv(os.path.join(args.out, f"{name}.tsv"), examples)
        print(f"{os.path.join(args.out, name + '.tsv')}: {len(examples)} examples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
