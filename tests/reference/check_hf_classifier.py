#!/usr/bin/env python3
"""Checks a fine-tuned model exported by `bertrain export` in transformers:
BertTokenizer and BertForSequenceClassification from the directory classify
a GLUE dev file, and every prediction must equal the one `bertrain predict
--out` wrote for the same file and sequence length.

Usage: check_hf_classifier.py DIR TSV TASK SEQ_LENGTH PREDICTIONS
Exit status 0 when all predictions agree, 1 otherwise, 77 without torch or
transformers.
"""
import sys

try:
    import torch
    import transformers
except ImportError as e:
    print(f"SKIP: {e.name or e} is not installed (needs torch, transformers)")
    sys.exit(77)


def texts(rows, task):
    if task == "mrpc":  # Quality, #1 ID, #2 ID, #1 String, #2 String
        return [r[3] for r in rows], [r[4] for r in rows]
    return [r[0] for r in rows], None  # SST-2: sentence, label


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    directory, tsv, task, seq, preds = sys.argv[1:]
    rows = [line.rstrip("\n").split("\t") for line in open(tsv, encoding="utf-8")][1:]
    ours = [int(line) for line in open(preds)]
    tok = transformers.BertTokenizer.from_pretrained(directory)
    model = transformers.BertForSequenceClassification.from_pretrained(directory).eval()
    a, b = texts(rows, task)
    got = []
    with torch.no_grad():
        for i in range(0, len(rows), 32):
            enc = tok(a[i:i + 32], b[i:i + 32] if b else None, truncation="longest_first",
                      max_length=int(seq), padding=True, return_tensors="pt")
            got += model(**enc).logits.argmax(-1).tolist()
    same = sum(x == y for x, y in zip(got, ours))
    print(f"transformers {transformers.__version__}: {same} of {len(rows)} predictions equal "
          f"bertrain predict's")
    return 0 if same == len(rows) == len(ours) else 1


if __name__ == "__main__":
    sys.exit(main())
