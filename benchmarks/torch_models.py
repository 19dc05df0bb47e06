"""PyTorch DeepLab-v2 and discriminator with the reference code's layouts.

Written from the architecture the reference code bases describe
(valeoai/ADVENT advent/model/deeplabv2.py `ResNetMulti`, `Bottleneck`,
`ClassifierModule`, and advent/model/discriminator.py
`get_fc_discriminator`; liyunsheng13/BDL model/deeplab.py), with their
module names, so that tf_pixintra.models.torch_weights loads their state
dicts: Caffe-style bottlenecks (stride on the first 1x1 conv), layer3/4
dilated 2/4, a ceil-mode 3x3/2 max pool, classifier heads that sum four
dilated 3x3 convs; D = five 4x4/2 convs with LeakyReLU(0.2).

Used by benchmarks/torch_step.py (the PyTorch reference training step),
benchmarks/import_torch.py and the tests of the weight importer. Beyond
ADVENT, to build what tf_pixintra builds (tf_pixintra/models/resnet.py,
deeplab_v2.py, discriminator.py):
- depth 18/34 basic blocks (torchvision names conv1/bn1/conv2/bn2, stride
  on conv1) and a `width` multiplier for the small configurations;
- a projection shortcut exactly when the stride or the channel count
  changes (ADVENT adds one on every dilated layer too, where a bottleneck
  changes the channels anyway);
- bn_mode "frozen": BN in eval mode (normalised with its stored statistics,
  which it keeps) AND gamma/beta not trained, as tf_pixintra's frozen BN
  (ADVENT freezes gamma/beta but normalises with batch statistics);
- a pixel-level D (logits bilinearly upsampled to its input size,
  half-pixel centres = align_corners False as tf.image.resize) and D output
  strides below 32.
"""

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tf_pixintra import choices

DILATIONS = (6, 12, 18, 24)


def scaled(channels, width):
    """Same rounding as tf_pixintra.models.resnet.scaled_channels."""
    return max(1, int(channels * width + 0.5))


class Bottleneck(nn.Module):
    """conv1 (1x1, stride) -> conv2 (3x3, dilation) -> conv3 (1x1, x4)."""
    expansion = 4

    def __init__(self, inplanes, planes, stride, dilation, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class BasicBlock(nn.Module):
    """conv1 (3x3, stride, dilation) -> conv2 (3x3, dilation)."""
    expansion = 1

    def __init__(self, inplanes, planes, stride, dilation, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride,
                               padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ClassifierModule(nn.Module):
    """Sum of four dilated 3x3 convs (`branches` < 4: AdaptSegNet's sum)."""

    def __init__(self, inplanes, num_classes, branches=4):
        super().__init__()
        self.branches = branches
        self.conv2d_list = nn.ModuleList(
            nn.Conv2d(inplanes, num_classes, 3, padding=d, dilation=d,
                      bias=True) for d in DILATIONS)

    def forward(self, x):
        out = self.conv2d_list[0](x)
        for conv in list(self.conv2d_list)[1:self.branches]:
            out = out + conv(x)
        return out


class DeepLabV2(nn.Module):
    """heads: "multi" (layer5 on layer3, layer6 on layer4), "layer5" or
    "layer6" (one head on layer4 with that name), or "none".

    Multi-level forward returns (main, aux) = (layer6, layer5) logits at
    output stride 8 (ADVENT's ResNetMulti returns them as (aux, main)).
    bn_mode "frozen" keeps every BN in eval mode, also under `.train()`,
    with gamma/beta not trainable.
    """

    def __init__(self, num_classes, blocks=(3, 4, 23, 3), width=1.0,
                 heads="multi", branches=4, block="bottleneck",
                 bn_mode="train"):
        super().__init__()
        choices.check("bn_mode", bn_mode, choices.BN_MODES)
        self.bn_mode = bn_mode
        block = BLOCKS[block]
        stem = scaled(64, width)
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.inplanes = stem
        settings = ((64, 1, 1), (128, 2, 1), (256, 1, 2), (512, 1, 4))
        for i, ((planes, stride, dilation), n) in enumerate(
                zip(settings, blocks)):
            setattr(self, f"layer{i + 1}", self._make_layer(
                block, scaled(planes, width), n, stride, dilation))
        c3 = scaled(256, width) * block.expansion
        c4 = scaled(512, width) * block.expansion
        self.heads = heads
        if heads == "multi":
            self.layer5 = ClassifierModule(c3, num_classes, branches)
            self.layer6 = ClassifierModule(c4, num_classes, branches)
        elif heads in ("layer5", "layer6"):
            setattr(self, heads, ClassifierModule(c4, num_classes, branches))
        if bn_mode == "frozen":
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.requires_grad_(False)
            self.train(self.training)

    def _make_layer(self, block, planes, n, stride, dilation):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1,
                          stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, dilation, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, dilation, None)
                   for _ in range(1, n)]
        return nn.Sequential(*layers)

    def train(self, mode=True):
        super().train(mode)
        if self.bn_mode == "frozen":
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x3 = self.layer3(self.layer2(self.layer1(x)))
        x4 = self.layer4(x3)
        if self.heads == "multi":
            return self.layer6(x4), self.layer5(x3)
        if self.heads == "none":
            return x4
        return getattr(self, self.heads)(x4)

    def head_parameters(self):
        """The classifier heads' parameters (trained at 10x LR)."""
        return [p for name, p in self.named_parameters()
                if name.startswith(("layer5.", "layer6."))]


def deeplab_v2(num_classes, depth=101, width=1.0, bn_mode="frozen", seed=0):
    """The multi-level DeepLab-v2 of tf_pixintra.models.build_deeplab_v2.

    Initialised as there (not the same draws): He-normal backbone convs,
    heads N(0, 0.01) with zero biases, BN gamma 1, beta 0, statistics 0 / 1.
    """
    kind, blocks = choices.RESNET_LAYOUTS[depth]
    torch.manual_seed(seed)
    model = DeepLabV2(num_classes, blocks, width, "multi", block=kind,
                      bn_mode=bn_mode)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d):
                if "conv2d_list" in name:
                    nn.init.normal_(module.weight, 0.0, 0.01)
                    nn.init.zeros_(module.bias)
                else:
                    nn.init.kaiming_normal_(module.weight, mode="fan_in",
                                            nonlinearity="relu")
    return model


class FCDiscriminator(nn.Module):
    """ADVENT's get_fc_discriminator as a module (`layers` is its
    Sequential); `pixel_level` upsamples the logits to the input size.

    output_stride < 32 makes the convs after the first log2(output_stride)
    stride 1 with padding (1, 2) (size-preserving), as
    tf_pixintra.models.build_discriminator. Biases start at 0 (as there);
    the kernels keep PyTorch's default init (variance 1 / (3 fan_in), the
    same distribution).
    """

    def __init__(self, num_classes, ndf=64, pixel_level=False,
                 output_stride=32):
        super().__init__()
        self.pixel_level = pixel_level
        channels = (num_classes, ndf, ndf * 2, ndf * 4, ndf * 8, 1)
        layers = []
        for i in range(5):
            if 2 ** (i + 1) <= output_stride:
                layers.append(nn.Conv2d(channels[i], channels[i + 1], 4,
                                        stride=2, padding=1))
            else:
                layers += [nn.ZeroPad2d((1, 2, 1, 2)),
                           nn.Conv2d(channels[i], channels[i + 1], 4)]
            if i < 4:
                layers.append(nn.LeakyReLU(negative_slope=0.2, inplace=True))
        self.layers = nn.Sequential(*layers)
        with torch.no_grad():
            for conv in self.convs():
                nn.init.zeros_(conv.bias)

    def convs(self):
        return [m for m in self.layers if isinstance(m, nn.Conv2d)]

    def forward(self, x):
        logits = self.layers(x)
        if self.pixel_level:
            logits = F.interpolate(logits, size=x.shape[2:], mode="bilinear",
                                   align_corners=False)
        return logits


# Keras layer names of tf_pixintra.models.build_discriminator's convs.
D_LAYER_NAMES = ("d_conv1", "d_conv2", "d_conv3", "d_conv4", "d_classifier")


def keras_layer_names(model):
    """{torch module: tf_pixintra Keras layer name} for every conv and BN."""
    if isinstance(model, FCDiscriminator):
        return dict(zip(model.convs(), D_LAYER_NAMES))
    heads = {"layer6": "head_main", "layer5": "head_aux"}
    names = {}
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            continue
        parts = name.split(".")
        if parts[0] in heads:      # layerH.conv2d_list.i
            names[module] = f"{heads[parts[0]]}_d{DILATIONS[int(parts[2])]}"
        elif len(parts) == 1:      # conv1, bn1
            names[module] = {"conv1": "stem_conv", "bn1": "stem_bn"}[name]
        else:                      # layerL.b.convK / bnK / downsample.0|1
            prefix = f"{parts[0]}_block{int(parts[1]) + 1}_"
            if parts[2] == "downsample":
                names[module] = prefix + ("down_conv" if parts[3] == "0"
                                          else "down_bn")
            else:
                names[module] = prefix + parts[2]
    return names


def copy_keras_weights(model, layer_weights):
    """Copies tf_pixintra Keras weights into `model` (G or D).

    `layer_weights`: {Keras layer name: layer.get_weights()} (numpy; no
    TensorFlow needed here). Conv kernels [kh, kw, in, out] become
    [out, in, kh, kw]; BN takes gamma, beta, moving mean, moving variance.
    """
    with torch.no_grad():
        for module, name in keras_layer_names(model).items():
            values = [torch.from_numpy(np.asarray(v, np.float32))
                      for v in layer_weights[name]]
            if isinstance(module, nn.Conv2d):
                module.weight.copy_(values[0].permute(3, 2, 0, 1))
                if module.bias is not None:
                    module.bias.copy_(values[1])
            else:
                for target, value in zip(
                        (module.weight, module.bias, module.running_mean,
                         module.running_var), values):
                    target.copy_(value)


def rounding_tolerance(model):
    """Relative error of `model`'s outputs (max|diff| / max|output|) that
    float32 rounding in another summation order explains.

    Each output is a chain of float32 dot products; a length-K sum rounded
    in another order (PyTorch vs TensorFlow kernels) differs by about
    eps * sqrt(K) relative to its terms, and the chain adds those up in
    quadrature, so we take N = the sum of every conv's accumulation length
    (kh * kw * c_in; an upper bound of any path's). Factor 8: a wide margin
    for BN rescaling and ReLU (which never amplify by more than the BN gain).
    """
    n = sum(m.weight[0].numel() for m in model.modules()
            if isinstance(m, nn.Conv2d))
    return 8 * float(np.finfo(np.float32).eps) * math.sqrt(n)


def randomize(model, seed):
    """He-normal convs, N(0, 0.01) heads with random biases, random BN
    affine and running statistics (the network stays well-scaled)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                std = 0.01 if "conv2d_list" in name else (2.0 / fan_in) ** 0.5
                module.weight.copy_(torch.randn(module.weight.shape,
                                                generator=gen) * std)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape,
                                                  generator=gen) * 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                gain = 0.3 if name.endswith("bn3") else 1.0
                module.weight.copy_((0.5 + torch.rand(c, generator=gen)) * gain)
                module.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                module.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                module.running_var.copy_(0.5 + torch.rand(c, generator=gen))
                module.num_batches_tracked.fill_(1234)
    return model.eval()
