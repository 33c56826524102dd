"""The MLPerf Tiny reference models in their original Keras form, exported through tf2onnx (NHWC input).

Runs only where TensorFlow and tf2onnx are installed: a separate venv, kept out of the main environment (TF is large
and pins its own numpy/protobuf ranges). The committed fixtures were made with tensorflow-cpu 2.21.0 (Keras 3.15.1)
and tf2onnx 1.17.0:
    python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0
    /tmp/tfvenv/bin/python -m tests.zoo.build --fixtures
Architectures follow mlcommons/tiny training/*/keras_model.py, with Keras defaults (bias on, BN epsilon 1e-3,
"same" padding: asymmetric where TF needs it). Dropout and regularisers are omitted: they do not reach inference.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402
from tensorflow import keras  # noqa: E402

from tests.zoo.canonical import canonical_names  # noqa: E402

L = keras.layers
OPSET = 13  # same opset as the torch exports


def _conv_bn_relu(x, filters: int, kernel, strides=1, name: str = ""):  # type: ignore[no-untyped-def]
    x = L.Conv2D(filters, kernel, strides=strides, padding="same", name=f"{name}conv")(x)
    x = L.BatchNormalization(name=f"{name}bn")(x)
    return L.Activation("relu", name=f"{name}relu")(x)


def _dw_bn_relu(x, strides=1, name: str = ""):  # type: ignore[no-untyped-def]
    x = L.DepthwiseConv2D(3, strides=strides, padding="same", name=f"{name}dw")(x)
    x = L.BatchNormalization(name=f"{name}dwbn")(x)
    return L.Activation("relu", name=f"{name}dwrelu")(x)


def ds_cnn() -> keras.Model:
    """KWS DS-CNN: 49x10x1, conv 10x4/2 same (64), 4 x (dw 3x3 + pw 1x1), avg pool (24, 5), Dense 12 softmax."""
    inputs = keras.Input((49, 10, 1), batch_size=1, name="input")
    x = _conv_bn_relu(inputs, 64, (10, 4), (2, 2), name="stem_")
    for i in range(4):
        x = _dw_bn_relu(x, name=f"b{i}_")
        x = _conv_bn_relu(x, 64, 1, name=f"b{i}_pw_")
    x = L.AveragePooling2D(pool_size=(24, 5))(x)  # (int(49/2), int(10/2)), as in the reference
    x = L.Flatten()(x)
    return keras.Model(inputs, L.Dense(12, activation="softmax", name="output_dense")(x), name="ds_cnn")


def mobilenet_v1_vww() -> keras.Model:
    """VWW MobileNetV1 alpha 0.25: 96x96x3, 8 filters doubling to 256, ReLU, avg pool 3, Dense 2 softmax."""
    inputs = keras.Input((96, 96, 3), batch_size=1, name="input")
    x = _conv_bn_relu(inputs, 8, 3, 2, name="stem_")
    blocks = ((1, 16), (2, 32), (1, 32), (2, 64), (1, 64), (2, 128),
              (1, 128), (1, 128), (1, 128), (1, 128), (1, 128), (2, 256), (1, 256))
    for i, (stride, filters) in enumerate(blocks):
        x = _dw_bn_relu(x, stride, name=f"b{i}_")
        x = _conv_bn_relu(x, filters, 1, name=f"b{i}_pw_")
    x = L.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = L.Flatten()(x)
    return keras.Model(inputs, L.Dense(2, activation="softmax", name="output_dense")(x), name="mobilenet_v1_vww")


def resnet8() -> keras.Model:
    """MLPerf Tiny IC ResNet-8: 32x32x3, stem 16, stacks 16/32/64 (1x1 strided conv shortcut), avg pool 8, Dense 10."""
    inputs = keras.Input((32, 32, 3), batch_size=1, name="input")
    x = _conv_bn_relu(inputs, 16, 3, name="stem_")
    for i, (filters, stride) in enumerate(((16, 1), (32, 2), (64, 2))):
        y = _conv_bn_relu(x, filters, 3, stride, name=f"s{i}_a_")
        y = L.Conv2D(filters, 3, padding="same", name=f"s{i}_b_conv")(y)
        y = L.BatchNormalization(name=f"s{i}_branch_bn")(y)
        if stride != 1:
            x = L.Conv2D(filters, 1, strides=stride, padding="same", name=f"s{i}_shortcut")(x)
        x = L.Activation("relu", name=f"s{i}_out_relu")(L.add([x, y]))
    x = L.AveragePooling2D(pool_size=8)(x)
    x = L.Flatten()(x)
    return keras.Model(inputs, L.Dense(10, activation="softmax", name="output_dense")(x), name="resnet8")


def mobilenet_v2_035() -> keras.Model:
    """MobileNetV2 alpha 0.35 at 96x96x3, 2 classes: Keras' own MobileNetV2 (ReLU6, bias-free convs, explicit
    ZeroPadding before the strided depthwise convs), the int8 fixtures' fourth MLPerf-Tiny-sized network."""
    inputs = keras.Input((96, 96, 3), batch_size=1, name="input")
    return keras.applications.MobileNetV2(input_tensor=inputs, alpha=0.35, weights=None, classes=2,
                                          classifier_activation="softmax", name="mobilenet_v2_035")


def fc_autoencoder() -> keras.Model:
    """Anomaly detection autoencoder: 640 -> (Dense 128, BN, ReLU) x4 -> Dense 8, BN, ReLU -> x4 -> Dense 640."""
    inputs = keras.Input((640,), batch_size=1, name="input")
    h = inputs
    for i, units in enumerate((128, 128, 128, 128, 8, 128, 128, 128, 128)):
        h = L.Dense(units, name=f"d{i}")(h)
        h = L.BatchNormalization(name=f"d{i}_bn")(h)
        h = L.Activation("relu", name=f"d{i}_relu")(h)
    return keras.Model(inputs, L.Dense(640, name="output_dense")(h), name="fc_autoencoder")


@dataclass(frozen=True)
class KerasModel:
    factory: Callable[[], keras.Model]
    seed: int


KERAS_MODELS: dict[str, KerasModel] = {
    "ds_cnn_tf": KerasModel(ds_cnn, 108),
    "mobilenet_v1_vww_tf": KerasModel(mobilenet_v1_vww, 109),
    "resnet8_tf": KerasModel(resnet8, 110),
    "fc_autoencoder_tf": KerasModel(fc_autoencoder, 111),
    "mobilenet_v2_035_tf": KerasModel(mobilenet_v2_035, 112),  # int8 fixtures only (tests/zoo/int8_tflite.py)
}


def init_weights(model: keras.Model, seed: int) -> keras.Model:
    """The torch zoo's scheme from a numpy generator: He-normal kernels, small biases, BN far from identity."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # topological order: deterministic
        if isinstance(layer, L.DepthwiseConv2D):
            kernel, *bias = layer.get_weights()  # no bias: Keras' MobileNetV2 convs have none
            fan_in = kernel.shape[0] * kernel.shape[1]
        elif isinstance(layer, (L.Conv2D, L.Dense)):
            kernel, *bias = layer.get_weights()
            fan_in = int(np.prod(kernel.shape[:-1]))
        elif isinstance(layer, L.BatchNormalization):
            n = layer.get_weights()[0].shape
            gamma = rng.uniform(0.5, 1.5, n) * (0.25 if layer.name.endswith("branch_bn") else 1.0)
            layer.set_weights([gamma.astype(np.float32), rng.uniform(-0.2, 0.2, n).astype(np.float32),
                               rng.normal(0.0, 0.2, n).astype(np.float32), rng.uniform(0.5, 2.0, n).astype(np.float32)])
            continue
        else:
            continue
        std = np.sqrt(2.0 / fan_in) * (0.25 if layer.name in ("output_dense", "predictions") else 1.0)
        layer.set_weights([rng.normal(0.0, std, kernel.shape).astype(np.float32),
                           *(rng.uniform(-0.1, 0.1, b.shape).astype(np.float32) for b in bias)])
    return model


def build_keras_model(name: str) -> keras.Model:
    spec = KERAS_MODELS[name]
    keras.backend.clear_session()  # fresh name scopes: the graph names do not depend on what ran before
    keras.utils.set_random_seed(spec.seed)
    return init_weights(spec.factory(), spec.seed)


def export_keras(name: str) -> bytes:
    """The ONNX bytes of `name` via tf2onnx.convert.from_keras with its default optimisers, batch 1."""
    model = build_keras_model(name)
    spec = (tf.TensorSpec((1, *model.input_shape[1:]), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)
    return canonical_names(proto).SerializeToString()
