"""The layers the suite races: ResNet-50, VGG-16 and MobileNetV2 convolutions, two few-channel output
heads and two few-channel input layers, and the max-pools of
ResNet-50 and VGG-16, at ImageNet resolution (224x224 input), and whole torchvision models. Names follow the PyTorch baselines in
shared/anchors/ (r50_res2_3x3_64, ...) so a result can be read against them; the batch size is
not part of a shape, it comes from the runner's --batch.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    name: str     # unique, e.g. "r50_res2_3x3_64"
    family: str   # the network it comes from: resnet50, vgg16, mobilenetv2
    op: str       # "conv2d", "max_pool2d" or "model"
    params: dict  # per-sample sizes and the op's arguments, see conv() and pool()


def conv(name, family, c, k, hw, r, stride=1, groups=1, bias=False):
    """Tensor[N, c, hw, hw] * Tensor[k, c / groups, r, r], 'same'-style padding r // 2."""
    return Shape(name, family, "conv2d", dict(C=c, K=k, H=hw, W=hw, R=r, S=r, stride=stride,
                                              padding=r // 2, dilation=1, groups=groups, bias=bias))


def model(arch, family, hw=224, classes=1000):
    """A whole torchvision network (cnnkernels.convert(model) against the original) on
    Tensor[N, 3, hw, hw]: fwd is inference (eval, no_grad), fwdbwd a training step's forward, loss
    and backward."""
    return Shape(arch, family, "model", dict(arch=arch, C=3, H=hw, W=hw, classes=classes))


def pool(name, family, c, hw, kernel, stride, padding=0, return_indices=False):
    """max_pool2d over Tensor[N, c, hw, hw]."""
    return Shape(name, family, "max_pool2d", dict(C=c, H=hw, W=hw, kernel_size=kernel, stride=stride,
                                                  padding=padding, dilation=1, ceil_mode=False,
                                                  return_indices=return_indices))


# ResNet-50 (torchvision, v1.5: the stride sits on the 3x3), one of each distinct bottleneck layer
# per stage; ResNet-50 has no conv bias (batch norm follows every conv).
RESNET50 = [
    conv("r50_conv1_7x7s2", "resnet50", 3, 64, 224, 7, stride=2),
    conv("r50_res2_1x1_64", "resnet50", 64, 64, 56, 1),
    conv("r50_res2_3x3_64", "resnet50", 64, 64, 56, 3),
    conv("r50_res2_1x1_64to256", "resnet50", 64, 256, 56, 1),
    conv("r50_res2_1x1_256to64", "resnet50", 256, 64, 56, 1),
    conv("r50_res3_3x3_128", "resnet50", 128, 128, 28, 3),
    conv("r50_res3_1x1_512to128", "resnet50", 512, 128, 28, 1),
    conv("r50_res3_1x1_128to512", "resnet50", 128, 512, 28, 1),
    conv("r50_down_1x1s2_256to512", "resnet50", 256, 512, 56, 1, stride=2),
    conv("r50_res4_3x3_256", "resnet50", 256, 256, 14, 3),
    conv("r50_res4_1x1_1024to256", "resnet50", 1024, 256, 14, 1),
    conv("r50_res5_3x3_512", "resnet50", 512, 512, 7, 3),
    conv("r50_res5_1x1_2048to512", "resnet50", 2048, 512, 7, 1),
]

# VGG-16: the first 3x3 conv of each stage at its full width (conv1_1, 3->64, races with the
# few-channel input layers, INPUTS).
VGG16 = [
    conv("vgg_3x3_64_224", "vgg16", 64, 64, 224, 3, bias=True),
    conv("vgg_3x3_128_112", "vgg16", 128, 128, 112, 3, bias=True),
    conv("vgg_3x3_256_56", "vgg16", 256, 256, 56, 3, bias=True),
    conv("vgg_3x3_512_28", "vgg16", 512, 512, 28, 3, bias=True),
]

# MobileNetV2, the 24-channel stage at 56x56: expand 1x1 24->144, depthwise 3x3 144 (stride 1, and
# stride 2 where the next stage starts), project 1x1 144->24; plus the anchors' depthwise 384 @14/2,
# the stem (3x3/2 3->32, 32 output channels) and the last stage's depthwise 960 @7.
MOBILENETV2 = [
    conv("mbv2_stem_3x3s2_3to32", "mobilenetv2", 3, 32, 224, 3, stride=2),
    conv("mbv2_pw_1x1_24to144_56", "mobilenetv2", 24, 144, 56, 1),
    conv("mbv2_dw3x3_144_56", "mobilenetv2", 144, 144, 56, 3, groups=144),
    conv("mbv2_dw3x3s2_144_56", "mobilenetv2", 144, 144, 56, 3, stride=2, groups=144),
    conv("mbv2_pw_1x1_144to24_56", "mobilenetv2", 144, 24, 56, 1),
    conv("mbv2_dw3x3s2_384_14", "mobilenetv2", 384, 384, 14, 3, stride=2, groups=384),
    conv("mbv2_dw3x3_960_7", "mobilenetv2", 960, 960, 7, 3, groups=960),
]

# ResNeXt-50 32x4d (torchvision): its grouped 3x3 convolutions, 32 groups of 4, 8, 16 and 32
# channels (the 1x1 layers are ResNet-50's kinds); the stride sits on the first 3x3 of stages 2-4.
RESNEXT50 = [
    conv("rx50_3x3g32_128_56", "resnext50", 128, 128, 56, 3, groups=32),
    conv("rx50_3x3g32s2_256_56", "resnext50", 256, 256, 56, 3, stride=2, groups=32),
    conv("rx50_3x3g32_256_28", "resnext50", 256, 256, 28, 3, groups=32),
    conv("rx50_3x3g32_512_14", "resnext50", 512, 512, 14, 3, groups=32),
    conv("rx50_3x3g32_1024_7", "resnext50", 1024, 1024, 7, 3, groups=32),
]

# Depthwise filters larger than 3 x 3: ConvNeXt-T's 7 x 7 (with bias) at each stage's width, and
# EfficientNet-B0's 5 x 5 (stage 3's stride 2 on the expanded 144 @56, stage 5's 480 @14).
LARGE_DEPTHWISE = [
    conv("convnext_dw7x7_96_56", "convnext_tiny", 96, 96, 56, 7, groups=96, bias=True),
    conv("convnext_dw7x7_192_28", "convnext_tiny", 192, 192, 28, 7, groups=192, bias=True),
    conv("convnext_dw7x7_384_14", "convnext_tiny", 384, 384, 14, 7, groups=384, bias=True),
    conv("convnext_dw7x7_768_7", "convnext_tiny", 768, 768, 7, 7, groups=768, bias=True),
    conv("effb0_dw5x5s2_144_56", "efficientnet_b0", 144, 144, 56, 5, stride=2, groups=144),
    conv("effb0_dw5x5_480_14", "efficientnet_b0", 480, 480, 14, 5, groups=480),
]

# Output heads of few channels: a segmentation or depth map (64 -> 1 @112) and an image decoder's
# RGB (64 -> 3 @224), with bias.
HEADS = [
    conv("head_3x3_64to1_112", "heads", 64, 1, 112, 3, bias=True),
    conv("head_3x3_64to3_224", "heads", 64, 3, 224, 3, bias=True),
]

# Input layers of few channels, whose 3 x 3 products per output element are few: VGG-16's conv1_1
# (3 -> 64 @224, RGB) and a grayscale image's first layer (1 -> 64 @128, as in U-Nets), with bias.
INPUTS = [
    conv("vgg_3x3_3to64_224", "inputs", 3, 64, 224, 3, bias=True),
    conv("gray_3x3_1to64_128", "inputs", 1, 64, 128, 3, bias=True),
]

POOLS = [
    pool("r50_stem_pool3x3s2", "resnet50", 64, 112, 3, 2, padding=1),
    pool("r50_stem_pool3x3s2_idx", "resnet50", 64, 112, 3, 2, padding=1, return_indices=True),
    pool("vgg_pool2x2s2_64_224", "vgg16", 64, 224, 2, 2),
    pool("vgg_pool2x2s2_512_28", "vgg16", 512, 28, 2, 2),
]

# End to end: torchvision models, converted against original (torchvision must be installed).
MODELS = [
    model("resnet18", "resnet18"),
    model("resnet50", "resnet50"),
    model("mobilenet_v2", "mobilenetv2"),
    model("resnext50_32x4d", "resnext50"),
]

SUITES = {
    "layers": RESNET50 + VGG16 + MOBILENETV2 + RESNEXT50 + LARGE_DEPTHWISE + HEADS + INPUTS,
    "pool": POOLS,
    "models": MODELS,
}
SUITES["all"] = SUITES["layers"] + SUITES["pool"] + SUITES["models"]
