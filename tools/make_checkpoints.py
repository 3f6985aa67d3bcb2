"""Write the tiny checkpoints under golden/checkpoints/ in the layout of the official releases.

    python tools/make_checkpoints.py [--out golden/checkpoints]

Each model is written with TensorFlow's `tf.compat.v1.train.Saver` (as google-research/bert and
zihangdai/xlnet wrote their releases), with `global_step`, the official variable names, shapes
and config JSON. Values come from a NumPy generator seeded per model, so a rerun writes the same
tensors. Weights have std 0.3 (not the 0.02 of training init) so that attention is far from
uniform and a wrong mask or shift shows up as a large error.

Like the official zips, each folder holds the config JSON and the .index/.data files; the
`.meta` graph and the `checkpoint` state file are not written (nothing reads them).
The sha256 of every file and the command are recorded in MANIFEST.json beside the folders.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

BERT_TINY = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 32,
    "initializer_range": 0.02,
    "intermediate_size": 64,
    "max_position_embeddings": 16,
    "num_attention_heads": 4,
    "num_hidden_layers": 3,
    "type_vocab_size": 2,
    "vocab_size": 100,
}

XLNET_TINY = {
    "d_head": 8,
    "d_inner": 64,
    "d_model": 32,
    "ff_activation": "gelu",
    "n_head": 4,
    "n_layer": 3,
    "n_token": 100,
    "untie_r": True,
}

STD = 0.3


def _dense(rng, shape):
    return rng.normal(0.0, rng.std, size=shape).astype(np.float32)


class _Rng:
    """A seeded generator whose normal() draws weights of the chosen std (float32)."""

    def __init__(self, seed: int, std: float):
        self.gen, self.std = np.random.default_rng(seed), std

    def normal(self, loc=0.0, scale=1.0, size=None):
        return self.gen.normal(loc, scale, size=size)


def _layer_norm(rng, prefix, width):
    return {
        f"{prefix}/gamma": (1.0 + 0.1 * rng.normal(size=width)).astype(np.float32),
        f"{prefix}/beta": (0.1 * rng.normal(size=width)).astype(np.float32),
    }


def bert_variables(config: dict, seed: int, std: float = STD) -> dict[str, np.ndarray]:
    """Every variable of an official BERT pre-training checkpoint (google-research/bert)."""
    rng = _Rng(seed, std)
    h, i = config["hidden_size"], config["intermediate_size"]
    v = {
        "bert/embeddings/word_embeddings": _dense(rng, (config["vocab_size"], h)),
        "bert/embeddings/token_type_embeddings": _dense(rng, (config["type_vocab_size"], h)),
        "bert/embeddings/position_embeddings": _dense(rng, (config["max_position_embeddings"], h)),
        **_layer_norm(rng, "bert/embeddings/LayerNorm", h),
    }
    for n in range(config["num_hidden_layers"]):
        p = f"bert/encoder/layer_{n}"
        for part in ("query", "key", "value"):
            v[f"{p}/attention/self/{part}/kernel"] = _dense(rng, (h, h))
            v[f"{p}/attention/self/{part}/bias"] = _dense(rng, (h,))
        v[f"{p}/attention/output/dense/kernel"] = _dense(rng, (h, h))
        v[f"{p}/attention/output/dense/bias"] = _dense(rng, (h,))
        v.update(_layer_norm(rng, f"{p}/attention/output/LayerNorm", h))
        v[f"{p}/intermediate/dense/kernel"] = _dense(rng, (h, i))
        v[f"{p}/intermediate/dense/bias"] = _dense(rng, (i,))
        v[f"{p}/output/dense/kernel"] = _dense(rng, (i, h))
        v[f"{p}/output/dense/bias"] = _dense(rng, (h,))
        v.update(_layer_norm(rng, f"{p}/output/LayerNorm", h))
    v["bert/pooler/dense/kernel"] = _dense(rng, (h, h))
    v["bert/pooler/dense/bias"] = _dense(rng, (h,))
    v["cls/predictions/transform/dense/kernel"] = _dense(rng, (h, h))
    v["cls/predictions/transform/dense/bias"] = _dense(rng, (h,))
    v.update(_layer_norm(rng, "cls/predictions/transform/LayerNorm", h))
    v["cls/predictions/output_bias"] = _dense(rng, (config["vocab_size"],))
    v["cls/seq_relationship/output_weights"] = _dense(rng, (2, h))
    v["cls/seq_relationship/output_bias"] = _dense(rng, (2,))
    return v


def xlnet_variables(config: dict, seed: int, std: float = STD) -> dict[str, np.ndarray]:
    """Every variable of an official XLNet pre-trained checkpoint (zihangdai/xlnet)."""
    rng = _Rng(seed, std)
    d, n, dh, L = config["d_model"], config["n_head"], config["d_head"], config["n_layer"]
    bias_shape = (L, n, dh) if config["untie_r"] else (n, dh)
    t = "model/transformer"
    v = {
        f"{t}/word_embedding/lookup_table": _dense(rng, (config["n_token"], d)),
        f"{t}/mask_emb/mask_emb": _dense(rng, (1, 1, d)),
        f"{t}/r_w_bias": _dense(rng, bias_shape),
        f"{t}/r_r_bias": _dense(rng, bias_shape),
        f"{t}/r_s_bias": _dense(rng, bias_shape),
        f"{t}/seg_embed": _dense(rng, (L, 2, n, dh)),
    }
    for layer in range(L):
        p = f"{t}/layer_{layer}"
        for part in ("q", "k", "v", "o", "r"):
            v[f"{p}/rel_attn/{part}/kernel"] = _dense(rng, (d, n, dh))
        v.update(_layer_norm(rng, f"{p}/rel_attn/LayerNorm", d))
        v[f"{p}/ff/layer_1/kernel"] = _dense(rng, (d, config["d_inner"]))
        v[f"{p}/ff/layer_1/bias"] = _dense(rng, (config["d_inner"],))
        v[f"{p}/ff/layer_2/kernel"] = _dense(rng, (config["d_inner"], d))
        v[f"{p}/ff/layer_2/bias"] = _dense(rng, (d,))
        v.update(_layer_norm(rng, f"{p}/ff/LayerNorm", d))
    v["model/lm_loss/bias"] = _dense(rng, (config["n_token"],))
    return v


def save_v1_saver(variables: dict[str, np.ndarray], prefix: str, global_step: int = 0) -> None:
    """Save with tf.compat.v1.train.Saver in a fresh graph, as the official releases were."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        for name, value in variables.items():
            tf1.get_variable(name, initializer=tf.constant(value))
        step = tf1.train.get_or_create_global_step()
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(step.assign(global_step))
            saver.save(sess, prefix, write_meta_graph=False, write_state=False)


MODELS = {
    # folder: (config file, checkpoint base name, config, variable builder, seed)
    "bert-tiny": ("bert_config.json", "bert_model.ckpt", BERT_TINY, bert_variables, 1001),
    "xlnet-tiny": ("xlnet_config.json", "xlnet_model.ckpt", XLNET_TINY, xlnet_variables, 2001),
    "xlnet-tiny-tied": ("xlnet_config.json", "xlnet_model.ckpt", {**XLNET_TINY, "untie_r": False},
                        xlnet_variables, 2002),
}


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "golden", "checkpoints"))
    args = parser.parse_args(argv)
    import tensorflow as tf

    manifest = {"command": "python tools/make_checkpoints.py", "tensorflow": tf.__version__,
                "numpy": np.__version__, "weight_std": STD, "models": {}}
    for folder, (config_name, ckpt_name, config, build, seed) in MODELS.items():
        out = os.path.join(args.out, folder)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, config_name), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")
        save_v1_saver(build(config, seed), os.path.join(out, ckpt_name))
        files = sorted(os.listdir(out))
        manifest["models"][folder] = {
            "seed": seed,
            "files": {name: sha256(os.path.join(out, name)) for name in files},
        }
        print(f"wrote {out}: {', '.join(files)}")
    with open(os.path.join(args.out, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
