"""Programs from checkpoints, and the random-weight MobileNetV2-224 used for hardware studies."""
from __future__ import annotations

import numpy as np
import torch

from ..models.mobilenetv2 import MobileNetV2, MobileNetV2Config
from ..quant.config import QuantConfig
from ..quant.convert import QMobileNetV2
from ..quant.qnet import QNetBase, calibrate
from ..quant.prune import apply_masks
from ..train.loop import to_model_input
from .intervals import analyze
from .lower import lower
from .spec import Program

ARCHS = {
    "mobilenetv2-224": MobileNetV2Config(num_classes=1000, in_channels=3, width_mult=1.0, first_stride=2,
                                         input_size=224),
}


def input_shape(cfg: MobileNetV2Config) -> tuple[int, int, int]:
    return (cfg.in_channels, cfg.input_size, cfg.input_size)


def program_from_qmodel(q: QNetBase, meta: dict | None = None) -> Program:
    return analyze(lower(q, q.input_shape(), meta))


def program_from_checkpoint(ckpt: str | None) -> Program:
    from ..quant.qat import load_qmodel

    q, blob = load_qmodel(ckpt)
    meta = {"source": blob["path"], "model_config": blob["model_config"], "quant_config": blob["quant_config"]}
    return program_from_qmodel(q, meta)


@torch.no_grad()
def random_qmodel(arch: str | MobileNetV2Config, qc: QuantConfig, seed: int = 0,
                  calib_images: int = 16) -> QMobileNetV2:
    """A QMobileNetV2 with random weights whose BN statistics are measured, calibrated on random images.

    Stands in for ImageNet-trained weights in hardware studies: same shapes, Po2 weights spread
    over the exponent range, and the requested fraction of pruned weights. Random BN statistics
    would not match what the convolutions produce, so activations would shrink or saturate layer
    after layer until the deep layers no longer depend on the input (a width-0.35 32x32 network
    gave 2 distinct logit vectors on 256 images). Instead every BN's running mean and variance are
    those of its input on `calib_images` structured random images (random_images), as a trained
    network's are on its data: each layer's pre-activation is then centred and of unit variance,
    and the outputs stay input-dependent through every layer (tests/sim/test_random_nets.py).
    """
    cfg = ARCHS[arch] if isinstance(arch, str) else arch
    torch.manual_seed(seed)
    fp32 = MobileNetV2(cfg)
    for m in fp32.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0.0, 0.1)
    torch.nn.init.normal_(fp32.classifier[1].weight, 0.0, 0.05)
    x = torch.from_numpy(random_images(input_shape(cfg), calib_images, seed=seed + 1))
    bns = [m for m in fp32.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:   # a cumulative average of batch statistics: one batch gives exactly its statistics
        m.reset_running_stats()
        m.momentum = None
    fp32.train()
    fp32(to_model_input(x))
    fp32.eval()
    q = QMobileNetV2(fp32, qc)
    if qc.prune > 0:
        apply_masks([m for _, m in q.hardened_convs()], qc.prune, qc.prune_scope)
    calibrate(q, [to_model_input(x)])
    q.eval()
    return q


def random_images(shape: tuple[int, int, int], n: int, seed: int = 0) -> np.ndarray:
    """n uint8 images that differ as real ones do: per image, a smooth random field (a random 4x4
    grid per channel, bilinearly upsampled) with a random brightness and contrast, plus pixel
    noise. Pure per-pixel noise would make every image's spatial averages, and so a CNN's pooled
    features, nearly the same."""
    c, h, w = shape
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(-1, 1, (n, c, 4, 4)).astype(np.float32))
    field = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False).numpy()
    gain = rng.uniform(20, 110, (n, 1, 1, 1))
    base = rng.uniform(40, 215, (n, 1, 1, 1))
    noise = rng.normal(0, 12, (n, c, h, w))
    return np.clip(np.floor(base + gain * field + noise + 0.5), 0, 255).astype(np.uint8)


def compile_build(out_dir, checkpoint: str | None = None, arch: str | None = None, prune: float = 0.0,
                  exp_bits: int = 3, seed: int = 0, classifier: str = "npu") -> tuple[Program, dict]:
    """Lower a checkpoint (or a random-weight `arch`, with an int8 "npu" or a hardened "po2"
    classifier) and write the IR into out_dir."""
    from pathlib import Path

    from ..errors import UserError
    from . import serialize

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create build folder {out}: {e.strerror or e}") from None
    if arch is not None:
        if arch not in ARCHS:
            raise UserError(f"unknown --arch {arch!r}: choose from {sorted(ARCHS)}")
        qc = QuantConfig(exp_bits=exp_bits, prune=prune, classifier=classifier).validate()
        q = random_qmodel(arch, qc, seed)
        prog = program_from_qmodel(q, {"arch": arch, "random_weights": True, "seed": seed,
                                       "model_config": q.cfg.to_dict(), "quant_config": qc.to_dict()})
    else:
        prog = program_from_checkpoint(checkpoint)
    js, npz = serialize.save(prog, out)
    return prog, {"ir_json": str(js), "ir_npz": str(npz)}


def summarize(prog: Program) -> dict:
    """Counts a user wants after compiling: ops, weights, nonzero Po2 terms, widest accumulator."""
    from .intervals import bits_for
    from .spec import Conv, Linear

    weights = nonzero = 0
    for op in prog.ops:
        if isinstance(op, (Conv, Linear)):
            w = prog.arrays[op.weight]
            weights += int(w.size)
            nonzero += int(np.count_nonzero(w))
    widest = max(bits_for(op.acc_lo, op.acc_hi) for op in prog.ops)
    return {"ops": len(prog.ops), "weights": weights, "nonzero_weights": nonzero,
            "max_acc_bits": widest, "output": prog.output, "output_shape": list(prog.tensors[prog.output].shape)}
