#!/usr/bin/env python3
"""Hugging Face model directories for tests/test_hf_model.sh, read and
written here with json and numpy alone (not bertrain's code, not the
safetensors package), so the test checks bertrain's files against the
format itself.

  hf_dir.py check DIR WEIGHTS.h5
      DIR (from bertrain export) holds exactly the tensors of WEIGHTS.h5,
      bit for bit, plus the tied decoder copies; config.json,
      tokenizer_config.json and vocab.txt agree with the file's attributes.
  hf_dir.py variant SRC DIR KIND
      writes DIR, a copy of SRC changed as KIND says (the forms published
      BERTs come in, or damage an import must refuse), and DIR/expect.npz:
      the tensors an import of DIR must give, under bertrain's names.
  hf_dir.py expect WEIGHTS.h5 DIR/expect.npz
      WEIGHTS.h5 holds exactly the tensors of expect.npz, bit for bit.

Exit status 0 when the check holds, 1 with a message otherwise, 77 when
numpy or h5py is missing.
"""
import json
import os
import shutil
import struct
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:
    print(f"SKIP: {e.name or e} is not installed (needs numpy, h5py)")
    sys.exit(77)

TIED = {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias"}
DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def read_st(path):
    """Header (without __metadata__), metadata and raw tensors of a safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    tensors, end = {}, 0
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = e["data_offsets"]
        if a != end:
            fail(f"{path}: {name} starts at {a}, expected {end}")
        end = b
        raw = data[a:b]
        if e["dtype"] == "BF16":
            bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(raw, DTYPES[e["dtype"]])
        tensors[name] = arr.reshape(e["shape"])
    if end != len(data):
        fail(f"{path}: tensors end at {end}, data holds {len(data)} bytes")
    if (8 + n) % 8:
        fail(f"{path}: data section starts at byte {8 + n}, not a multiple of 8")
    return header, meta, tensors


def write_st(path, tensors, dtypes=None):
    """tensors: name -> array; dtypes: name -> 'F32' | 'F16' | 'BF16' | 'I64'."""
    dtypes = dtypes or {}
    header, chunks, at = {"__metadata__": {"format": "pt"}}, [], 0
    for name, arr in tensors.items():
        dt = dtypes.get(name, "F32")
        if dt == "BF16":
            u = np.ascontiguousarray(arr, np.float32).view(np.uint32).astype(np.uint64)
            raw = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes()
        else:
            raw = np.ascontiguousarray(arr, DTYPES[dt]).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [at, at + len(raw)]}
        chunks.append(raw)
        at += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def widened(arr, dt):
    """What a reader widening dt to float32 gets back."""
    if dt == "F32":
        return np.asarray(arr, np.float32)
    if dt == "F16":
        return np.asarray(arr, np.float16).astype(np.float32)
    u = np.ascontiguousarray(arr, np.float32).view(np.uint32).astype(np.uint64)
    return (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)


def h5_tensors(path):
    with h5py.File(path, "r") as f:
        return ({k: np.asarray(v[()]) for k, v in f.items() if isinstance(v, h5py.Dataset) and k != "vocab"},
                dict(f.attrs), bytes(np.asarray(f["vocab"][()])))


def check(d, weights):
    header, meta, st = read_st(os.path.join(d, "model.safetensors"))
    h5, attrs, vocab = h5_tensors(weights)
    if meta.get("format") != "pt":
        fail(f"__metadata__ {meta}: transformers needs format pt")
    want = set(h5) | (set(TIED) if "cls.predictions.bias" in h5 else set())
    if set(st) != want:
        fail(f"tensors differ: only in export {sorted(set(st) - want)}, only in h5 {sorted(want - set(st))}")
    for name, arr in st.items():
        ref = h5[TIED.get(name, name)]
        if header[name]["dtype"] != "F32" or arr.shape != ref.shape or not np.array_equal(arr, ref):
            fail(f"{name}: {header[name]['dtype']} {arr.shape} differs from the h5's {ref.shape}")
    cfg = json.load(open(os.path.join(d, "config.json")))
    pairs = {"vocab_size": "vocab_size", "hidden_size": "hidden", "num_hidden_layers": "layers",
             "num_attention_heads": "heads", "intermediate_size": "intermediate",
             "max_position_embeddings": "max_position", "type_vocab_size": "type_vocab",
             "hidden_dropout_prob": "dropout", "attention_probs_dropout_prob": "attention_dropout",
             "initializer_range": "initializer_range"}
    for k, a in pairs.items():
        if cfg.get(k) != attrs[a]:
            fail(f"config.json {k} = {cfg.get(k)}, the h5's {a} = {attrs[a]}")
    labels = int(attrs["num_labels"])
    arch = ("BertForSequenceClassification" if labels else
            "BertForPreTraining" if int(attrs["pretraining_heads"]) else "BertModel")
    if cfg["architectures"] != [arch] or cfg["model_type"] != "bert" or cfg["hidden_act"] != "gelu":
        fail(f"config.json: architectures {cfg['architectures']} (want {arch}), model_type, hidden_act")
    if labels and len(cfg.get("id2label", {})) != labels:
        fail(f"config.json: id2label {cfg.get('id2label')} for {labels} labels")
    tok = json.load(open(os.path.join(d, "tokenizer_config.json")))
    if tok["do_lower_case"] != bool(attrs["lowercase"]) or tok["tokenizer_class"] != "BertTokenizer":
        fail(f"tokenizer_config.json {tok}; the h5's lowercase {attrs['lowercase']}")
    if open(os.path.join(d, "vocab.txt"), "rb").read() != vocab:
        fail("vocab.txt differs from the h5's /vocab")
    print(f"{d}: {len(st)} tensors bit-identical to {weights}; config.json, tokenizer_config.json "
          f"and vocab.txt agree ({arch})")


def google_name(name):
    """BertModel's names as an old Google conversion has them."""
    name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
    return name[len("bert."):] if name.startswith("bert.") else name


def variant(src, d, kind):
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(src, d)
    _, _, st = read_st(os.path.join(src, "model.safetensors"))
    expect = {k: v for k, v in st.items() if k not in TIED}
    out, dtypes = dict(st), {}
    cfg_path = os.path.join(d, "config.json")
    cfg = json.load(open(cfg_path))
    if kind == "google":
        # BertModel names, gamma/beta, the embeddings in F16 and the rest in
        # BF16, the position_ids buffer, no decoder copies, heads dropped
        out = {google_name(k): v for k, v in st.items() if k.startswith("bert.")}
        out["embeddings.position_ids"] = np.arange(cfg["max_position_embeddings"], dtype=np.int64)[None]
        dtypes = {k: ("I64" if k.endswith("position_ids") else "F16" if k.startswith("embeddings.") else "BF16")
                  for k in out}
        expect = {k: widened(v, dtypes[google_name(k)]) for k, v in st.items() if k.startswith("bert.")}
    elif kind == "maskedlm":
        # BertForMaskedLM: no next-sentence head, so no heads are imported
        out = {k: v for k, v in st.items() if not k.startswith("cls.seq_relationship")}
        expect = {k: v for k, v in expect.items() if k.startswith("bert.")}
    elif kind == "tokjson":
        # transformers 5's save_pretrained: tokenizer.json, no vocab.txt
        tokens = open(os.path.join(d, "vocab.txt"), encoding="utf-8").read().split("\n")[:-1]
        os.remove(os.path.join(d, "vocab.txt"))
        json.dump({"model": {"type": "WordPiece", "unk_token": "[UNK]",
                             "vocab": {t: i for i, t in enumerate(tokens)}}},
                  open(os.path.join(d, "tokenizer.json"), "w"))
    elif kind == "untied":
        out["cls.predictions.decoder.bias"] = st["cls.predictions.decoder.bias"] + 1
    elif kind == "relu":
        cfg["hidden_act"] = "relu"
    elif kind == "vocabsize":
        cfg["vocab_size"] += 1
    elif kind == "badshape":
        w = "bert.encoder.layer.0.attention.self.query.weight"
        out[w] = st[w][:, :-1]
    elif kind == "extra":
        out["bert.encoder.layer.0.attention.self.rotary.weight"] = st["cls.predictions.bias"]
    elif kind == "missing":
        del out["bert.encoder.layer.1.output.dense.bias"]
    elif kind == "pickle":
        os.rename(os.path.join(d, "model.safetensors"), os.path.join(d, "pytorch_model.bin"))
    elif kind not in ("same", "truncated", "badheader"):
        fail(f"unknown variant {kind}")
    json.dump(cfg, open(cfg_path, "w"), indent=2)
    if kind != "pickle":
        write_st(os.path.join(d, "model.safetensors"), out, dtypes)
    if kind == "truncated":
        p = os.path.join(d, "model.safetensors")
        os.truncate(p, os.path.getsize(p) - 100)
    if kind == "badheader":
        with open(os.path.join(d, "model.safetensors"), "r+b") as f:
            f.write(struct.pack("<Q", 1 << 40))
    np.savez(os.path.join(d, "expect.npz"), **expect)


def expect(weights, npz):
    h5, _, _ = h5_tensors(weights)
    want = dict(np.load(npz))
    if set(h5) != set(want):
        fail(f"{weights}: tensors only there {sorted(set(h5) - set(want))}, missing {sorted(set(want) - set(h5))}")
    for k, v in want.items():
        if h5[k].shape != v.shape or not np.array_equal(h5[k], v):
            fail(f"{weights}: {k} differs (max |d| {np.max(np.abs(h5[k] - v)) if h5[k].shape == v.shape else 'shape'})")
    print(f"{weights}: the {len(want)} expected tensors, bit for bit")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "check" and len(sys.argv) == 4:
        check(sys.argv[2], sys.argv[3])
    elif cmd == "variant" and len(sys.argv) == 5:
        variant(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "expect" and len(sys.argv) == 4:
        expect(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
