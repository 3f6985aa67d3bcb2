"""BERT forward pass in NumPy, function by function after google-research/bert modeling.py.

    b = bert.load("golden/checkpoints/bert-tiny")
    o = bert.forward(b, token_ids, segment_ids=None, attention_mask=None, dialect="tf",
                     dtype=np.float64, trace=None)
    o.sequence (B, F, D)   o.pooled (B, D)   o.mlm_logits (B, F, V)   o.nsp_logits (B, 2)
    o.mlm_probs, o.nsp_probs: softmax of the logits (what keras-bert outputs)
    fine-tuned checkpoints (b.heads lists what one holds): bert.classifier_logits(b, o.pooled)
    (B, num_labels), bert.squad_logits(b, o.sequence) -> (start (B, F), end (B, F)),
    bert.run_head(b, o, "classifier" | "squad") -> {name: array}

Axis legend (as in modeling.py): B batch, F "from" (query) position, T "to" (key) position,
N attention heads, H head size, D hidden width (N * H), I intermediate width, V vocabulary.

`trace`, when a dict, is filled with named intermediates under keras-bert's layer names, in the
order they are computed: `Embedding-Token`, `Embedding-Segment`, `Embedding-Token-Segment`,
`Embedding-Position` (token + segment + position embeddings: keras-bert's layer output, before
LayerNorm), `Embedding-Norm`, per layer k (1-based = layer_<k-1>)
`Encoder-k-MultiHeadSelfAttention/scores` (scaled by 1/sqrt(H), mask bias added), `/prob`,
`Encoder-k-MultiHeadSelfAttention` (the output projection), its `-Norm`, `Encoder-k-FeedForward`,
its `-Norm`; then `MLM-Dense`, `MLM-Norm`, `MLM-Sim`, `Extract` (the first token), `NSP-Dense`
(the pooler), `NSP`. `MLM-Sim` and `NSP` hold logits or probabilities as the dialect's `heads`
says.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from refimpl import dialects, loading, ops, precision
from refimpl.precision import stored

CONFIG_FILE = "bert_config.json"
CHECKPOINT_FILE = "bert_model.ckpt"


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str
    max_position_embeddings: int
    type_vocab_size: int

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_json(cls, path: str) -> "BertConfig":
        # official configs also hold dropout and initializer settings: extra keys are fine
        config = loading.read_config(cls, path, exact_keys=False)
        try:
            ops.activation(config.hidden_act, "tanh")
        except ValueError as e:
            raise ValueError(f"{path}: hidden_act: {e}") from None
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"{path}: hidden_size {config.hidden_size} is not a multiple of "
                             f"num_attention_heads {config.num_attention_heads}")
        return config


@dataclasses.dataclass(frozen=True, eq=False)
class Bert:
    """Weights in dicts keyed by their checkpoint names relative to each scope."""
    config: BertConfig
    embeddings: dict  # bert/embeddings/{word_embeddings, token_type_embeddings, position_embeddings, LayerNorm/*}
    layers: tuple  # bert/encoder/layer_N/{attention/self/query/kernel, ...}
    pooler: dict | None  # bert/pooler/dense/{kernel, bias}
    mlm: dict | None  # cls/predictions/{transform/dense/*, transform/LayerNorm/*, output_bias}
    nsp: dict | None  # cls/seq_relationship/{output_weights, output_bias}
    skipped: tuple = ()  # checkpoint names not used (global_step, optimizer slots, ...)
    source: str = ""
    # the heads the checkpoint holds: "mlm", "nsp", "classifier" (run_classifier.py), "squad"
    # (run_squad.py)
    heads: tuple = ()
    # the fine-tuning heads' weights by official name: output_weights [num_labels, D],
    # output_bias, cls/squad/output_weights [2, D], cls/squad/output_bias
    head_weights: dict = dataclasses.field(default_factory=dict)


# --- loading -------------------------------------------------------------------------------
def _expected_names(c: BertConfig) -> dict[str, dict[str, tuple[int, ...]]]:
    """Every official variable name, grouped by part, with its shape."""
    D, I, V = c.hidden_size, c.intermediate_size, c.vocab_size
    norm = lambda scope: {f"{scope}/LayerNorm/gamma": (D,), f"{scope}/LayerNorm/beta": (D,)}  # noqa: E731
    parts = {"embeddings": {
        "bert/embeddings/word_embeddings": (V, D),
        "bert/embeddings/token_type_embeddings": (c.type_vocab_size, D),
        "bert/embeddings/position_embeddings": (c.max_position_embeddings, D),
        **norm("bert/embeddings")}}
    for n in range(c.num_hidden_layers):
        p = f"bert/encoder/layer_{n}"
        parts[f"layer_{n}"] = {
            **{f"{p}/attention/self/{w}/kernel": (D, D) for w in ("query", "key", "value")},
            **{f"{p}/attention/self/{w}/bias": (D,) for w in ("query", "key", "value")},
            f"{p}/attention/output/dense/kernel": (D, D), f"{p}/attention/output/dense/bias": (D,),
            **norm(f"{p}/attention/output"),
            f"{p}/intermediate/dense/kernel": (D, I), f"{p}/intermediate/dense/bias": (I,),
            f"{p}/output/dense/kernel": (I, D), f"{p}/output/dense/bias": (D,),
            **norm(f"{p}/output")}
    parts["pooler"] = {"bert/pooler/dense/kernel": (D, D), "bert/pooler/dense/bias": (D,)}
    parts["mlm"] = {"cls/predictions/transform/dense/kernel": (D, D),
                    "cls/predictions/transform/dense/bias": (D,),
                    **norm("cls/predictions/transform"), "cls/predictions/output_bias": (V,)}
    parts["nsp"] = {"cls/seq_relationship/output_weights": (2, D),
                    "cls/seq_relationship/output_bias": (2,)}
    return parts


def transformers_names(c: BertConfig) -> dict[str, tuple[str, str]]:
    """The name table shared by loading, convert and capture: each name of transformers'
    BertForPreTraining state dict -> (official name, how the array is stored there): "=" as is,
    "T" transposed (torch Linear weights are [out, in], TF kernels [in, out]; NSP's
    output_weights is [out, in] already). transformers ties cls.predictions.decoder.weight to
    the word embeddings and decoder.bias to cls.predictions.bias: those copies are not listed."""
    table = {"bert.embeddings.word_embeddings.weight": ("bert/embeddings/word_embeddings", "="),
             "bert.embeddings.token_type_embeddings.weight": ("bert/embeddings/token_type_embeddings", "="),
             "bert.embeddings.position_embeddings.weight": ("bert/embeddings/position_embeddings", "="),
             "bert.embeddings.LayerNorm.weight": ("bert/embeddings/LayerNorm/gamma", "="),
             "bert.embeddings.LayerNorm.bias": ("bert/embeddings/LayerNorm/beta", "=")}
    dense = lambda ours, theirs: {f"{theirs}.weight": (f"{ours}/kernel", "T"),  # noqa: E731
                                  f"{theirs}.bias": (f"{ours}/bias", "=")}
    norm = lambda ours, theirs: {f"{theirs}.weight": (f"{ours}/gamma", "="),  # noqa: E731
                                 f"{theirs}.bias": (f"{ours}/beta", "=")}
    for n in range(c.num_hidden_layers):
        p, q = f"bert/encoder/layer_{n}", f"bert.encoder.layer.{n}"
        for w in ("query", "key", "value"):
            table.update(dense(f"{p}/attention/self/{w}", f"{q}.attention.self.{w}"))
        table.update({**dense(f"{p}/attention/output/dense", f"{q}.attention.output.dense"),
                      **norm(f"{p}/attention/output/LayerNorm", f"{q}.attention.output.LayerNorm"),
                      **dense(f"{p}/intermediate/dense", f"{q}.intermediate.dense"),
                      **dense(f"{p}/output/dense", f"{q}.output.dense"),
                      **norm(f"{p}/output/LayerNorm", f"{q}.output.LayerNorm")})
    table.update({**dense("bert/pooler/dense", "bert.pooler.dense"),
                  **dense("cls/predictions/transform/dense", "cls.predictions.transform.dense"),
                  **norm("cls/predictions/transform/LayerNorm", "cls.predictions.transform.LayerNorm"),
                  "cls.predictions.bias": ("cls/predictions/output_bias", "="),
                  "cls.seq_relationship.weight": ("cls/seq_relationship/output_weights", "="),
                  "cls.seq_relationship.bias": ("cls/seq_relationship/output_bias", "=")})
    return table


OPTIONAL_PARTS = ("pooler", "mlm", "nsp")


def head_names(c: BertConfig, shapes: dict) -> dict[str, dict[str, tuple[int, ...]]]:
    """The fine-tuning heads' official names and shapes, each optional as a whole:
    "classifier" (run_classifier.py create_model: output_weights [num_labels, D], output_bias,
    num_labels read from the checkpoint's shapes {name: shape}) and "squad" (run_squad.py:
    cls/squad/output_weights [2, D], cls/squad/output_bias [2])."""
    D = c.hidden_size
    parts = {"squad": {"cls/squad/output_weights": (2, D), "cls/squad/output_bias": (2,)}}
    if "output_weights" in shapes or "output_bias" in shapes:
        shape = tuple(shapes["output_bias"] if "output_bias" in shapes else shapes["output_weights"])
        num_labels = int(shape[0]) if shape else 1
        parts["classifier"] = {"output_weights": (num_labels, D), "output_bias": (num_labels,)}
    return parts


def transformers_head_names(heads) -> tuple[str, dict[str, tuple[str, str]]]:
    """The transformers class for the fine-tuning head a checkpoint holds (head parts as in
    head_names), and the head's names in the name table's form: "classifier" ->
    BertForSequenceClassification, "squad" -> BertForQuestionAnswering; ("", {}) for none."""
    if "classifier" in heads:
        return "BertForSequenceClassification", {"classifier.weight": ("output_weights", "="),
                                                 "classifier.bias": ("output_bias", "=")}
    if "squad" in heads:
        return "BertForQuestionAnswering", {"qa_outputs.weight": ("cls/squad/output_weights", "="),
                                            "qa_outputs.bias": ("cls/squad/output_bias", "=")}
    return "", {}


def _skippable(name: str) -> bool:
    """Known variables refimpl does not use: the step counter and the optimizer state
    (AdamWeightDecayOptimizer's <var>/adam_m, <var>/adam_v; tf.train.AdamOptimizer's <var>/Adam,
    <var>/Adam_1, beta1_power, beta2_power)."""
    return (name in ("global_step", "beta1_power", "beta2_power")
            or name.endswith(("/adam_m", "/adam_v", "/Adam", "/Adam_1")))


def load(path, verify: bool = True, dtype=None) -> Bert:
    """Load a BERT model directory (bert_config.json + bert_model.ckpt.*) or checkpoint prefix,
    or a transformers folder (config.json + model.safetensors, names mapped back through
    transformers_names: the same weights as the checkpoint it was converted from).
    dtype: None keeps the checkpoint's (float32 for the official releases); "float64" reads the
    weights into float64 one tensor at a time, so that float64 forwards use them as they are
    instead of keeping a float64 copy beside them (BERT-base, L=512: peak RSS 1360 -> 941 MiB).

    Every official name is mapped explicitly and its shape checked against the config. The heads
    (pooler, MLM, NSP) may be absent as a whole; anything else missing, any unknown name, or a
    wrong shape is a ValueError listing the names. Known unused names are listed in `.skipped`."""
    v = loading.read_variables(path, "bert", CONFIG_FILE, CHECKPOINT_FILE, BertConfig.from_json,
                               verify, dtype)
    config = v.config
    heads = head_names(config, {name: value.shape for name, value in v.values.items()})
    present, skipped = loading.match_variables(v.values, {**_expected_names(config), **heads},
                                               OPTIONAL_PARTS + tuple(heads),
                                               v.skippable(_skippable), v.config_file, v.where,
                                               v.aliases)
    held = tuple(part for part in ("mlm", "nsp", *heads) if present[part])

    def strip(part: dict, scope: str) -> dict | None:
        return loading.strip_scope(part, scope) or None

    return Bert(
        config=config,
        embeddings=strip(present["embeddings"], "bert/embeddings"),
        layers=tuple(strip(present[f"layer_{n}"], f"bert/encoder/layer_{n}")
                     for n in range(config.num_hidden_layers)),
        pooler=strip(present["pooler"], "bert/pooler"),
        mlm=strip(present["mlm"], "cls/predictions"),
        nsp=strip(present["nsp"], "cls/seq_relationship"),
        skipped=skipped, source=v.source, heads=held,
        head_weights={name: value for part in heads for name, value in present[part].items()})


def cast(model: Bert, dtype) -> Bert:
    """The model with every weight in `dtype` (cast once, cached per model and dtype)."""
    return loading.cast_weights(model, dtype)


# --- the operations ------------------------------------------------------------------------
def embedding_lookup(input_ids: np.ndarray, word_embeddings: np.ndarray) -> np.ndarray:
    """(B, F) ids, (V, D) -> (B, F, D)."""
    return ops.embedding_lookup(word_embeddings, input_ids, "token id")


def embedding_postprocessor(word: np.ndarray, token_type_ids: np.ndarray, w: dict, eps: float,
                            trace: dict | None = None) -> np.ndarray:
    """Token + token-type + position embeddings, then LayerNorm: (B, F, D) -> (B, F, D).

    The position embedding is the table's first F rows, as the original slices
    position_embeddings[0:seq_length] after asserting F <= max_position_embeddings."""
    seq_len, max_positions = word.shape[1], w["position_embeddings"].shape[0]
    if seq_len > max_positions:
        raise ValueError(f"sequence length {seq_len} is longer than max_position_embeddings "
                         f"{max_positions} of this model")
    token_type = ops.embedding_lookup(w["token_type_embeddings"], token_type_ids, "segment id")
    summed = stored(word + token_type)
    with_positions = stored(summed + w["position_embeddings"][:seq_len][None])
    out = ops.layer_norm(with_positions, w["LayerNorm/gamma"], w["LayerNorm/beta"], eps)
    if trace is not None:
        trace.update({"Embedding-Segment": token_type, "Embedding-Token-Segment": summed,
                      "Embedding-Position": with_positions, "Embedding-Norm": out})
    return out


def attention_mask_bias(mask: np.ndarray, dialect: dialects.Dialect, dtype,
                        storage: str | None = None) -> np.ndarray | None:
    """Additive bias for padded keys: (B, T) 1 = attend, 0 = padding -> (B, 1, 1, T), or None
    when no key is padded (adding zeros would change nothing).

    -10000 (TF, Keras): a fully padded row then attends as if unmasked (all scores shift by the
    same amount). finfo.min (transformers): a fully padded row becomes uniform; of the storage
    format when emulating one ("bfloat16", "float16"), as transformers takes it of the model's."""
    if mask.all():
        return None
    blocked = dtype.type(1.0) - mask.astype(dtype)
    return (blocked * dialect.bert_mask_value(dtype, storage))[:, None, None, :]


def attention_layer(x: np.ndarray, mask_bias: np.ndarray, w: dict, num_heads: int,
                    trace: dict | None = None, name: str = "") -> np.ndarray:
    """Multi-head self-attention with output projection: (B, F, D) -> (B, F, D).

    scores = (x Wq + bq)(x Wk + bk)^T / sqrt(H) + mask_bias; context = softmax(scores)(x Wv + bv);
    out = context Wo + bo. Without a trace the heads are attended a block at a time
    (ops.head_blocks): the same numbers, with each block's scores kept in cache."""
    B, F, D = x.shape
    H = D // num_heads
    heads = lambda part: ops.dense(x, w[f"attention/self/{part}/kernel"],  # noqa: E731
                                   w[f"attention/self/{part}/bias"], part).reshape(B, F, num_heads, H)
    q, k, v = heads("query"), heads("key"), heads("value")
    if trace is not None:  # the trace holds whole (B, N, F, T) scores and probs
        context = scaled_dot_product_attention(q, k, v, mask_bias, trace, name)
    else:
        context = ops.scratch("context", q.shape, q.dtype)
        for seq, hs in ops.head_blocks(B, num_heads, F * F * x.itemsize):
            context[seq, :, hs] = scaled_dot_product_attention(
                q[seq, :, hs], k[seq, :, hs], v[seq, :, hs],
                None if mask_bias is None else mask_bias[seq])
    context = context.reshape(B, F, D)
    out = ops.dense(context, w["attention/output/dense/kernel"], w["attention/output/dense/bias"])
    if trace is not None:
        trace[name] = out
    return out


def scaled_dot_product_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray,
                                 mask_bias: np.ndarray | None, trace: dict | None = None,
                                 name: str = "") -> np.ndarray:
    """softmax(q k^T / sqrt(H) + mask_bias) v, the middle of modeling.py's attention_layer:
    (B, F, N, H), (B, T, N, H), (B, T, N, H), (B, 1, 1, T) or None -> (B, F, N, H).
    Traces <name>/scores (scaled, mask added) and <name>/prob."""
    scores = ops.attention_scores(q, k, "scores")  # einsum BFNH,BTNH->BNFT
    scores *= q.dtype.type(1.0 / math.sqrt(q.shape[-1]))
    if mask_bias is not None:
        scores += mask_bias
    scores = stored(scores)  # emulated 16 bits: scaled and masked in one rounding
    if trace is not None:  # each entry where it is computed
        trace[f"{name}/scores"] = scores
    probs = ops.softmax(scores, axis=-1)  # a new array: scores keeps its meaning
    if trace is not None:
        trace[f"{name}/prob"] = probs
    return ops.attention_values(probs, v)  # einsum BNFT,BTNH->BFNH


def transformer_layer(x: np.ndarray, mask_bias: np.ndarray, w: dict, config: BertConfig,
                      dialect: dialects.Dialect, trace: dict | None, index: int) -> np.ndarray:
    """One encoder layer (post-LayerNorm): (B, F, D) -> (B, F, D)."""
    name = f"Encoder-{index + 1}"
    eps = dialect.layer_norm_eps
    attention = attention_layer(x, mask_bias, w, config.num_attention_heads, trace,
                                f"{name}-MultiHeadSelfAttention")
    x = ops.layer_norm(stored(attention + x), w["attention/output/LayerNorm/gamma"],
                       w["attention/output/LayerNorm/beta"], eps)
    act = ops.activation(config.hidden_act, dialect.gelu)
    intermediate = act(ops.dense(x, w["intermediate/dense/kernel"], w["intermediate/dense/bias"],
                                 "intermediate/dense"))
    ffn = ops.dense(intermediate, w["output/dense/kernel"], w["output/dense/bias"])
    out = ops.layer_norm(stored(ffn + x), w["output/LayerNorm/gamma"], w["output/LayerNorm/beta"], eps)
    if trace is not None:
        trace.update({f"{name}-MultiHeadSelfAttention-Norm": x, f"{name}-FeedForward": ffn,
                      f"{name}-FeedForward-Norm": out})
    return out


def pooler(sequence: np.ndarray, w: dict) -> np.ndarray:
    """tanh(dense(first token)): (B, F, D) -> (B, D)."""
    return stored(np.tanh(ops.dense(sequence[:, 0], w["dense/kernel"], w["dense/bias"])))


def mlm_logits(sequence: np.ndarray, w: dict, word_embeddings: np.ndarray, config: BertConfig,
               dialect: dialects.Dialect, trace: dict | None = None) -> np.ndarray:
    """Masked-LM head: dense + activation + LayerNorm, then the tied embedding and output_bias:
    (B, F, D) -> (B, F, V)."""
    act = ops.activation(config.hidden_act, dialect.gelu)
    dense = act(ops.dense(sequence, w["transform/dense/kernel"], w["transform/dense/bias"]))
    normed = ops.layer_norm(dense, w["transform/LayerNorm/gamma"], w["transform/LayerNorm/beta"],
                            dialect.layer_norm_eps)
    if trace is not None:
        trace.update({"MLM-Dense": dense, "MLM-Norm": normed})
    logits = stored(normed @ word_embeddings.T + w["output_bias"])
    if trace is not None:  # keras-bert's MLM-Sim outputs probabilities (dialect "keras")
        trace["MLM-Sim"] = ops.softmax(logits) if dialect.heads == "probs" else logits
    return logits


def nsp_logits(pooled: np.ndarray, w: dict) -> np.ndarray:
    """Next-sentence head, label 0 = IsNext: (B, D), W (2, D) -> (B, 2)."""
    return stored(pooled @ w["output_weights"].T + w["output_bias"])


# --- the model -----------------------------------------------------------------------------
class BertOutput:
    """Outputs of `forward`. Heads the checkpoint lacks raise ValueError when asked for.

    `mlm_logits` is computed on first access (it is the costliest product of the model,
    L x D x vocab), unless `forward` was given a trace, which records everything. `storage`:
    the emulated 16-bit format of the forward (None for float32/float64), which the lazily
    computed heads keep."""

    def __init__(self, sequence, pooled, mlm_logits, nsp_logits, source, storage=None):
        self.sequence = sequence
        self._pooled, self._mlm, self._nsp, self._source = pooled, mlm_logits, nsp_logits, source
        self.storage = storage

    def _need(self, value, what: str, names: str):
        if value is None:
            raise ValueError(f"the checkpoint {self._source} has no {what} ({names})")
        return value

    @property
    def pooled(self) -> np.ndarray:
        return self._need(self._pooled, "pooler", "bert/pooler/dense/*")

    @property
    def mlm_logits(self) -> np.ndarray:
        if callable(self._mlm):
            with precision.storage(self.storage):
                self._mlm = self._mlm()
        return self._need(self._mlm, "masked-LM head", "cls/predictions/*")

    @property
    def nsp_logits(self) -> np.ndarray:
        return self._need(self._nsp, "next-sentence head", "cls/seq_relationship/*")

    @property
    def mlm_probs(self) -> np.ndarray:
        logits = self.mlm_logits
        with precision.storage(self.storage):
            return ops.softmax(logits)

    @property
    def nsp_probs(self) -> np.ndarray:
        with precision.storage(self.storage):
            return ops.softmax(self.nsp_logits)


def _check_inputs(model: Bert, token_ids, segment_ids, attention_mask):
    token_ids = np.asarray(token_ids)
    if token_ids.ndim != 2:
        raise ValueError(f"token_ids must have shape (batch, length), got {token_ids.shape}")
    if token_ids.shape[1] == 0:
        raise ValueError("token_ids has length 0: expected at least one token")
    segment_ids = np.zeros_like(token_ids) if segment_ids is None else np.asarray(segment_ids)
    if segment_ids.shape != token_ids.shape:
        raise ValueError(f"segment_ids shape {segment_ids.shape} does not match token_ids shape "
                         f"{token_ids.shape}")
    if attention_mask is not None:
        attention_mask = np.asarray(attention_mask)
        if attention_mask.shape != token_ids.shape:
            raise ValueError(f"attention_mask shape {attention_mask.shape} does not match "
                             f"token_ids shape {token_ids.shape}")
        if not np.isin(attention_mask, (0, 1)).all():
            raise ValueError("attention_mask must hold only 0 (padding) and 1 (real token), got "
                             f"values {np.unique(attention_mask)[:5].tolist()}")
    return token_ids, segment_ids, attention_mask


def forward(model: Bert, token_ids, segment_ids=None, attention_mask=None, dialect="tf",
            dtype=np.float64, trace: dict | None = None) -> BertOutput:
    """The BERT forward pass: (B, F) token ids -> BertOutput. See the module docstring.
    dtype: float64, float32, or "bfloat16" / "float16" emulated (refimpl/precision.py: float32
    arithmetic, every stored value rounded to 16 bits; outputs are float32 arrays)."""
    d = dialects.get(dialect)
    dtype, storage = precision.resolve(dtype)
    token_ids, segment_ids, attention_mask = _check_inputs(model, token_ids, segment_ids, attention_mask)
    with precision.storage(storage), ops.workspace(active=trace is None):
        return _forward(model, token_ids, segment_ids, attention_mask, d, dtype, storage, trace)


def _forward(model, token_ids, segment_ids, attention_mask, d, dtype, storage, trace):
    m = cast(model, storage or dtype)
    mask = np.ones(token_ids.shape, dtype) if attention_mask is None else attention_mask.astype(dtype)
    if d.bert_mask_from_token_zero:  # keras-bert: Embedding-Token has mask_zero=True
        mask = mask * (token_ids != 0).astype(dtype)
    mask_bias = attention_mask_bias(mask, d, dtype, storage)

    word = embedding_lookup(token_ids, m.embeddings["word_embeddings"])
    if trace is not None:
        trace["Embedding-Token"] = word
    x = embedding_postprocessor(word, segment_ids, m.embeddings, d.layer_norm_eps, trace)
    for index, w in enumerate(m.layers):
        x = transformer_layer(x, mask_bias, w, m.config, d, trace, index)
    sequence = x

    # the heads in keras-bert's network order, each traced where it is computed
    pooled = nsp = mlm = None
    if m.mlm is not None:
        def compute_mlm():
            return mlm_logits(sequence, m.mlm, m.embeddings["word_embeddings"], m.config, d, trace)
        mlm = compute_mlm() if trace is not None else compute_mlm
    if trace is not None:
        trace["Extract"] = sequence[:, 0]
    if m.pooler is not None:
        pooled = pooler(sequence, m.pooler)
        if trace is not None:
            trace["NSP-Dense"] = pooled
    if m.nsp is not None and pooled is not None:
        nsp = nsp_logits(pooled, m.nsp)
        if trace is not None:
            trace["NSP"] = ops.softmax(nsp) if d.heads == "probs" else nsp
    return BertOutput(sequence, pooled, mlm, nsp, m.source, storage)


# --- fine-tuning heads (google-research/bert run_classifier.py, run_squad.py) ---------------
def _head_weights(model: Bert, part: str, names: str, x: np.ndarray, shape_text: str) -> dict:
    """The weights of head `part` in x's dtype, after checking x (float, last axis D)."""
    if x.dtype.kind != "f" or x.shape[-1:] != (model.config.hidden_size,):
        raise ValueError(f"expected floats of shape {shape_text} with D = hidden_size "
                         f"{model.config.hidden_size}, got shape {x.shape} and dtype {x.dtype}")
    if part not in model.heads:
        raise ValueError(f"{model.source} has no {part} head ({names}); it holds: "
                         f"{', '.join(model.heads) or 'no heads'}")
    return cast(model, precision.weights_dtype(x.dtype)).head_weights


def classifier_logits(model: Bert, pooled) -> np.ndarray:
    """run_classifier.py create_model: pooled output_weights^T + output_bias:
    (B, D), output_weights (num_labels, D) -> (B, num_labels)."""
    pooled = np.asarray(pooled)
    if pooled.ndim != 2:
        raise ValueError(f"pooled has shape {pooled.shape}, expected (batch, hidden_size)")
    w = _head_weights(model, "classifier", "output_weights, output_bias", pooled, "(B, D)")
    return stored(pooled @ w["output_weights"].T + w["output_bias"])


def squad_logits(model: Bert, sequence) -> tuple[np.ndarray, np.ndarray]:
    """run_squad.py create_model: sequence cls/squad/output_weights^T + cls/squad/output_bias,
    split into start and end logits: (B, F, D) -> ((B, F), (B, F)) (no masking: run_squad.py
    leaves it to the answer search)."""
    sequence = np.asarray(sequence)
    if sequence.ndim != 3:
        raise ValueError(f"sequence has shape {sequence.shape}, expected (batch, length, hidden_size)")
    w = _head_weights(model, "squad", "cls/squad/*", sequence, "(B, F, D)")
    logits = stored(sequence @ w["cls/squad/output_weights"].T + w["cls/squad/output_bias"])  # (B, F, 2)
    return logits[..., 0], logits[..., 1]


HEADS = ("classifier", "squad")


def run_head(model: Bert, out, head: str) -> dict[str, np.ndarray]:
    """The named tensors of one fine-tuning head from a forward BertOutput, in order:
    "classifier" {"logits": (B, num_labels)}, "squad" {"start_logits": (B, F), "end_logits": (B, F)}."""
    if head == "classifier":
        return {"logits": classifier_logits(model, out.pooled)}
    if head == "squad":
        start, end = squad_logits(model, out.sequence)
        return {"start_logits": start, "end_logits": end}
    raise ValueError(f"unknown head {head!r}; expected one of {', '.join(HEADS)} (this "
                     f"checkpoint holds: {', '.join(model.heads) or 'no heads'})")
