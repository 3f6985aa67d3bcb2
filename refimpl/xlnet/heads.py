"""XLNet's fine-tuning heads, function by function after zihangdai/xlnet function_builder.py
(get_classification_loss, get_regression_loss, get_race_loss, get_qa_outputs) and modeling.py
(summarize_sequence, multihead_attn, classification_loss, regression_loss).

    xlnet.sequence_summary(m, content, summary_type=None, use_summ_proj=None, attention_mask=None)
    xlnet.classification_logits(m, content, task=None, ...)   (b, n_class)
    xlnet.regression(m, content, task=None, ...)              (b,)
    xlnet.race_logits(m, content, attention_mask=None, n_choice=None, ...)   (b, n_choice)
    xlnet.squad_outputs(m, content, p_mask, cls_index=None, start_n_top=5, end_n_top=5,
                        start_positions=None)                 {original tensor name: array}
    xlnet.run_head(m, out, head, **inputs)                    {name: array}, for the CLI

`content` is `forward(...).content`, (b, l, D). The heads read `model.head_weights` under the
official names; `model.heads` lists the heads a checkpoint holds. summary_type None means what
the checkpoint implies ("attn" when it holds the attention summary's weights, else "last", the
original's flag default); use_summ_proj None means "when the checkpoint holds
sequnece_summary/summary/*" (a checkpoint with no head at all must say). attention_mask (b, l): 1 = real token, 0 = padding (the original's
input_mask is its complement); it acts in "attn" (padded keys masked) and "mean" (real tokens
averaged; without it every position is averaged, padding included, as the original does).

Axis legend: b batch, l sequence position (= j, key, in the summary attention), i summary query
(one), n head, d head dim, D model width, k start candidate (start_n_top), e end candidate
(end_n_top), c choice. Batch-major; the original is time-major ([l, b, ...]) with the same math.
"""
from __future__ import annotations

import math

import numpy as np

from refimpl import dialects, ops, precision
from refimpl.precision import stored
from refimpl.xlnet.attention import MASKED_SCORE_FLOAT16, head_projection, softmax_additive
from refimpl.xlnet.model import Output
from refimpl.xlnet.weights import XLNet, cast

SUMMARY_TYPES = ("last", "first", "mean", "attn")
MASKED_LOGIT = 1e30  # get_qa_outputs: logits * (1 - p_mask) - 1e30 * p_mask


# --- input checks ------------------------------------------------------------------------------
def _hidden(model: XLNet, hidden, name: str = "content") -> np.ndarray:
    hidden = np.asarray(hidden)
    D = model.config.d_model
    if hidden.ndim != 3 or hidden.shape[-1] != D or 0 in hidden.shape or \
            hidden.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} has shape {hidden.shape} and dtype {hidden.dtype}, expected "
                         f"float32/float64 of shape (batch, length, d_model = {D})")
    return hidden


def _zero_one(x, name: str, shape: tuple, meaning: str) -> np.ndarray:
    x = np.asarray(x)
    if x.shape != shape:
        raise ValueError(f"{name} has shape {x.shape}, expected (batch, length) = {shape}")
    if x.size and not np.isin(x, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1 ({meaning}), got values "
                         f"{np.unique(x)[:5].tolist()}")
    return x


def _positions(x, name: str, bsz: int, seq_len: int) -> np.ndarray:
    x = np.asarray(x)
    if x.shape != (bsz,) or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{name} has shape {x.shape} and dtype {x.dtype}, expected integers of "
                         f"shape (batch,) = ({bsz},)")
    if x.size and (x.min() < 0 or x.max() >= seq_len):
        raise ValueError(f"{name} {x.tolist()} out of range: expected 0 <= {name} < length "
                         f"{seq_len}")
    return x


def _weights(model: XLNet, part: str, dtype) -> dict:
    """The head weights of `part` ("squad", "race", "classification_imdb", ...) in `dtype`,
    keyed by their official names; a ValueError naming what the checkpoint holds otherwise."""
    if part not in model.heads:
        raise ValueError(f"{model.source} has no {part} head weights; it holds: "
                         f"{', '.join(model.heads) or 'no heads'}")
    return cast(model, precision.weights_dtype(dtype)).head_weights


def _task_part(model: XLNet, kind: str, task: str | None) -> str:
    """'classification_<task>' / 'regression_<task>'; task None: the checkpoint's only one."""
    tasks = [h[len(kind) + 1:] for h in model.heads if h.startswith(kind + "_")]
    if task is None:
        if len(tasks) != 1:
            raise ValueError(f"give task=: {model.source} holds {len(tasks)} {kind} tasks "
                             f"({', '.join(tasks) or 'none'})")
        task = tasks[0]
    if task not in tasks:
        raise ValueError(f"unknown {kind} task {task!r}: {model.source} holds "
                         f"model/{kind}_<task>/logit/* for tasks: {', '.join(tasks) or 'none'}")
    return f"{kind}_{task}"


# --- sequence summary (modeling.py summarize_sequence) ------------------------------------------
def abs_attn_core(q_head, k_head, v_head, attn_mask, scale) -> np.ndarray:
    """softmax(q k^T * scale - 1e30 * mask) v: q (b, i, n, d), k and v (b, j, n, d),
    mask (b, j) bool (True = padding) or None -> (b, i, n, d)."""
    attn_score = ops.attention_scores(q_head, k_head)  # einsum bind,bjnd->bnij
    attn_score *= scale
    if attn_mask is None:
        attn_prob = ops.softmax(attn_score, axis=-1, inplace=True)
    else:
        attn_prob = softmax_additive(attn_score, attn_mask[:, None, None, :])
    del attn_score  # overwritten by the softmax
    return ops.attention_values(attn_prob, v_head)  # einsum bnij,bjnd->bind


def multihead_attn(q, k, v, attn_mask, w: dict, scope: str, eps: float) -> np.ndarray:
    """Absolute-position multi-head attention, post-processed with residual=False (only the
    output projection and LayerNorm): q (b, i, D), k and v (b, j, D), mask (b, j) or None ->
    (b, i, D). Weights <scope>/{q,k,v,o}/kernel (D, n, d), <scope>/LayerNorm/*."""
    q_head = head_projection(q, w[f"{scope}/q/kernel"])
    k_head = head_projection(k, w[f"{scope}/k/kernel"])
    v_head = head_projection(v, w[f"{scope}/v/kernel"])
    scale = q.dtype.type(1.0 / math.sqrt(q_head.shape[-1]))
    attn_vec = abs_attn_core(q_head, k_head, v_head, attn_mask, scale)
    attn_out = np.einsum("bind,Dnd->biD", attn_vec, w[f"{scope}/o/kernel"], optimize=True)
    return ops.layer_norm(attn_out, w[f"{scope}/LayerNorm/gamma"], w[f"{scope}/LayerNorm/beta"], eps)


def summary_attn(model: XLNet, hidden: np.ndarray, input_mask, eps: float) -> np.ndarray:
    """summary_type "attn": the learned query summary_bias attends over the sequence:
    (b, l, D), mask (b, l) bool (True = padding) or None -> (b, D)."""
    w = _weights(model, "summary_attn", hidden.dtype)
    s = "model/sequnece_summary"
    summary_bias = np.broadcast_to(w[f"{s}/summary_bias"], (hidden.shape[0], 1, hidden.shape[2]))
    summary = multihead_attn(summary_bias, hidden, hidden, input_mask, w, f"{s}/abs_attn", eps)
    return summary[:, 0]


def _summary_type(model: XLNet, summary_type: str | None) -> str:
    if summary_type is None:
        return "attn" if "summary_attn" in model.heads else "last"
    if summary_type not in SUMMARY_TYPES:
        raise ValueError(f"summary_type {summary_type!r}: expected one of {', '.join(SUMMARY_TYPES)}")
    return summary_type


def _use_summ_proj(model: XLNet) -> bool:
    """use_summ_proj=None: True when the checkpoint holds the projection, False when it holds a
    head fine-tuned on the summary without one; a checkpoint with neither (pre-trained) has to
    say: the original's default, True, needs the projection's weights."""
    if "summary" in model.heads:
        return True
    if any(h.startswith(("classification_", "regression_")) or h == "race" for h in model.heads):
        return False
    raise ValueError(f"{model.source} has no model/sequnece_summary/summary/{{kernel,bias}} and "
                     "no fine-tuned head: pass use_summ_proj=False for the summary without the "
                     "projection")


def sequence_summary(model: XLNet, hidden, summary_type: str | None = None,
                     use_summ_proj: bool | None = None, attention_mask=None,
                     dialect="tf") -> np.ndarray:
    """summarize_sequence: pick the last position (= <cls> with XLNet's left padding), the
    first, the mean, or attend with summary_bias ("attn"); then, with use_summ_proj,
    tanh(dense) with model/sequnece_summary/summary (sic). (b, l, D) -> (b, D).

    "mean" without attention_mask averages every position (the original: padding included),
    with it only the real tokens; "attn" masks padded keys with attention_mask. The dialect
    gives the LayerNorm epsilon of "attn"."""
    hidden = _hidden(model, hidden, "hidden")
    summary_type = _summary_type(model, summary_type)
    if use_summ_proj is None:
        use_summ_proj = _use_summ_proj(model)
    input_mask = None
    if attention_mask is not None:
        input_mask = _zero_one(attention_mask, "attention_mask", hidden.shape[:2],
                               "1 = real token, 0 = padding") == 0
    if summary_type == "last":
        summary = hidden[:, -1]
    elif summary_type == "first":
        summary = hidden[:, 0]
    elif summary_type == "mean" and input_mask is None:
        summary = stored(hidden.mean(axis=1))
    elif summary_type == "mean":
        real = (~input_mask).astype(hidden.dtype)[:, :, None]
        summary = stored((hidden * real).sum(axis=1) / np.maximum(real.sum(axis=1), hidden.dtype.type(1)))
    else:
        summary = summary_attn(model, hidden, input_mask, dialects.get(dialect).layer_norm_eps)
    if use_summ_proj:
        if "summary" not in model.heads:
            raise ValueError(f"use_summ_proj=True, but {model.source} has no "
                             "model/sequnece_summary/summary/{kernel,bias} (a checkpoint "
                             "fine-tuned with use_summ_proj=False)")
        w = cast(model, precision.weights_dtype(hidden.dtype)).head_weights
        s = "model/sequnece_summary/summary"
        summary = stored(np.tanh(ops.dense(summary, w[f"{s}/kernel"], w[f"{s}/bias"])))
    return summary


# --- classification, regression, RACE ----------------------------------------------------------
def classification_logits(model: XLNet, content, task: str | None = None,
                          summary_type: str | None = None, use_summ_proj: bool | None = None,
                          attention_mask=None, dialect="tf") -> np.ndarray:
    """get_classification_loss' logits: the summary through model/classification_<task>/logit:
    (b, l, D) -> (b, n_class). task None: the checkpoint's only classification task."""
    content = _hidden(model, content)
    part = _task_part(model, "classification", task)
    summary = sequence_summary(model, content, summary_type, use_summ_proj, attention_mask, dialect)
    w = _weights(model, part, content.dtype)
    return ops.dense(summary, w[f"model/{part}/logit/kernel"], w[f"model/{part}/logit/bias"])


def regression(model: XLNet, content, task: str | None = None, summary_type: str | None = None,
               use_summ_proj: bool | None = None, attention_mask=None, dialect="tf") -> np.ndarray:
    """get_regression_loss' logits: the summary through model/regression_<task>/logit, squeezed:
    (b, l, D) -> (b,). task None: the checkpoint's only regression task."""
    content = _hidden(model, content)
    part = _task_part(model, "regression", task)
    summary = sequence_summary(model, content, summary_type, use_summ_proj, attention_mask, dialect)
    w = _weights(model, part, content.dtype)
    logits = ops.dense(summary, w[f"model/{part}/logit/kernel"], w[f"model/{part}/logit/bias"])
    return logits[:, 0]


def race_logits(model: XLNet, content, attention_mask=None, n_choice: int | None = None,
                summary_type: str | None = None, use_summ_proj: bool | None = None,
                dialect="tf") -> np.ndarray:
    """get_race_loss' logits, one score per choice: the summary of each (question, choice)
    sequence through logits/dense. content (b, c, l, D), or (b * c, l, D) with the choices of
    one example consecutive (the original's layout, c = n_choice, 4 in run_race.py when not
    given) -> (b, c). attention_mask: (b, c, l) or (b * c, l)."""
    content = np.asarray(content)
    if content.ndim == 4:
        if n_choice is not None and n_choice != content.shape[1]:
            raise ValueError(f"n_choice {n_choice} does not match content's shape {content.shape} "
                             "(batch, n_choice, length, d_model)")
        n_choice = content.shape[1]
        content = content.reshape((-1,) + content.shape[2:])
        if attention_mask is not None:
            attention_mask = np.asarray(attention_mask)
            attention_mask = attention_mask.reshape((-1,) + attention_mask.shape[2:])
    content = _hidden(model, content, "content (flattened to (batch * n_choice, length, d_model))")
    n_choice = 4 if n_choice is None else n_choice
    if isinstance(n_choice, bool) or not isinstance(n_choice, (int, np.integer)) or n_choice < 1 \
            or content.shape[0] % n_choice:
        raise ValueError(f"n_choice {n_choice!r}: expected a positive integer dividing the "
                         f"{content.shape[0]} sequences of content")
    summary = sequence_summary(model, content, summary_type, use_summ_proj, attention_mask, dialect)
    w = _weights(model, "race", content.dtype)
    logits = ops.dense(summary, w["logits/dense/kernel"], w["logits/dense/bias"])
    return logits.reshape(-1, n_choice)


# --- SQuAD (function_builder.py get_qa_outputs) -------------------------------------------------
def log_softmax(x: np.ndarray) -> np.ndarray:
    """x - max - log(sum(exp(x - max))) over the last axis, as tf.nn.log_softmax: (...) -> (...)."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return stored(shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True)))


def top_k(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """tf.nn.top_k over the last axis: the k largest, descending, ties by lower index first:
    (..., l) -> values (..., k), indices (..., k)."""
    index = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(x, index, axis=-1), index


def mask_logits(logits: np.ndarray, p_mask: np.ndarray) -> np.ndarray:
    """logits * (1 - p_mask) - 1e30 * p_mask: (..., l), p_mask broadcasting -> (..., l).
    65500 instead of 1e30 in an emulated float16 run, as transformers (1e30 overflows float16)."""
    one = logits.dtype.type(1)
    masked = MASKED_SCORE_FLOAT16 if precision.current() == "float16" else MASKED_LOGIT
    return stored(logits * (one - p_mask) - logits.dtype.type(masked) * p_mask)


def start_logits(output: np.ndarray, p_mask: np.ndarray, w: dict) -> np.ndarray:
    """Scope start_logits: dense to one logit per position, masked: (b, l, D) -> (b, l)."""
    logits = ops.dense(output, w["start_logits/dense/kernel"], w["start_logits/dense/bias"])
    return mask_logits(logits[..., 0], p_mask)


def end_logits(output: np.ndarray, start_features: np.ndarray, p_mask: np.ndarray, w: dict,
               eps: float) -> np.ndarray:
    """Scope end_logits: tanh(dense_0([h, start feature])), LayerNorm, dense_1, masked:
    output (b, l, D), start_features (b, l, D) -> (b, l), or with candidates
    (b, k, l, D), (b, k, l, D) -> (b, k, l)."""
    end_input = np.concatenate([output, start_features], axis=-1)
    hidden = stored(np.tanh(ops.dense(end_input, w["end_logits/dense_0/kernel"],
                                      w["end_logits/dense_0/bias"])))
    hidden = ops.layer_norm(hidden, w["end_logits/LayerNorm/gamma"], w["end_logits/LayerNorm/beta"], eps)
    logits = ops.dense(hidden, w["end_logits/dense_1/kernel"], w["end_logits/dense_1/bias"])
    return mask_logits(logits[..., 0], p_mask)


def answer_class(output: np.ndarray, start_p: np.ndarray, cls_index: np.ndarray,
                 w: dict) -> np.ndarray:
    """Scope answer_class (answerability): the <cls> feature and the start feature weighted by
    start_p, tanh(dense_0), dense_1 without bias: (b, l, D), (b, l), (b,) -> (b,)."""
    cls_feature = output[np.arange(output.shape[0]), cls_index]  # (b, D)
    start_feature = stored(np.einsum("blD,bl->bD", output, start_p, optimize=True))
    ans_feature = np.concatenate([start_feature, cls_feature], axis=-1)
    ans_feature = stored(np.tanh(ops.dense(ans_feature, w["answer_class/dense_0/kernel"],
                                           w["answer_class/dense_0/bias"])))
    return ops.dense(ans_feature, w["answer_class/dense_1/kernel"])[:, 0]


def squad_outputs(model: XLNet, content, p_mask, cls_index=None, start_n_top: int = 5,
                  end_n_top: int = 5, start_positions=None, dialect="tf",
                  trace: dict | None = None) -> dict[str, np.ndarray]:
    """get_qa_outputs: (b, l, D), p_mask (b, l) 1 = not an answer position -> the original's
    return_dict. At inference (start_positions None), the beam over start and end:
      start_top_log_probs (b, k), start_top_index (b, k)           k = start_n_top
      end_top_log_probs (b, k * e), end_top_index (b, k * e)       e = end_n_top
      cls_logits (b,)                                              answerability
    With start_positions (b,) (training): start_log_probs (b, l), end_log_probs (b, l) with the
    end conditioned on the given starts, cls_logits (b,).
    cls_index (b,): the <cls> position, None = the last (XLNet's <cls> with left padding).
    dialect "hf": the *_top_log_probs are softmax probabilities and the end beam is flattened
    end-major, as transformers' XLNetForQuestionAnswering returns them (fields squad_top_probs,
    squad_end_top_order). trace: filled with start_logits_masked (b, l), start_log_probs (b, l),
    end_logits_masked ((b, k, l) at inference, (b, l) in training)."""
    content = _hidden(model, content)
    d = dialects.get(dialect)
    if d.squad_top_probs not in ("log_softmax", "softmax") or \
            d.squad_end_top_order not in ("start_major", "end_major"):
        raise ValueError(f"dialect {d.name}: squad_top_probs {d.squad_top_probs!r} / "
                         f"squad_end_top_order {d.squad_end_top_order!r}, expected "
                         "'log_softmax' or 'softmax' / 'start_major' or 'end_major'")
    bsz, seq_len, _ = content.shape
    dtype = content.dtype
    p_mask = _zero_one(p_mask, "p_mask", (bsz, seq_len), "1 = not an answer position").astype(dtype)
    cls_index = np.full(bsz, seq_len - 1) if cls_index is None else \
        _positions(cls_index, "cls_index", bsz, seq_len)
    for name, k in (("start_n_top", start_n_top), ("end_n_top", end_n_top)):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= seq_len:
            raise ValueError(f"{name} {k!r}: expected an integer with 1 <= {name} <= length {seq_len}")
    w = _weights(model, "squad", dtype)
    output = content

    start_logits_masked = start_logits(output, p_mask, w)
    start_log_probs = log_softmax(start_logits_masked)
    if trace is not None:
        trace.update({"start_logits_masked": start_logits_masked, "start_log_probs": start_log_probs})
    return_dict = {}
    if start_positions is not None:  # training: the end conditioned on the true start
        start_positions = _positions(start_positions, "start_positions", bsz, seq_len)
        start_features = output[np.arange(bsz), start_positions]  # (b, D)
        start_features = np.broadcast_to(start_features[:, None], output.shape)
        end_logits_masked = end_logits(output, start_features, p_mask, w, d.layer_norm_eps)
        return_dict["start_log_probs"] = start_log_probs
        return_dict["end_log_probs"] = log_softmax(end_logits_masked)
    else:  # inference: the beam over start_n_top starts and end_n_top ends for each
        start_top_log_probs, start_top_index = top_k(start_log_probs, start_n_top)  # (b, k)
        start_features = output[np.arange(bsz)[:, None], start_top_index]  # (b, k, D)
        start_features = np.broadcast_to(start_features[:, :, None],
                                         (bsz, start_n_top, seq_len, output.shape[-1]))
        end_input = np.broadcast_to(output[:, None], start_features.shape)  # (b, k, l, D)
        end_logits_masked = end_logits(end_input, start_features, p_mask[:, None], w,
                                       d.layer_norm_eps)  # (b, k, l)
        end_log_probs = log_softmax(end_logits_masked)
        end_top_log_probs, end_top_index = top_k(end_log_probs, end_n_top)  # (b, k, e)
        if d.squad_top_probs == "softmax":  # transformers: probabilities under these names
            start_top_log_probs = np.take_along_axis(ops.softmax(start_logits_masked),
                                                     start_top_index, axis=-1)
            end_top_log_probs = np.take_along_axis(ops.softmax(end_logits_masked),
                                                   end_top_index, axis=-1)
        if d.squad_end_top_order == "end_major":  # transformers: (b, e, k) flattened
            end_top_log_probs = end_top_log_probs.transpose(0, 2, 1)
            end_top_index = end_top_index.transpose(0, 2, 1)
        return_dict["start_top_log_probs"] = start_top_log_probs
        return_dict["start_top_index"] = start_top_index
        return_dict["end_top_log_probs"] = end_top_log_probs.reshape(bsz, -1)
        return_dict["end_top_index"] = end_top_index.reshape(bsz, -1)
    if trace is not None:
        trace["end_logits_masked"] = end_logits_masked

    start_p = ops.softmax(start_logits_masked, axis=-1)
    return_dict["cls_logits"] = answer_class(output, start_p, cls_index, w)
    return return_dict


# --- one call per head, for the CLI and golden cases ------------------------------------------
HEADS = ("summary", "classification", "regression", "race", "squad")
HEAD_OPTIONS = ("task", "summary_type", "use_summ_proj", "n_choice", "start_n_top", "end_n_top")
HEAD_INPUTS = ("attention_mask", "p_mask", "cls_index", "start_positions")  # arrays


def run_head(model: XLNet, out, head: str, **inputs) -> dict[str, np.ndarray]:
    """The named tensors of one head, in order, from a forward Output (or its content array):
      "summary"         {"summary": (b, D)}
      "classification"  {"logits": (b, n_class)}     task= (default: the checkpoint's only one)
      "regression"      {"logits": (b,)}             task=
      "race"            {"logits": (b, n_choice)}    n_choice= (default 4)
      "squad"           squad_outputs' dict          p_mask= (default: 1 - attention_mask, or no
                                                     position masked), cls_index=, start_n_top=,
                                                     end_n_top=, start_positions=
    head may also be a part name of model.heads: "classification_<task>", "regression_<task>".
    inputs: HEAD_OPTIONS and HEAD_INPUTS (attention_mask, the forward's, is accepted by every
    head), and dialect=."""
    content = out.content if isinstance(out, Output) else out
    for kind in ("classification", "regression"):
        if head.startswith(kind + "_"):
            head, inputs = kind, {**inputs, "task": head[len(kind) + 1:]}
    if head == "summary":
        return {"summary": sequence_summary(model, content, **inputs)}
    if head == "classification":
        return {"logits": classification_logits(model, content, **inputs)}
    if head == "regression":
        return {"logits": regression(model, content, **inputs)}
    if head == "race":
        return {"logits": race_logits(model, content, **inputs)}
    if head == "squad":
        attention_mask = inputs.pop("attention_mask", None)
        if inputs.get("p_mask") is None:
            inputs["p_mask"] = (np.zeros(np.shape(content)[:2], np.int64) if attention_mask is None
                                else 1 - np.asarray(attention_mask))
        return squad_outputs(model, content, **inputs)
    raise ValueError(f"unknown head {head!r}; expected one of {', '.join(HEADS)} or a part of "
                     f"model.heads ({', '.join(model.heads) or 'none in this checkpoint'})")
