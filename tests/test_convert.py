"""refimpl.convert and loading of transformers folders: official TF checkpoint -> config.json +
model.safetensors -> transformers (AutoModelForPreTraining) and back to refimpl (bert.load /
xlnet.load), bit for bit. The float64 agreement of the converted models with refimpl, tensor by
tensor, is in test_capture.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from refimpl import bert, convert, xlnet

torch = pytest.importorskip("torch", reason="transformers needs PyTorch (the [test] extra)")
transformers = pytest.importorskip("transformers", reason="transformers (the [test] extra)")
safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="the [convert] extra")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "golden", "checkpoints")
torch.set_num_threads(1)
transformers.logging.set_verbosity_error()

MODELS = {"bert-tiny": ("BertForPreTraining", bert), "xlnet-tiny": ("XLNetLMHeadModel", xlnet),
          "xlnet-tiny-tied": ("XLNetLMHeadModel", xlnet)}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """{(checkpoint, dialect): folder} of every tiny checkpoint converted in both dialects."""
    out = {}
    for name in MODELS:
        for dialect in ("tf", "hf"):
            folder = tmp_path_factory.mktemp(f"{name}-{dialect}")
            convert.to_transformers(os.path.join(GOLDEN, name), folder, dialect=dialect)
            out[name, dialect] = str(folder)
    return out


def test_importing_convert_and_capture_loads_neither_torch_nor_safetensors():
    code = ("import sys, refimpl.convert, refimpl.capture, refimpl.loading; "
            "print(sorted({'torch', 'transformers', 'safetensors'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("dialect", ["tf", "hf"])
def test_transformers_loads_the_converted_folder_with_nothing_missing(converted, name, dialect):
    folder = converted[name, dialect]
    architecture, _ = MODELS[name]
    model, info = transformers.AutoModelForPreTraining.from_pretrained(folder, output_loading_info=True)
    assert type(model).__name__ == architecture
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    # the bare model: nothing missing; the pre-training heads are unexpected (transformers' way)
    bare, info = transformers.AutoModel.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"]
    heads = {n for n in safetensors_numpy.load_file(os.path.join(folder, "model.safetensors"))
             if n.startswith(("cls.", "lm_loss."))}
    assert set(info["unexpected_keys"]) == heads and heads
    # the default load (the dtype config.json names: float32) runs a forward
    assert model.dtype == torch.float32
    with torch.no_grad():
        out = model.eval()(torch.tensor([[5, 6, 7, 8]]))
    assert torch.isfinite(out[0]).all()
    config = json.load(open(os.path.join(folder, "config.json")))
    activation = config["hidden_act" if name.startswith("bert") else "ff_activation"]
    assert activation == {"tf": "gelu_new", "hf": "gelu"}[dialect]
    assert config["layer_norm_eps"] == 1e-12 and config["dtype"] == "float32"


def _xlnet_inputs(rng):
    ids = rng.integers(0, 100, (2, 6))
    perm = (rng.random((2, 6, 6)) < 0.4).astype(np.int64)
    mapping = np.zeros((2, 2, 6))
    mapping[:, 0, 1] = mapping[:, 1, 4] = 1
    return dict(token_ids=ids, segment_ids=rng.integers(0, 2, (2, 6)),
                attention_mask=np.array([[1] * 6, [0, 0, 1, 1, 1, 1]]), perm_mask=perm,
                target_mapping=mapping, mems=[rng.normal(size=(2, 3, 32)) for _ in range(3)],
                mem_len=4)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("dialect", ["tf", "hf"])
def test_loading_the_converted_folder_gives_bit_identical_weights_and_traces(converted, name, dialect):
    _, module = MODELS[name]
    original = module.load(os.path.join(GOLDEN, name))
    loaded = module.load(converted[name, dialect])
    assert loaded.config == original.config
    assert loaded.source.endswith("model.safetensors")
    rng = np.random.default_rng(7)
    if module is bert:
        ids = rng.integers(0, 100, (2, 7))
        inputs = dict(token_ids=ids, segment_ids=ids % 2,
                      attention_mask=np.array([[1] * 7, [1] * 5 + [0] * 2]))
    else:
        inputs = _xlnet_inputs(rng)
    traces = []
    for m in (original, loaded):
        trace = {}
        module.forward(m, **inputs, dialect=dialect, trace=trace)
        traces.append(trace)
    assert list(traces[0]) == list(traces[1]) and len(traces[0]) > 20
    for key in traces[0]:
        assert traces[0][key].dtype == traces[1][key].dtype
        assert np.array_equal(traces[0][key], traces[1][key]), key


def _rewrite(folder, out, change):
    """A copy of a transformers folder with its tensors changed by change(dict)."""
    shutil.copytree(folder, out)
    tensors = safetensors_numpy.load_file(os.path.join(folder, "model.safetensors"))
    change(tensors)
    safetensors_numpy.save_file(tensors, os.path.join(out, "model.safetensors"))
    return out


def test_missing_unknown_and_misshapen_names_are_listed_like_for_tf_checkpoints(converted, tmp_path):
    folder = converted["bert-tiny", "tf"]

    def damage(t):
        del t["bert.encoder.layer.1.attention.self.query.weight"]
        t["bert.encoder.layer.1.attention.self.extra.weight"] = np.zeros(3, np.float32)
        t["bert.encoder.layer.2.output.dense.bias"] = np.zeros(5, np.float32)
    with pytest.raises(ValueError) as error:
        bert.load(_rewrite(folder, tmp_path / "damaged", damage))
    message = str(error.value)
    assert "does not match" in message and "config.json" in message
    assert ("missing layer_1 variables: bert/encoder/layer_1/attention/self/query/kernel "
            "(bert.encoder.layer.1.attention.self.query.weight)") in message
    assert "unexpected variables: bert.encoder.layer.1.attention.self.extra.weight" in message
    assert ("bert/encoder/layer_2/output/dense/bias (bert.encoder.layer.2.output.dense.bias) has "
            "shape (5,), expected (32,) from config.json") in message


def test_tied_biases_whose_layer_copies_differ_are_refused(converted, tmp_path):
    def untie(t):
        t["transformer.layer.2.rel_attn.r_w_bias"] = t["transformer.layer.2.rel_attn.r_w_bias"] + 1
    folder = _rewrite(converted["xlnet-tiny-tied", "tf"], tmp_path / "untied", untie)
    with pytest.raises(ValueError, match=r"transformer.layer.2.rel_attn.r_w_bias differs from "
                                         r"transformer.layer.0.rel_attn.r_w_bias.*untie_r"):
        xlnet.load(folder)


def test_folders_saved_by_transformers_itself_load(converted, tmp_path):
    """save_pretrained of the bare models (names without the bert. / transformer. prefix), and
    the legacy LayerNorm.gamma / .beta names of older BERT files."""
    hf = transformers.AutoModel.from_pretrained(converted["bert-tiny", "tf"])
    hf.save_pretrained(tmp_path / "bert-bare")
    loaded = bert.load(tmp_path / "bert-bare")
    original = bert.load(os.path.join(GOLDEN, "bert-tiny"))
    assert loaded.mlm is None and loaded.nsp is None and loaded.pooler is not None
    for n in range(3):
        for key, value in original.layers[n].items():
            assert np.array_equal(loaded.layers[n][key], value), key

    def legacy(t):
        for key in [k for k in t if "LayerNorm" in k]:
            t[key.replace(".weight", ".gamma").replace(".bias", ".beta")] = t.pop(key)
    legacy_folder = _rewrite(converted["bert-tiny", "hf"], tmp_path / "legacy", legacy)
    assert np.array_equal(bert.load(legacy_folder).embeddings["LayerNorm/gamma"],
                          original.embeddings["LayerNorm/gamma"])

    hf = transformers.AutoModelForPreTraining.from_pretrained(converted["xlnet-tiny", "tf"])
    hf.save_pretrained(tmp_path / "xlnet-saved")
    loaded = xlnet.load(tmp_path / "xlnet-saved")
    assert np.array_equal(loaded.transformer["r_w_bias"],
                          xlnet.load(os.path.join(GOLDEN, "xlnet-tiny")).transformer["r_w_bias"])


def test_keras_dialect_is_refused_naming_the_fields(tmp_path):
    with pytest.raises(ValueError, match=r"dialect 'keras' cannot be expressed.*xlnet_mask='keras'"
                                         r".*clamp='nonnegative'.*query_excludes_self=True"):
        convert.to_transformers(os.path.join(GOLDEN, "xlnet-tiny"), tmp_path, dialect="keras")
    with pytest.raises(ValueError, match=r"bert_mask_from_token_zero=True.*heads='probs'"):
        convert.to_transformers(os.path.join(GOLDEN, "bert-tiny"), tmp_path, dialect="keras")
    assert not os.listdir(tmp_path)


def test_xlnet_with_d_head_transformers_cannot_express_is_refused(tmp_path):
    folder = tmp_path / "wide-heads"
    shutil.copytree(os.path.join(GOLDEN, "xlnet-tiny"), folder)
    config = json.load(open(folder / "xlnet_config.json"))
    config["d_head"] = 16  # n_head * d_head = 64 != d_model 32: refimpl runs it, transformers cannot
    json.dump(config, open(folder / "xlnet_config.json", "w"))
    with pytest.raises(ValueError, match=r"d_head 16 != d_model 32 // n_head 4"):
        convert.to_transformers(folder, tmp_path / "out")
    assert not os.path.exists(tmp_path / "out")


def test_a_transformers_folder_is_not_converted_again(converted, tmp_path):
    with pytest.raises(ValueError, match="expected an official checkpoint folder"):
        convert.to_transformers(converted["bert-tiny", "tf"], tmp_path)


def test_without_safetensors_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=r"pip install 'refimpl\[convert\]'"):
        convert.to_transformers(os.path.join(GOLDEN, "bert-tiny"), tmp_path)


def test_command_prints_a_summary_and_returns_exit_codes(tmp_path, capsys):
    assert convert.main(os.path.join(GOLDEN, "xlnet-tiny"), str(tmp_path / "x")) == 0
    out = capsys.readouterr().out
    assert "XLNetLMHeadModel, 54 tensors" in out and "from_pretrained" in out
    assert convert.main(os.path.join(GOLDEN, "xlnet-tiny"), str(tmp_path / "y"), "keras") == 2
    assert "refimpl convert: error: dialect 'keras'" in capsys.readouterr().err
    assert convert.main(str(tmp_path / "nowhere"), str(tmp_path / "z")) == 2


def test_name_tables_cover_every_official_name():
    """One table per model: every official name of the base model has exactly one place in
    transformers (or one per layer), and every transformers name one official source."""
    b = bert.load(os.path.join(GOLDEN, "bert-tiny"))
    table = bert.transformers_names(b.config)
    official = {n for part in bert._expected_names(b.config).values() for n in part}
    assert {o for o, _ in table.values()} == official
    model = transformers.BertForPreTraining(transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=16))
    tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    assert set(table) == set(model.state_dict()) - tied
    for untie in (True, False):
        c = xlnet.XLNetConfig(d_head=8, d_inner=64, d_model=32, ff_activation="gelu", n_head=4,
                              n_layer=3, n_token=100, untie_r=untie)
        table = xlnet.weights.transformers_names(c)
        official = {n for p, part in xlnet.weights.expected_names(c).items() if p != "summary" for n in part}
        assert {o for o, _ in table.values()} == official
        model = transformers.XLNetLMHeadModel(transformers.XLNetConfig(
            vocab_size=100, d_model=32, n_layer=3, n_head=4, d_inner=64, untie_r=untie))
        assert set(table) == set(model.state_dict()) - {"lm_loss.weight"}


@pytest.mark.skipif(not os.environ.get("REFIMPL_BASE_SIZE"),
                    reason="the real base size (~110M parameters, minutes on 2 cores): set "
                           "REFIMPL_BASE_SIZE=1; test_base_like_checkpoint_round_trips runs by default")
def test_base_size_checkpoint_round_trips(tmp_path):
    _round_trip_bench_checkpoints(tmp_path, layers=None, vocab=None)


def test_base_like_checkpoint_round_trips(tmp_path):
    """tools/bench.py's builder, with base widths (768, 12 heads of 64, inner 3072) but 2 layers
    and a 2000-token vocabulary, so that it takes seconds: convert, load in transformers with
    nothing missing, load back bit-identically, and the forward agrees (test_capture's float64
    bound, on a short input)."""
    _round_trip_bench_checkpoints(tmp_path, layers=2, vocab=2000)


def _round_trip_bench_checkpoints(tmp_path, layers, vocab):
    pytest.importorskip("tensorflow", reason="tools/bench.py's builder writes with TensorFlow")
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import bench
    from test_capture import rebuild_sinusoid_in_float64, scaled_errors

    for model, base_config, module in (("bert", bench.BERT_BASE, bert), ("xlnet", bench.XLNET_BASE, xlnet)):
        config = dict(base_config)
        if layers:
            config.update({"num_hidden_layers" if model == "bert" else "n_layer": layers,
                           "vocab_size" if model == "bert" else "n_token": vocab})
        folder = bench._build(str(tmp_path / "tf"), model, config, seed=7)
        out = tmp_path / f"{model}-hf"
        convert.to_transformers(folder, out)
        hf, info = transformers.AutoModelForPreTraining.from_pretrained(out, output_loading_info=True)
        assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"])
        original, loaded = module.load(folder), module.load(out)
        for i in (0, len(original.layers) - 1):
            for key, value in original.layers[i].items():
                assert np.array_equal(loaded.layers[i][key], value), key
        ids = np.random.default_rng(1).integers(0, config.get("vocab_size", config.get("n_token")), (1, 12))
        hf = hf.double().eval()
        with torch.no_grad():
            if model == "bert":
                theirs = hf.bert(torch.from_numpy(ids)).last_hidden_state.numpy()
                ours = bert.forward(loaded, ids).sequence
            else:
                rebuild_sinusoid_in_float64(hf)
                theirs = hf.transformer(torch.from_numpy(ids)).last_hidden_state.numpy()
                ours = xlnet.forward(loaded, ids).content
        assert scaled_errors({"out": ours}, {"out": theirs})["out"] <= 1e-12


HEADS = {"bert-tiny-classifier": "BertForSequenceClassification",
         "bert-tiny-squad": "BertForQuestionAnswering",
         "xlnet-tiny-regression": "XLNetForSequenceClassification",
         "xlnet-tiny-race": "XLNetForMultipleChoice",
         "xlnet-tiny-squad": "XLNetForQuestionAnswering"}


@pytest.mark.parametrize("name", HEADS)
def test_fine_tuned_heads_map_to_their_transformers_classes(name, tmp_path):
    result = convert.to_transformers(os.path.join(GOLDEN, name), tmp_path)
    assert result.architecture == HEADS[name]
    # run_squad's BERT has a pooler that BertForQuestionAnswering lacks: said, not written
    assert result.unmapped == (("bert/pooler/dense/bias", "bert/pooler/dense/kernel")
                               if name == "bert-tiny-squad" else ())
    model, info = getattr(transformers, HEADS[name]).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    module = bert if name.startswith("bert") else xlnet
    original, loaded = module.load(os.path.join(GOLDEN, name)), module.load(tmp_path)
    assert loaded.heads == original.heads and set(loaded.head_weights) == set(original.head_weights)
    for key, value in original.head_weights.items():
        assert np.array_equal(loaded.head_weights[key], value), key
    if name.startswith("bert"):  # the heads' logits, transformers float64 against refimpl's
        ids = np.random.default_rng(2).integers(0, 100, (2, 7))
        out = bert.forward(original, ids, ids % 2, dialect="tf")
        with torch.no_grad():
            theirs = model.double().eval()(torch.from_numpy(ids), token_type_ids=torch.from_numpy(ids % 2))
        if name == "bert-tiny-classifier":
            pairs = [(bert.classifier_logits(original, out.pooled), theirs.logits)]
        else:
            start, end = bert.squad_logits(original, out.sequence)
            pairs = [(start, theirs.start_logits), (end, theirs.end_logits)]
        for ours, hf in pairs:
            assert np.abs(ours - hf.numpy()).max() <= 1e-12 * max(1.0, np.abs(ours).max())
    else:  # the converted config (summary, labels, beam) must make transformers compute our head
        from test_capture import rebuild_sinusoid_in_float64
        model = model.double().eval()
        rebuild_sinusoid_in_float64(model)
        rng = np.random.default_rng(3)
        shape = (2, 4, 9) if name == "xlnet-tiny-race" else (3, 9)
        ids, segments = rng.integers(6, 100, shape), rng.integers(0, 2, shape)
        with torch.no_grad():
            kwargs = {}
            if name == "xlnet-tiny-squad":
                p_mask = (np.arange(9) < 2).astype(np.float64)[None].repeat(3, 0)  # the question
                cls_index = np.full(3, 8)
                kwargs = dict(p_mask=torch.from_numpy(p_mask), cls_index=torch.from_numpy(cls_index))
            theirs = model(torch.from_numpy(ids), token_type_ids=torch.from_numpy(segments), **kwargs)
        content = xlnet.forward(original, ids.reshape(-1, 9), segments.reshape(-1, 9)).content
        if name == "xlnet-tiny-regression":
            pairs = [(xlnet.regression(original, content), theirs.logits[:, 0])]
        elif name == "xlnet-tiny-race":
            pairs = [(xlnet.race_logits(original, content.reshape(2, 4, 9, -1)), theirs.logits)]
        else:  # transformers' beam: dialect "hf" (probabilities, end-major), its default tops
            ours = xlnet.squad_outputs(original, content, p_mask, cls_index, dialect="hf",
                                       start_n_top=model.config.start_n_top,
                                       end_n_top=model.config.end_n_top)
            pairs = [(ours[key], getattr(theirs, key)) for key in ours]
            assert set(ours) == {"start_top_log_probs", "start_top_index", "end_top_log_probs",
                                 "end_top_index", "cls_logits"}
        for ours, hf in pairs:
            assert ours.shape == tuple(hf.shape)
            assert np.abs(ours - hf.numpy()).max() <= 1e-12 * max(1.0, np.abs(ours).max())


def test_xlnet_attn_summary_is_refused(tmp_path):
    with pytest.raises(ValueError, match="summary_type 'attn'.*no 'attn' summary"):
        convert.to_transformers(os.path.join(GOLDEN, "xlnet-tiny-classifier"), tmp_path)
