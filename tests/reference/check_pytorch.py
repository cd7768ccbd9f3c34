#!/usr/bin/env python3
"""Checks `bertrain forward` against Hugging Face transformers.

Loads a bertrain weights file (HDF5, one dataset per Hugging Face state_dict
key) into transformers.BertForPreTraining, runs the same shard rows in eval
mode in float64, gathers the MLM logits at the masked positions and compares
them, the NSP logits and both losses with the file `bertrain forward` wrote.
The relative error of a tensor is max|bertrain - reference| / max|reference|.
With --hf-dir the model is instead what transformers' from_pretrained makes
of the directory `bertrain export` wrote from the checkpoint.

Exit status: 0 when every relative error is below --tol, 1 otherwise, 77 when
torch, transformers, h5py or numpy is missing.
"""
import argparse
import sys

try:
    import h5py
    import numpy as np
    import torch
    import transformers
except ImportError as e:  # the test script turns 77 into a skip
    print(f"SKIP: {e.name or e} is not installed (needs torch, transformers, h5py, numpy)")
    sys.exit(77)

# bertrain stores tied tensors once (src/params.h); Hugging Face has both keys.
TIED = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}


def load_model(path):
    with h5py.File(path, "r") as f:
        a = f.attrs
        fmt = a["format"]
        if (fmt.decode() if isinstance(fmt, bytes) else str(fmt)) != "bertrain-weights":
            sys.exit(f"{path}: not a bertrain weights file")
        if not int(a["pretraining_heads"]):
            sys.exit(f"{path}: no pre-training heads")
        config = transformers.BertConfig(
            vocab_size=int(a["vocab_size"]),
            hidden_size=int(a["hidden"]),
            num_hidden_layers=int(a["layers"]),
            num_attention_heads=int(a["heads"]),
            intermediate_size=int(a["intermediate"]),
            max_position_embeddings=int(a["max_position"]),
            type_vocab_size=int(a["type_vocab"]),
            hidden_act="gelu",
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            layer_norm_eps=1e-12,
            pad_token_id=max(int(a["pad_token_id"]), 0),
        )
        state = {name: torch.from_numpy(np.asarray(obj[()], dtype=np.float64))
                 for name, obj in f.items()
                 if isinstance(obj, h5py.Dataset) and name != "vocab"}
    for key, source in TIED.items():
        state[key] = state[source].clone()
    try:
        model = transformers.BertForPreTraining(config, attn_implementation="eager")
    except TypeError:
        config._attn_implementation = "eager"
        model = transformers.BertForPreTraining(config)
    model = model.double().eval()
    expected = set(model.state_dict().keys())
    missing = sorted(k for k in expected - state.keys() if not k.endswith("position_ids"))
    extra = sorted(state.keys() - expected)
    if missing or extra:
        sys.exit(f"{path}: names do not map onto BertForPreTraining: missing {missing}, "
                 f"unexpected {extra}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(model.state_dict()[k].shape):
            sys.exit(f"{path}: {k} has shape {tuple(v.shape)}, transformers expects "
                     f"{tuple(model.state_dict()[k].shape)}")
    model.load_state_dict(state, strict=False)
    return model


def load_exported(directory):
    """A directory of bertrain export, through transformers' own loader."""
    try:
        model = transformers.BertForPreTraining.from_pretrained(directory, attn_implementation="eager")
    except TypeError:
        model = transformers.BertForPreTraining.from_pretrained(directory)
    return model.double().eval()


def read_rows(path, a, b):
    with h5py.File(path, "r") as f:
        get = lambda name: np.asarray(f[name][a:b]).astype(np.int64)
        return {name: get(name) for name in
                ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                 "masked_lm_ids", "next_sentence_labels")}


def reference(model, rows):
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(rows["input_ids"]),
                    attention_mask=torch.from_numpy(rows["input_mask"]),
                    token_type_ids=torch.from_numpy(rows["segment_ids"]))
    scores = out.prediction_logits.numpy()            # [n, S, V]
    nsp = out.seq_relationship_logits.numpy()         # [n, 2]
    pos = rows["masked_lm_positions"]                 # [n, P]
    mlm = np.take_along_axis(scores, pos[:, :, None], axis=1)  # [n, P, V]
    labels = rows["masked_lm_ids"].copy()
    labels[(pos == 0) & (labels == 0)] = -100         # unused slots, as bertrain ignores them
    ce = torch.nn.functional.cross_entropy
    mlm_loss = ce(torch.from_numpy(mlm.reshape(-1, mlm.shape[-1])),
                  torch.from_numpy(labels.reshape(-1)), ignore_index=-100).item()
    nsp_loss = ce(torch.from_numpy(nsp),
                  torch.from_numpy(rows["next_sentence_labels"].reshape(-1))).item()
    return mlm, nsp, mlm_loss, nsp_loss


def rel_err(ours, ref):
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        sys.exit(f"shape mismatch: bertrain {ours.shape}, reference {ref.shape}")
    scale = np.max(np.abs(ref))
    return float(np.max(np.abs(ours - ref)) / (scale if scale > 0 else 1.0))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--hf-dir", help="load the model from this directory (bertrain export of "
                   "the checkpoint) with from_pretrained instead")
    p.add_argument("--shard", required=True)
    p.add_argument("--rows", required=True, help="A:B as given to bertrain forward")
    p.add_argument("--forward", required=True, help="the file bertrain forward wrote")
    p.add_argument("--tol", type=float, default=1e-4)
    args = p.parse_args()
    a, b = (int(x) for x in args.rows.split(":"))
    torch.manual_seed(0)
    model = load_exported(args.hf_dir) if args.hf_dir else load_model(args.checkpoint)
    rows = read_rows(args.shard, a, b)
    mlm, nsp, mlm_loss, nsp_loss = reference(model, rows)
    padded = int((rows["input_mask"].min(axis=1) == 0).sum())
    unused = int(((rows["masked_lm_positions"] == 0) & (rows["masked_lm_ids"] == 0)).sum())
    with h5py.File(args.forward, "r") as f:
        ours = {k: np.asarray(f[k][()]) for k in ("mlm_logits", "nsp_logits", "mlm_loss", "nsp_loss")}
    errors = {
        "mlm_logits": rel_err(ours["mlm_logits"], mlm),
        "nsp_logits": rel_err(ours["nsp_logits"], nsp),
        "mlm_loss": rel_err(ours["mlm_loss"], mlm_loss),
        "nsp_loss": rel_err(ours["nsp_loss"], nsp_loss),
    }
    print(f"torch {torch.__version__}, transformers {transformers.__version__}; rows {a}:{b}, "
          f"mlm_logits {tuple(mlm.shape)}; padded rows {padded}, unused masked slots {unused}")
    print(f"losses: bertrain mlm {float(ours['mlm_loss']):.7f} nsp {float(ours['nsp_loss']):.7f}; "
          f"reference mlm {mlm_loss:.7f} nsp {nsp_loss:.7f}")
    ok = True
    for name, e in errors.items():
        good = e < args.tol
        ok &= good
        print(f"max relative error {name:<10} {e:.3e}  {'ok' if good else 'FAIL'} (tol {args.tol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
