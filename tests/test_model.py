"""The performance model: features of hand-checked calls, exact fits, fine-tuning, serialisation, the shipped model."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from tasobuild.costs.features import (
    CONV_NAMES,
    GENERIC_NAMES,
    feature_names,
    features,
    log2p,
)
from tasobuild.costs.model import (
    CostModel,
    Sample,
    dtype_of,
    errors,
    read_samples,
    shared_slopes,
    train,
    variant_of,
    with_row_range,
    write_samples,
)
from tasobuild.ir import Activation, Graph, Node, Shape, attrs
from tasobuild.primitives import KernelCall
from tasobuild.primitives.registry import library


def conv_graph(c: int, h: int, m: int, k: int, stride: int = 1, groups: int = 1) -> Graph:
    pad = k // 2
    oh = (h + 2 * pad - k) // stride + 1
    node = Node("conv", "conv", ("x",), "y", ("W", "b"),
                attrs(kernel=(k, k), stride=(stride, stride), pads=(pad,) * 4, dilation=(1, 1), groups=groups),
                Activation("relu"))
    shapes = {"x": Shape(c, h, h), "y": Shape(m, oh, oh)}
    return Graph((node,), tuple(sorted(shapes.items())), (), "x", "y", (1, c, h, h), (1, m, oh, oh))


def conv_call(name: str, *args: int) -> KernelCall:
    graph = conv_graph(*args)
    prim = next(p for p in library() if p.name == name)
    (call,) = prim.call(graph.nodes[0], graph)
    return call


def test_features_of_a_hand_checked_direct_conv() -> None:
    # 2 -> 3 channels, 4x4, 3x3 "same": 3*16 outputs, each 2*9 multiply-adds, plus bias/activation per output.
    f = features(conv_call("conv_direct_chw", 2, 4, 3, 3))
    assert f.flops == 2 * 3 * 16 * 2 * 9 + 3 * 16 == 1776
    # in 2*16 floats, weights 3*2*9 + bias 3, out 3*16 floats, no workspace
    assert f.bytes_moved == 4 * (32 + 54 + 3 + 48) == 548
    assert f.workspace_bytes == 0
    assert f.intensity == pytest.approx(1776 / 548)
    names = feature_names(conv_call("conv_direct_chw", 2, 4, 3, 3))
    assert names == GENERIC_NAMES + CONV_NAMES
    v = dict(zip(names, f.vector))
    assert v["log_flops"] == pytest.approx(math.log2(1777))
    assert v["log_bytes_moved"] == pytest.approx(math.log2(549))
    assert v["log_taps"] == pytest.approx(math.log2(10))
    assert (v["depthwise"], v["pointwise"]) == (0.0, 0.0)
    assert v["mr_fill"] == pytest.approx(3 / 6)  # 3 output channels fill half a 6-row GEMM micro-tile


def test_workspace_counts_twice_in_bytes_moved() -> None:
    f = features(conv_call("conv_im2col_gemm_chw", 2, 4, 3, 3))
    ws = dict(conv_call("conv_im2col_gemm_chw", 2, 4, 3, 3).buffer_bytes)["ws"]
    assert ws == 4 * 2 * 9 * 16  # cg*kh*kw rows x 16 pixels (already a multiple of the 16-column panel)
    assert f.workspace_bytes == ws
    assert f.bytes_moved == 4 * (32 + 48) + dict(conv_call("conv_im2col_gemm_chw", 2, 4, 3, 3).buffer_bytes)["w0"] \
        + 12 + 2 * ws


def test_an_unknown_struct_counts_output_elements() -> None:
    call = KernelCall("tb_future", "tb_future_struct", (("n", 7), ("alpha", 0.5)), ("in0", "out"),
                      (("in0", 28), ("out", 40)))
    f = features(call)
    assert f.flops == 10
    assert f.vector[len(GENERIC_NAMES):] == (log2p(7), log2p(0.5))


def flat_call(function: str, n: int) -> KernelCall:
    return KernelCall(function, "tb_flat", (("n", n), ("act", 0), ("act_a", 0.0), ("act_b", 0.0)),
                      ("in0", "out"), (("in0", 4 * n), ("out", 4 * n)))


def power_law_samples(function: str, scale: float, sizes) -> list[Sample]:
    return [Sample(flat_call(function, n), scale * n ** 0.75) for n in sizes]


def test_training_recovers_an_exact_power_law_on_unseen_sizes() -> None:
    sizes = [int(2 ** e) for e in np.linspace(6, 20, 40)]
    model = train(power_law_samples("tb_a", 1e-5, sizes) + power_law_samples("tb_b", 4e-5, sizes), {})
    unseen = power_law_samples("tb_a", 1e-5, [300, 5000, 70_000]) + power_law_samples("tb_b", 4e-5, [777])
    assert max(errors(model, unseen).values()) < 0.02


def test_fine_tuning_recovers_a_known_scale() -> None:
    sizes = [int(2 ** e) for e in np.linspace(6, 20, 30)]
    model = train(power_law_samples("tb_a", 1e-5, sizes) + power_law_samples("tb_b", 2e-5, sizes), {})
    probe = [flat_call("tb_a", 1000), flat_call("tb_b", 123_456), flat_call("tb_unknown", 999)]
    before = model.predict_ms(probe)
    # This machine is exactly 3x slower: 12 samples of one function fix every prediction.
    here = [Sample(flat_call("tb_a", n), 3.0 * model.predict_ms([flat_call("tb_a", n)])[flat_call("tb_a", n).key()])
            for n in (100, 400, 2000, 9000, 40_000, 100_000, 300_000, 700_000, 64, 5000, 20_000, 1_000_000)]
    tuned = model.fine_tuned(here)
    after = tuned.predict_ms(probe)
    for key in before:
        assert after[key] / before[key] == pytest.approx(3.0, rel=1e-9)
    assert tuned.calibration.samples == 12
    assert tuned.calibration.slope == pytest.approx(1.0)
    assert tuned.fine_tuned([]).predict_ms(probe) == pytest.approx(before)  # fine-tuning replaces, never stacks


def test_fine_tuning_moves_one_function_by_its_own_samples() -> None:
    sizes = [int(2 ** e) for e in np.linspace(6, 20, 30)]
    model = train(power_law_samples("tb_a", 1e-5, sizes) + power_law_samples("tb_b", 1e-5, sizes), {})
    ns = [2 ** e for e in range(8, 20)]
    # tb_b is 4x slower here, tb_a unchanged: the per-function offsets pull them apart.
    here = [Sample(flat_call("tb_a", n), model.predict_ms([flat_call("tb_a", n)])[flat_call("tb_a", n).key()])
            for n in ns] + \
           [Sample(flat_call("tb_b", n), 4 * model.predict_ms([flat_call("tb_b", n)])[flat_call("tb_b", n).key()])
            for n in ns]
    tuned = model.fine_tuned(here)
    a, b = flat_call("tb_a", 3000), flat_call("tb_b", 3000)
    ratio_a = tuned.predict_ms([a])[a.key()] / model.predict_ms([a])[a.key()]
    ratio_b = tuned.predict_ms([b])[b.key()] / model.predict_ms([b])[b.key()]
    # global offset log2(2) = 1, then each function keeps n/(n+0.5) = 12/12.5 of its +-1 octave residual
    assert math.log2(ratio_a) == pytest.approx(1 - 12 / 12.5)
    assert math.log2(ratio_b) == pytest.approx(1 + 12 / 12.5)


def test_a_thin_function_extrapolates_with_the_slopes_of_its_struct() -> None:
    # tb_a and tb_b: exact n^0.75 over 2^6..2^20. tb_c: 8 samples within one octave, +-20% (and 2 at +-56%) noise,
    # true law 2e-5 n^0.75. Alone, its regression bends to the noise and is ~2.9x off at n = 2^20; its shrunk
    # regression keeps the shared slope (levels are free per function) and is within 10%.
    sizes = [int(2 ** e) for e in np.linspace(6, 20, 40)]
    noise = [1.3 / 1.2, 1.2, 1 / 1.2, 1.2, 1 / 1.2, 1.2, 1 / 1.2, 1.3 * 1.2]
    thin = [Sample(flat_call("tb_c", 1024 + 128 * i), 2e-5 * (1024 + 128 * i) ** 0.75 * noise[i]) for i in range(8)]
    model = train(power_law_samples("tb_a", 1e-5, sizes) + power_law_samples("tb_b", 3e-5, sizes) + thin, {})
    far = flat_call("tb_c", 2 ** 20)
    x = np.asarray(features(far).vector)
    truth = 2e-5 * (2 ** 20) ** 0.75
    alone = 2 ** model.functions["tb_c"].predict_log2(x)[0] / truth
    shrunk = 2 ** model.shrunk["tb_c"].predict_log2(x)[0] / truth
    assert alone > 2.5 and abs(shrunk - 1) < 0.1
    # the model predicts with the mean (in log2) of the two
    assert model.predict_ms([far])[far.key()] / truth == pytest.approx(math.sqrt(alone * shrunk), rel=1e-9)


def test_shared_slopes_fit_one_law_across_levels() -> None:
    # Two groups, levels 1 and 5 octaves apart, both log2(ms) = level + 0.75 log2(n): the shared slopes reproduce
    # 0.75 per octave of n inside each group, whatever the levels.
    sizes = [int(2 ** e) for e in np.linspace(6, 20, 20)]
    calls = [flat_call("tb_a", n) for n in sizes] + [flat_call("tb_b", n) for n in sizes]
    x = np.stack([np.asarray(features(c).vector) for c in calls])
    y = np.array([1 + 0.75 * math.log2(n) for n in sizes] + [5 + 0.75 * math.log2(n) for n in sizes])
    slopes = shared_slopes(x, y, np.array([c.function for c in calls]))
    a_small, a_big = flat_call("tb_a", 2 ** 8), flat_call("tb_a", 2 ** 18)
    rise = (np.asarray(features(a_big).vector) - np.asarray(features(a_small).vector)) @ slopes
    assert rise == pytest.approx(0.75 * 10, rel=1e-3)


def test_variants_drop_the_layout_suffix() -> None:
    assert variant_of("tb_conv_mec_hwc_to_chw") == "tb_conv_mec"
    assert variant_of("tb_conv_winograd_f4x4_3x3_lowmem_hwc") == "tb_conv_winograd_f4x4_3x3_lowmem"
    assert variant_of("tb_layout_chw_to_hwc") == "tb_layout"
    assert variant_of("tb_add") == "tb_add"


def int8_call(function: str, n: int) -> KernelCall:
    return KernelCall(function, "tb_q8_flat", (("n", n),), ("in0", "out"), (("in0", n), ("out", n)),
                      ("int8_t", "int8_t"))


def test_an_int8_call_is_moved_by_its_data_types_correction_alone() -> None:
    """Hand-checked: int8 calls measured 8x the model's guess for tb_q8_a (4 samples) and 2x for tb_q8_b (4
    samples). The median residual is the midpoint of 1 and 3 octaves, 2; each function keeps n / (n + 0.5) = 4/4.5
    of its +-1 octave from it. Float calls are untouched, a JSON round trip keeps the correction, and without one
    the model writes what it wrote before."""
    sizes = [int(2 ** e) for e in np.linspace(6, 20, 30)]
    model = train(power_law_samples("tb_a", 1e-5, sizes), {})
    ns = (100, 1000, 10_000, 100_000)
    guess = {f: model.predict_ms([int8_call(f, n) for n in ns]) for f in ("tb_q8_a", "tb_q8_b")}
    measured = [Sample(int8_call(f, n), scale * guess[f][int8_call(f, n).key()])
                for f, scale in (("tb_q8_a", 8.0), ("tb_q8_b", 2.0)) for n in ns]
    corrected = model.with_dtype_correction("int8", measured)
    assert dtype_of(measured[0].call) == "int8" and dtype_of(flat_call("tb_a", 5)) == "float32"
    assert corrected.dtypes["int8"].offset == pytest.approx(2.0) and corrected.dtypes["int8"].samples == 8
    a, b, c = int8_call("tb_q8_a", 5000), int8_call("tb_q8_b", 5000), int8_call("tb_q8_c", 5000)
    before, after = model.predict_ms([a, b, c]), corrected.predict_ms([a, b, c])
    assert math.log2(after[a.key()] / before[a.key()]) == pytest.approx(2 + 4 / 4.5)
    assert math.log2(after[b.key()] / before[b.key()]) == pytest.approx(2 - 4 / 4.5)
    assert math.log2(after[c.key()] / before[c.key()]) == pytest.approx(2.0)  # unmeasured: the type's offset
    floats = [flat_call("tb_a", 777)]
    assert corrected.predict_ms(floats) == model.predict_ms(floats)
    again = CostModel.from_json(corrected.to_json())
    assert again.predict_ms([a, b, c]) == pytest.approx(after, rel=1e-5)
    assert '"dtypes"' not in model.to_json() and CostModel.from_json(model.to_json()).to_json() == model.to_json()
    # fine-tuning to a machine applies on top of the correction, and keeps it
    assert corrected.fine_tuned(power_law_samples("tb_a", 2e-5, sizes[:12])).dtypes == corrected.dtypes
    with pytest.raises(ValueError, match="int8 calls"):
        model.with_dtype_correction("int8", power_law_samples("tb_a", 1e-5, [100]))


def test_json_round_trip_predicts_the_same() -> None:
    sizes = [int(2 ** e) for e in np.linspace(6, 20, 30)]
    model = train(power_law_samples("tb_a", 1e-5, sizes), {"cpu": "test"})
    model = model.fine_tuned(power_law_samples("tb_a", 2e-5, [100, 1000]))
    again = CostModel.from_json(model.to_json())
    assert set(again.shrunk) == {"tb_a"}
    probe = [flat_call("tb_a", 5555), flat_call("tb_b", 77)]
    assert again.predict_ms(probe) == pytest.approx(model.predict_ms(probe), rel=1e-5)
    assert again.to_json() == CostModel.from_json(again.to_json()).to_json()
    assert again.trained_on["cpu"] == "test"


def test_sample_files_rebuild_the_calls_exactly() -> None:
    calls = [conv_call("conv_im2col_gemm_chw", 3, 9, 8, 3, 2), flat_call("tb_add", 17)]
    text = write_samples([(c, 0.5, 0.01, 7) for c in calls])
    back = read_samples(text)
    # (with_row_range: a no-op on a library whose tb_conv has the row range, the fields added on one without)
    assert [s.call for s in back] == sorted((with_row_range(c) for c in calls), key=KernelCall.key)
    assert [s.ms for s in back] == [0.5, 0.5]


def test_shipped_model_predicts_every_call_of_a_network(zoo_model) -> None:
    from tasobuild.candidates import node_candidates, transform_candidates
    from tasobuild.costs.stage import shipped_model
    from tasobuild.importer import import_onnx

    model = shipped_model()
    assert model is not None
    fp = model.trained_on["fingerprint"]
    assert {"cpu", "compiler", "cflags"} <= set(fp) and model.trained_on["samples"] > 500
    graph = import_onnx(zoo_model("ds_cnn_torch"))
    calls = [call for nc in node_candidates(graph) for c in nc.options for call in c.calls]
    calls += [t.call for t in transform_candidates(graph)]
    predicted = model.predict_ms(calls)
    assert len(predicted) == len({c.key() for c in calls})
    assert all(0 < ms < 1e4 and math.isfinite(ms) for ms in predicted.values())


# A tb_conv sample as written before tb_conv had a row range: 2 -> 3 channels, 4x4, 3x3 "same", direct CHW.
_OLD_CONV_PARAMS = ("in_c=2,in_h=4,in_w=4,out_c=3,out_h=4,out_w=4,k_h=3,k_w=3,stride_h=1,stride_w=1,pad_top=1,"
                    "pad_left=1,dil_h=1,dil_w=1,groups=1,act=1,act_a=0.0,act_b=0.0,oc_begin=0,oc_end=3,accumulate=0")


def _sample_file(params: str) -> str:
    return ("function,struct,params,buffers,median_ms,spread_ms,reps\n"
            f'tb_conv_direct_chw,tb_conv,"{params}","in0=128,w0=216,w1=12,out=192",0.0015,1e-05,9\n'
            'tb_add,tb_flat,"n=16,act=0,act_a=0.0,act_b=0.0","in0=64,in1=64,out=64",0.00025,1e-06,9\n')


def test_samples_without_a_row_range_read_as_whole_rows() -> None:
    conv, add = read_samples(_sample_file(_OLD_CONV_PARAMS))
    names = [k for k, _ in conv.call.params]
    assert names[-5:] == ["oc_begin", "oc_end", "oh_begin", "oh_end", "accumulate"]
    assert dict(conv.call.params)["oh_begin"] == 0 and dict(conv.call.params)["oh_end"] == 4  # = out_h
    assert conv.call.key() == ("tb_conv_direct_chw(in_c=2,in_h=4,in_w=4,out_c=3,out_h=4,out_w=4,k_h=3,k_w=3,"
                               "stride_h=1,stride_w=1,pad_top=1,pad_left=1,dil_h=1,dil_w=1,groups=1,act=1,"
                               "act_a=0.0,act_b=0.0,oc_begin=0,oc_end=3,oh_begin=0,oh_end=4,accumulate=0)")
    assert conv.call.buffer_bytes == (("in0", 128), ("w0", 216), ("w1", 12), ("out", 192))
    assert (conv.ms, add.ms) == (0.0015, 0.00025)
    assert add.call.params == (("n", 16), ("act", 0), ("act_a", 0.0), ("act_b", 0.0))  # not a tb_conv: untouched


def test_samples_with_a_row_range_read_unchanged_and_features_agree() -> None:
    new_params = _OLD_CONV_PARAMS.replace("accumulate=0", "oh_begin=0,oh_end=4,accumulate=0")
    (old, _), (new, _) = read_samples(_sample_file(_OLD_CONV_PARAMS)), read_samples(_sample_file(new_params))
    assert old.call == new.call and with_row_range(new.call) == new.call
    # the same call as the library writes it (with or without the row range): same features, same key once normalised
    library = conv_call("conv_direct_chw", 2, 4, 3, 3)
    assert with_row_range(library) == new.call
    assert features(library).vector == features(new.call).vector
    model = train(power_law_samples("tb_conv_direct_chw", 1e-6, [2 ** e for e in range(4, 16)]), {"cpu": "test"})
    assert model.predict_ms([library])[library.key()] == model.predict_ms([new.call])[new.call.key()]


def test_features_of_hand_checked_depthwise_and_hwc_fills() -> None:
    plain = dict(zip(feature_names(conv_call("conv_depthwise_direct_hwc", 8, 4, 8, 3, 1, 8)),
                     features(conv_call("conv_depthwise_direct_hwc", 8, 4, 8, 3, 1, 8)).vector))
    doubled = dict(zip(feature_names(conv_call("conv_depthwise_direct_hwc", 8, 4, 16, 3, 1, 8)),
                       features(conv_call("conv_depthwise_direct_hwc", 8, 4, 16, 3, 1, 8)).vector))
    assert (plain["depthwise"], plain["multiplied_depthwise"]) == (1.0, 0.0)
    assert (doubled["depthwise"], doubled["multiplied_depthwise"]) == (1.0, 1.0)  # 2 outputs per input channel
    # the shape features' flops (multiply-adds only): 2 * 16 output channels * 16 pixels * 1 input channel * 9 taps
    assert doubled["multiplied_depthwise_x_log_flops"] == pytest.approx(math.log2(1 + 2 * 16 * 16 * 9))
    # 16 output pixels fill 16 of 18 rows of three 6-row micro-tiles; one input channel per group fills 1/8 vector
    assert plain["mr_fill_pixels"] == pytest.approx(16 / 18) and plain["vec8_fill_cg"] == pytest.approx(1 / 8)
    full = dict(zip(feature_names(conv_call("conv_direct_chw", 16, 6, 8, 3)),
                    features(conv_call("conv_direct_chw", 16, 6, 8, 3)).vector))
    assert (full["mr_fill_pixels"], full["vec8_fill_cg"], full["multiplied_depthwise"]) == (1.0, 1.0, 0.0)


def test_leaky_relu_is_a_feature_of_its_own() -> None:
    # conv_graph fuses ReLU (act 1); the same call with leaky ReLU (act 3) differs in act_leaky alone.
    relu = conv_call("conv_depthwise_direct_hwc", 8, 4, 8, 3, 1, 8)
    leaky = replace(relu, params=tuple((k, 3 if k == "act" else 0.1 if k == "act_a" else v) for k, v in relu.params))
    a = dict(zip(feature_names(relu), features(relu).vector))
    b = dict(zip(feature_names(leaky), features(leaky).vector))
    assert (a["act_leaky"], b["act_leaky"]) == (0.0, 1.0)
    assert {k for k in a if a[k] != b[k]} == {"act_leaky"}


def test_depthwise_channels_off_the_vector_path() -> None:
    def tail_and_generic(name: str, *args: int) -> tuple[float, float]:
        call = conv_call(name, *args)
        named = dict(zip(feature_names(call), features(call).vector))
        return named["depthwise_tail"], named["depthwise_generic"]

    dw = "conv_depthwise_direct_hwc"
    # 44 channels: 32 in two 16-channel vectors, 12 (12/44 of them) on the generic path; 48: none
    assert tail_and_generic(dw, 44, 8, 44, 3, 1, 44) == (12 / 44, 0.0)
    assert tail_and_generic(dw, 48, 8, 48, 3, 2, 48) == (0.0, 0.0)
    # 5x5, or fewer than 16 channels: all on the generic path; a dense conv is neither
    assert tail_and_generic(dw, 48, 8, 48, 5, 1, 48)[1] == tail_and_generic(dw, 8, 8, 8, 3, 1, 8)[1] == 1.0
    assert tail_and_generic("conv_direct_hwc", 44, 8, 44, 3) == (0.0, 0.0)


def test_shipped_samples_are_what_bench_costs_train_times_today() -> None:
    """The shipped training data is exactly the call set bench/costs_train.py builds from the recorded recipe: no
    stale call, every library function covered (the register-blocked direct convs included)."""
    from bench.costs_data import training_calls
    from tasobuild.costs.stage import SAMPLES_FILE, data_dir, shipped_model

    model = shipped_model()
    assert model is not None
    recipe = model.trained_on["synthetic"]
    calls = training_calls(tuple(recipe["convs"].values()), recipe["ops"], recipe["per_function"],
                           seed=recipe["seed"], networks=tuple(model.trained_on["networks"]))
    shipped = read_samples((data_dir() / SAMPLES_FILE).read_text(encoding="utf-8"))
    assert sorted(s.call.key() for s in shipped) == sorted(with_row_range(c).key() for c in calls)
    assert model.trained_on["samples"] == len(shipped) == 10193
    assert {"tb_conv_direct_blocked_chw_to_hwc", "tb_conv_direct_blocked_hwc",
            "tb_conv_direct_blocked_hcw_to_hwc", "tb_fc_gemv"} <= set(model.functions)
