"""A small PyTorch DeepLab-v2 with the reference code bases' module names.

Written for the tests from the architecture the reference code bases
describe (valeoai/ADVENT advent/model/deeplabv2.py, liyunsheng13/BDL
model/deeplab.py): Caffe-style bottlenecks (stride on the first 1x1 conv),
layer3/4 dilated 2/4, a ceil-mode 3x3/2 max pool, classifier heads that sum
four dilated 3x3 convs. `blocks` and `width` make it small; BN statistics are
random so that a wrong BN mapping cannot pass.

Only imported by tests that have torch (pytest.importorskip first).
"""

import torch
from torch import nn

DILATIONS = (6, 12, 18, 24)


def scaled(channels, width):
    """Same rounding as tf_pixintra.models.resnet.scaled_channels."""
    return max(1, int(channels * width + 0.5))


class Bottleneck(nn.Module):
    """conv1 (1x1, stride) -> conv2 (3x3, dilation) -> conv3 (1x1, x4)."""

    def __init__(self, inplanes, planes, stride, dilation, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


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
    "layer6" (one head on layer4 with that name), or "none"."""

    def __init__(self, num_classes, blocks=(3, 4, 23, 3), width=1.0,
                 heads="multi", branches=4):
        super().__init__()
        stem = scaled(64, width)
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.inplanes = stem
        settings = ((64, 1, 1), (128, 2, 1), (256, 1, 2), (512, 1, 4))
        for i, ((planes, stride, dilation), n) in enumerate(
                zip(settings, blocks)):
            setattr(self, f"layer{i + 1}", self._make_layer(
                scaled(planes, width), n, stride, dilation))
        c3, c4 = scaled(256, width) * 4, scaled(512, width) * 4
        self.heads = heads
        if heads == "multi":
            self.layer5 = ClassifierModule(c3, num_classes, branches)
            self.layer6 = ClassifierModule(c4, num_classes, branches)
        elif heads in ("layer5", "layer6"):
            setattr(self, heads, ClassifierModule(c4, num_classes, branches))

    def _make_layer(self, planes, n, stride, dilation):
        downsample = nn.Sequential(
            nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, dilation,
                             downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes, 1, dilation, None)
                   for _ in range(1, n)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x3 = self.layer3(self.layer2(self.layer1(x)))
        x4 = self.layer4(x3)
        if self.heads == "multi":
            return self.layer6(x4), self.layer5(x3)
        if self.heads == "none":
            return x4
        return getattr(self, self.heads)(x4)


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
