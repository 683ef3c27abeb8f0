"""Downstream data: readers of the users' files, encoding into model inputs, and the task metrics.

``common`` (errors, malformed-line accounting, label sets), ``cls_data`` (TSV / CLUE JSONL classification),
``ner`` (CoNLL), ``qa`` (SQuAD / CMRC JSON), ``windows`` (sliding windows over long inputs).  No Paddle here.
"""
