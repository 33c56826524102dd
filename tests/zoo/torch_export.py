"""Deterministic weights for the PyTorch zoo and their export to a plain ONNX graph (torch is imported lazily)."""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from tests.zoo import torch_models as tm

OPSET = 13  # one opset for the whole zoo, TF fixtures included


@dataclass(frozen=True)
class TorchModel:
    factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    seed: int


TORCH_MODELS: dict[str, TorchModel] = {
    "alexnet": TorchModel(tm.AlexNet, (1, 3, 224, 224), 1),
    "vgg16": TorchModel(tm.VGG16, (1, 3, 224, 224), 2),
    "googlenet": TorchModel(tm.GoogLeNet, (1, 3, 224, 224), 3),
    "resnet18": TorchModel(lambda: tm.ResNet(tm.BasicBlock, (2, 2, 2, 2)), (1, 3, 224, 224), 4),
    "resnet50": TorchModel(lambda: tm.ResNet(tm.Bottleneck, (3, 4, 6, 3)), (1, 3, 224, 224), 5),
    "squeezenet11": TorchModel(tm.SqueezeNet11, (1, 3, 224, 224), 6),
    "mobilenetv2": TorchModel(tm.MobileNetV2, (1, 3, 224, 224), 7),
    "ds_cnn_torch": TorchModel(tm.DSCNN, (1, 1, 49, 10), 8),
    "mobilenet_v1_vww_torch": TorchModel(tm.MobileNetV1VWW, (1, 3, 96, 96), 9),
    "resnet8_torch": TorchModel(tm.ResNet8, (1, 3, 32, 32), 10),
    "fc_autoencoder_torch": TorchModel(tm.FCAutoencoder, (1, 640), 11),
}


_RESIDUAL_BLOCKS = (tm.BasicBlock, tm.Bottleneck, tm.InvertedResidual, tm.ResNet8Stack)


@torch.no_grad()
def init_weights(model: nn.Module, seed: int) -> nn.Module:
    """Seeded He-normal weights, small random biases, and BatchNorm statistics far from identity.

    BN gets random gamma/beta *and* running mean/var so that folding BN into the conv changes every weight: a
    folding bug (wrong eps, var instead of std, mean ignored) shows up as a numeric mismatch, not as a no-op.
    """
    torch.manual_seed(seed)
    for module in model.modules():  # registration order: deterministic
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in = module.weight[0].numel()
            module.weight.normal_(0.0, math.sqrt(2.0 / fan_in))
            if module.bias is not None:
                module.bias.uniform_(-0.1, 0.1)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.weight.uniform_(0.5, 1.5)
            module.bias.uniform_(-0.2, 0.2)
            module.running_mean.normal_(0.0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    for module in model.modules():
        if isinstance(module, _RESIDUAL_BLOCKS) and getattr(module, "residual", True):
            # A small gamma on each residual branch's last BN (Goyal et al.'s zero-init, but not zero) keeps the
            # activations of deep ResNets O(1) instead of doubling their variance at every block.
            last_bn = [m for m in module.body.modules() if isinstance(m, nn.BatchNorm2d)][-1]
            last_bn.weight.mul_(0.25)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears:  # the output layer: O(1) logits, so a Softmax after it is not saturated into a one-hot vector
        linears[-1].weight.mul_(0.25)
    return model.eval()


def build_torch_model(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    spec = TORCH_MODELS[name]
    return init_weights(spec.factory(), spec.seed), spec.input_shape


def export_torch(name: str) -> bytes:
    """The ONNX bytes of zoo model `name`, via the TorchScript exporter, BatchNormalization nodes kept.

    TrainingMode.PRESERVE on an eval-mode model exports inference BN without the eval-mode Conv+BN fusion pass
    (TrainingMode.EVAL fuses BN into Conv), while constant folding still runs, so no Constant/Shape chains survive.
    """
    model, shape = build_torch_model(name)
    x = torch.zeros(shape)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated; it is also the one that works here
        torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=OPSET,
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True,
                          input_names=["input"], output_names=["output"])
    return buffer.getvalue()
