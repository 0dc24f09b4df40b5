"""The speed options tried on the face pipeline, each measured against what ships, in one run.

Run: .venv/bin/python -m benchmarks.pipeline_options [--photos 200] [--runs 300]
Needs LFW's development view (../shared/data/lfw-dev or FV_LFW_DIR) and the train extra (torch,
facenet-pytorch's weights) for the nets as trained. Sections:
1. Real inputs: every k-th photo of the people of pairsDevTrain.txt goes through the shipped detector,
   keeping what each net sees (P-Net's pyramid levels, R-Net's and O-Net's crop batches, the embedder's
   chip of the largest face), each with its mirror image.
2. ONNX Runtime's graph optimisation levels, on a typical input of each net.
3. int8 static quantisation (QDQ, per channel, MinMax calibrated on three quarters of the photos):
   time, the largest output change on the other quarter, and for the embedder LFW DevTest's figures.
4. The serving form of the MTCNN nets against the form shipped before it and the nets as trained.
5. The pyramid's first level: detection over every level against the pipeline's smallest face (32 px).
Every variant's entry says whether it is kept (ships) and why, from the figures of this run.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch
from PIL import Image
from torch import nn

from app.face.detector import Detection, MtcnnDetector, _regress, _square, nms
from app.face.pipeline import FacePipeline, PipelineSettings, largest_first
from app.face.runtime import configure_threads, session_options
from benchmarks.results_file import write_results
from tests.assets import LFW_DEV
from training.build import _MTCNN_PLANS, _float_pixels
from training.evaluate import evaluate_pairs
from training.export import export_onnx
from training.lfw import pair_people, read_pairs
from training.quantise import FeedReader, quantised
from training.weights.mtcnn import load_mtcnn_net

Array = npt.NDArray[Any]
Feeds = dict[str, Array]

MODELS = Path("models")
NETS = {
    "pnet": ("mtcnn_pnet.onnx", "images"),
    "rnet": ("mtcnn_rnet.onnx", "crops"),
    "onet": ("mtcnn_onet.onnx", "crops"),
    "embedder": ("dlib_resnet_v1.onnx", "chips"),
}
LEVELS = {
    "ORT_DISABLE_ALL": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "ORT_ENABLE_BASIC": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "ORT_ENABLE_EXTENDED": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "ORT_ENABLE_ALL": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
SHIPPED_LEVEL = "ORT_ENABLE_ALL"
# MTCNN's Softmax stays float: its probabilities are compared with thresholds.
MTCNN_QUANTISED_OPS = ["Conv", "Gemm", "MaxPool"]
HELD_OUT_EVERY = 4  # every 4th photo is kept out of int8 calibration, to measure output changes on
NOISE = 0.03  # time ratios within 3% of 1 are called the same
SMALLEST_FACE = 32.0
SAME_FACE_IOU = 0.9


@dataclass
class RealInputs:
    """What each net saw on real photos: per net, (photo index, feed array) with mirror images."""

    samples: dict[str, list[tuple[int, Array]]] = field(default_factory=lambda: {n: [] for n in NETS})
    typical: dict[str, Array] = field(default_factory=dict)
    photos: int = 0

    def calibration(self, net: str) -> list[Array]:
        """The net's inputs from photos used to calibrate."""
        return [a for i, a in self.samples[net] if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]

    def held_out(self, net: str) -> list[Array]:
        """The net's inputs from photos kept out of calibration."""
        return [a for i, a in self.samples[net] if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]


def devtrain_photos(count: int) -> list[Path]:
    """Every k-th photo of the people of pairsDevTrain.txt (name order), `count` of them."""
    people = pair_people(LFW_DEV / "pairsDevTrain.txt")
    paths = sorted(p for name in people for p in (LFW_DEV / "images" / name).glob("*.jpg"))
    step = max(1, len(paths) // count)
    return paths[::step][:count]


def mirrored(batch: Array) -> Array:
    """An NHWC batch flipped left to right."""
    return np.ascontiguousarray(batch[:, :, ::-1])


def detector_inputs(detector: MtcnnDetector, image: npt.NDArray[np.uint8]) -> dict[str, list[Array]]:
    """P-Net's levels, R-Net's and O-Net's crop batches for one image, as detect() makes them."""
    picture = Image.fromarray(image)
    pyramid = detector._pyramid(picture, None)
    seen: dict[str, list[Array]] = {
        "pnet": [np.asarray(level, dtype=np.float32)[None] for _, level in pyramid],
        "rnet": [],
        "onet": [],
    }
    boxes = detector._stage_one(pyramid)
    if len(boxes) == 0:
        return seen
    crops = detector._crops(picture, pyramid, boxes, 24)
    seen["rnet"].append(crops)
    regression, probability = detector.rnet.run(None, {"crops": crops})
    keep = probability > detector.settings.thresholds[1]
    boxes = np.hstack([boxes[keep, :4], probability[keep, None]])
    picked = nms(boxes[:, :4], boxes[:, 4], 0.7)
    boxes, regression = boxes[picked], regression[keep][picked]
    boxes = _square(np.hstack([_regress(boxes[:, :4], regression, plus_one=True), boxes[:, 4:5]]))
    if len(boxes):
        seen["onet"].append(detector._crops(picture, pyramid, boxes, 48))
    return seen


def median_batch(batches: list[Array]) -> Array:
    """The batch whose size is the median of the batch sizes."""
    ordered = sorted(batches, key=len)
    return ordered[len(ordered) // 2]


def collect_inputs(pipeline: FacePipeline, paths: list[Path]) -> RealInputs:
    """Section 1: what each net sees on the photos, and a typical input of each."""
    inputs = RealInputs(photos=len(paths))
    detector = pipeline.detector
    for index, path in enumerate(paths):
        image = pipeline.decode(path.read_bytes())
        for net, arrays in detector_inputs(detector, image).items():
            inputs.samples[net] += [(index, a) for array in arrays for a in (array, mirrored(array))]
        faces = pipeline.detect(image)
        if faces:
            chip = pipeline.chip(image, faces[0])[None]
            inputs.samples["embedder"].append((index, np.concatenate([chip, mirrored(chip)])))
        if index == 0:
            # The first level the pipeline searches: the shipped smallest face skips the ones above it.
            _, level = detector._pyramid(Image.fromarray(image), pipeline.settings.min_face_size)[0]
            inputs.typical["pnet"] = np.asarray(level, dtype=np.float32)[None]
    for net in ("rnet", "onet"):
        inputs.typical[net] = median_batch([a for _, a in inputs.samples[net][::2]])
    inputs.typical["embedder"] = inputs.samples["embedder"][0][1]
    return inputs


def session(model: Path | str, options: ort.SessionOptions) -> ort.InferenceSession:
    """A CPU session of a model file."""
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class Timings:
    """Median and best ms per run of each session (the best is the least disturbed by other load)."""

    median: dict[str, float]
    best: dict[str, float]


def timed_ms(sessions: dict[str, ort.InferenceSession], feeds: Feeds, runs: int) -> Timings:
    """Milliseconds per run of each session on the same feeds, taking turns (the first rotating)."""
    for s in sessions.values():
        s.run(None, feeds)  # warm-up
    names = list(sessions)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(runs):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            started = time.perf_counter()
            sessions[name].run(None, feeds)
            samples[name].append(1000 * (time.perf_counter() - started))
    return Timings(
        median={name: round(statistics.median(values), 3) for name, values in samples.items()},
        best={name: round(min(values), 3) for name, values in samples.items()},
    )


def compared(ratio: float, reference: str) -> str:
    """A time ratio (variant over reference) in words."""
    if abs(ratio - 1) <= NOISE:
        return f"as fast as {reference} (x{ratio:.2f}, within {NOISE:.0%})"
    return (
        f"{ratio:.2f}x slower than {reference}" if ratio > 1 else f"{1 / ratio:.2f}x faster than {reference}"
    )


def entry(variant: str, ms: float, shipped_ms: float, kept: bool, why: str, **extra: Any) -> dict[str, Any]:
    """One variant's record."""
    ratio = round(ms / shipped_ms, 3)
    return {"variant": variant, "ms": ms, "vs_shipped": ratio, "kept": kept, "why": why, **extra}


def shape_of(array: Array) -> list[int]:
    """An array's shape as a list."""
    return [int(d) for d in array.shape]


def level_options(threads: int, level: ort.GraphOptimizationLevel) -> ort.SessionOptions:
    """The project's session options with another graph optimisation level."""
    options = session_options(threads)
    options.graph_optimization_level = level
    return options


def optimisation_levels(inputs: RealInputs, threads: int, runs: int) -> dict[str, Any]:
    """Section 2: each graph optimisation level on each net's typical input."""
    section: dict[str, Any] = {}
    for net, (file, name) in NETS.items():
        sessions = {lv: session(MODELS / file, level_options(threads, value)) for lv, value in LEVELS.items()}
        timings = timed_ms(sessions, {name: inputs.typical[net]}, runs)
        ms = timings.median
        shipped = ms[SHIPPED_LEVEL]
        fastest = min(ms, key=ms.__getitem__)
        rows = []
        for level, value in ms.items():
            if level == SHIPPED_LEVEL:
                why = (
                    "ships: the fastest level on this net"
                    if fastest == level
                    else f"ships: {fastest} is {compared(ms[fastest] / shipped, level)} on this net"
                )
            else:
                why = f"{compared(value / shipped, SHIPPED_LEVEL)} ({value:.2f} vs {shipped:.2f} ms)"
            rows.append(
                entry(level, value, shipped, level == SHIPPED_LEVEL, why, best_ms=timings.best[level])
            )
        section[net] = {"input_shape": shape_of(inputs.typical[net]), "entries": rows}
        print(f"graph levels  {net:<8} " + "  ".join(f"{lv[4:]} {v:.2f}" for lv, v in ms.items()) + " ms")
    section["decision"] = levels_decision(section)
    return section


def levels_decision(section: dict[str, Any]) -> dict[str, str]:
    """Per level, its time over the shipped level's on every net, in words."""
    decision = {}
    for level in LEVELS:
        ratios = {
            net: next(r["vs_shipped"] for r in rows["entries"] if r["variant"] == level)
            for net, rows in section.items()
        }
        listed = ", ".join(f"{net} x{ratio:.2f}" for net, ratio in ratios.items())
        kept = "kept (ships)" if level == SHIPPED_LEVEL else "not kept"
        decision[level] = f"{kept}: time over {SHIPPED_LEVEL}'s: {listed}"
    return decision


def vnni_flags() -> dict[str, bool]:
    """Whether the CPU offers the 8-bit dot products int8 convolutions are fast with."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    return {"avx512_vnni": "avx512_vnni" in flags, "avx_vnni": "avx_vnni" in flags}


def int8_graph(model: Path, out_dir: Path, name: str, arrays: list[Array], ops: list[str] | None) -> Path:
    """The model statically quantised to int8 (QDQ, 8-bit weights), calibrated on `arrays`."""
    out = out_dir / f"{model.stem}.int8.onnx"
    quantised(model, out, FeedReader(name, arrays), ops=ops, reduce_range=False)
    return out


def max_difference(
    a: ort.InferenceSession, b: ort.InferenceSession, name: str, arrays: list[Array]
) -> dict[str, float]:
    """Per output, the largest absolute difference between the two sessions' values over the arrays."""
    worst = {output.name: 0.0 for output in a.get_outputs()}
    for array in arrays:
        for output, x, y in zip(worst, a.run(None, {name: array}), b.run(None, {name: array}), strict=True):
            worst[output] = max(worst[output], float(np.max(np.abs(np.asarray(x) - np.asarray(y)))))
    return {output: float(f"{value:.3g}") for output, value in worst.items()}


def listed(values: dict[str, float]) -> str:
    """Named values as 'a 0.1, b 0.02'."""
    return ", ".join(f"{name} {value:.3g}" for name, value in values.items())


def op_counts(model: Path) -> dict[str, int]:
    """How many nodes of each op type a model holds."""
    return dict(Counter(node.op_type for node in onnx.load(str(model)).graph.node))


def devtest_figures(pipeline: FacePipeline, threshold: float) -> dict[str, Any]:
    """LFW DevTest through the pipeline as it is now: 10-fold accuracy, AUC, accuracy at threshold."""
    pairs = read_pairs(LFW_DEV / "pairsDevTest.txt", LFW_DEV / "images")
    figures = evaluate_pairs(pipeline, pairs, threshold, progress=False)
    keys = ("pairs", "accuracy_10fold", "accuracy_10fold_std", "auc", "accuracy_at_threshold")
    return {key: round(figures[key], 4) if isinstance(figures[key], float) else figures[key] for key in keys}


def with_embedder_graph(pipeline: FacePipeline, model: Path, threads: int) -> Callable[[], None]:
    """Swap the pipeline's embedder sessions for one of `model`; returns the function that restores them."""
    held = pipeline.embedder.session
    parallel, serial = held.parallel, held.serial
    swapped = session(model, session_options(threads))
    held.parallel = held.serial = swapped

    def restore() -> None:
        held.parallel, held.serial = parallel, serial

    return restore


def embedder_accuracy(pipeline: FacePipeline, int8: Path, threads: int) -> dict[str, Any]:
    """DevTest figures with the shipped embedder and with the int8 graph swapped in."""
    threshold = pipeline.embedder.artifact.threshold.similarity  # type: ignore[union-attr]
    shipped = devtest_figures(pipeline, threshold)
    restore = with_embedder_graph(pipeline, int8, threads)
    try:
        int8_figures = devtest_figures(pipeline, threshold)
    finally:
        restore()
    return {"threshold": threshold, "shipped": shipped, "int8": int8_figures}


def int8_why(ms: dict[str, float], diff: dict[str, float], ops: dict[str, int], vnni: dict[str, bool]) -> str:
    """Why an int8 net is not kept, from its measurement."""
    speed = compared(ms["int8"] / ms["fp32"], "float")
    float_ops = ", ".join(f"{ops[op]} {op}" for op in ("PRelu", "Softmax") if ops.get(op))
    cpu = "with" if any(vnni.values()) else "without"
    text = (
        f"int8 is {speed} ({ms['int8']:.2f} vs {ms['fp32']:.2f} ms) on this CPU {cpu} VNNI; "
        f"max abs output difference on held-out photos: {listed(diff)}"
    )
    if float_ops:
        text += (
            f"; {float_ops} stay float between {ops.get('QuantizeLinear', 0)} QuantizeLinear and "
            f"{ops.get('DequantizeLinear', 0)} DequantizeLinear nodes"
        )
    return text


def embedder_why(ms: dict[str, float], accuracy: dict[str, Any]) -> str:
    """Why the int8 embedder is not kept, from its speed and DevTest figures."""
    s, q = accuracy["shipped"], accuracy["int8"]
    speed = compared(ms["int8"] / ms["fp32"], "float")
    return (
        f"int8 is {speed} ({ms['int8']:.2f} vs {ms['fp32']:.2f} ms for 2 chips); "
        f"DevTest 10-fold {q['accuracy_10fold']:.4f} vs {s['accuracy_10fold']:.4f}, AUC {q['auc']:.4f} vs "
        f"{s['auc']:.4f}, accuracy at the shipped threshold ({accuracy['threshold']}) "
        f"{q['accuracy_at_threshold']:.4f} vs {s['accuracy_at_threshold']:.4f}: it is a different model, "
        "whose threshold and calibration tables would need their own calibration"
    )


def int8_net(
    pipeline: FacePipeline, inputs: RealInputs, net: str, tmp: Path, threads: int, runs: int
) -> dict[str, Any]:
    """One net quantised to int8 against its shipped float graph: time, output change, ops (and DevTest)."""
    file, name = NETS[net]
    ops = None if net == "embedder" else MTCNN_QUANTISED_OPS
    int8 = int8_graph(MODELS / file, tmp, name, inputs.calibration(net), ops)
    sessions = {
        "fp32": session(MODELS / file, session_options(threads)),
        "int8": session(int8, session_options(threads)),
    }
    timings = timed_ms(sessions, {name: inputs.typical[net]}, runs)
    ms = timings.median
    held_out = inputs.held_out(net)
    diff = max_difference(sessions["fp32"], sessions["int8"], name, held_out)
    counts = op_counts(int8)
    record: dict[str, Any] = {
        "input_shape": shape_of(inputs.typical[net]),
        "calibration_inputs": len(inputs.calibration(net)),
        "held_out_inputs": len(held_out),
        "max_abs_output_difference": diff,
        "int8_graph_ops": counts,
    }
    if net == "embedder":
        record["devtest"] = embedder_accuracy(pipeline, int8, threads)
        why = embedder_why(ms, record["devtest"])
    else:
        why = int8_why(ms, diff, counts, vnni_flags())
    record["entries"] = [
        entry("fp32 (shipped)", ms["fp32"], ms["fp32"], True, "ships", best_ms=timings.best["fp32"]),
        entry(
            "int8 QDQ per-channel, MinMax", ms["int8"], ms["fp32"], False, why, best_ms=timings.best["int8"]
        ),
    ]
    print(
        f"int8          {net:<8} fp32 {ms['fp32']:.2f} ms  int8 {ms['int8']:.2f} ms  max diff {listed(diff)}"
    )
    return record


def quantisation(pipeline: FacePipeline, inputs: RealInputs, threads: int, runs: int) -> dict[str, Any]:
    """Section 3: int8 static quantisation of each net against the shipped float graph."""
    section: dict[str, Any] = {"cpu_flags": vnni_flags()}
    with tempfile.TemporaryDirectory() as tmp:
        for net in NETS:
            section[net] = int8_net(pipeline, inputs, net, Path(tmp), threads, runs)
    for variant, figures in section["embedder"]["devtest"].items():
        if isinstance(figures, dict):
            print(
                f"  DevTest {variant:<7} 10-fold {figures['accuracy_10fold']:.4f}  AUC {figures['auc']:.4f}  "
                f"at threshold {figures['accuracy_at_threshold']:.4f}"
            )
    return section


class SplitPReLUConv(nn.Module):
    """The serving form shipped before: a convolution and its PReLU as a * conv(x) + relu((1 - a) *
    conv(x)), two convolutions whose weights carry the slopes (exact where every slope is at most 1)."""

    def __init__(self, conv: nn.Conv2d, prelu: nn.PReLU) -> None:
        super().__init__()
        slopes = prelu.weight.detach()
        self.linear = self._scaled(conv, slopes)
        self.rectified = self._scaled(conv, 1 - slopes)

    @staticmethod
    def _scaled(conv: nn.Conv2d, factors: torch.Tensor) -> nn.Conv2d:
        scaled = copy.deepcopy(conv)
        with torch.no_grad():
            scaled.weight.mul_(factors[:, None, None, None])
            if scaled.bias is not None:
                scaled.bias.mul_(factors)
        return scaled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + torch.relu(self.rectified(x))


def split_form(net: nn.Module) -> nn.Module:
    """A copy of a net with each convN + preluN whose slopes are all at most 1 made a SplitPReLUConv."""
    split = copy.deepcopy(net)
    index = 1
    while isinstance(conv := getattr(split, f"conv{index}", None), nn.Conv2d):
        prelu = getattr(split, f"prelu{index}")
        if bool((prelu.weight <= 1).all()):
            setattr(split, f"conv{index}", SplitPReLUConv(conv, prelu))
            setattr(split, f"prelu{index}", nn.Identity())
        index += 1
    return split.eval()


def exported(stage: str, module: nn.Module, path: Path) -> Path:
    """A form of an MTCNN net exported with the build's arguments."""
    plan = _MTCNN_PLANS[stage]
    example = _float_pixels(plan.example_shape, 0)
    outputs = [o.name for o in plan.outputs]
    return export_onnx(module, example, path, plan.inputs[0].name, outputs, plan.dynamic_axes)


def serving_form(inputs: RealInputs, threads: int, runs: int) -> dict[str, Any]:
    """Section 4: the shipped serving form against the form shipped before it (split convolutions)
    and the nets as trained, on the same inputs."""
    section: dict[str, Any] = {}
    labels = {"split": "split convolutions (the form shipped before)", "trained": "as trained"}
    with tempfile.TemporaryDirectory() as tmp:
        for net in ("pnet", "rnet", "onet"):
            file, name = NETS[net]
            trained = load_mtcnn_net(net)
            files = {
                "serving": MODELS / file,
                "split": exported(net, split_form(trained), Path(tmp) / f"{net}_split.onnx"),
                "trained": exported(net, trained, Path(tmp) / f"{net}_as_trained.onnx"),
            }
            sessions = {form: session(path, session_options(threads)) for form, path in files.items()}
            timings = timed_ms(sessions, {name: inputs.typical[net]}, runs)
            ms, best = timings.median, timings.best
            entries = [entry("serving form (shipped)", ms["serving"], ms["serving"], True, "ships")]
            differences = {}
            for form, label in labels.items():
                diff = max_difference(sessions["serving"], sessions[form], name, inputs.held_out(net))
                differences[form] = diff
                why = (
                    f"{label} is {compared(ms[form] / ms['serving'], 'the serving form')} "
                    f"({ms[form]:.2f} vs {ms['serving']:.2f} ms); outputs agree to {max(diff.values()):.2g}"
                )
                entries.append(entry(label, ms[form], ms["serving"], False, why, best_ms=best[form]))
            entries[0]["best_ms"] = best["serving"]
            section[net] = {
                "input_shape": shape_of(inputs.typical[net]),
                "max_abs_output_difference": differences,
                "prelu_nodes": {form: op_counts(path).get("PRelu", 0) for form, path in files.items()},
                "entries": entries,
            }
            print(
                f"serving form  {net:<8} serving {ms['serving']:.2f} ms  split {ms['split']:.2f} ms  "
                f"as trained {ms['trained']:.2f} ms"
            )
    return section


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def same_face(one: list[Detection], other: list[Detection]) -> bool:
    """Whether two detection lists have the same largest face (or both none)."""
    if not one or not other:
        return not one and not other
    return iou(largest_first(one)[0].box, largest_first(other)[0].box) >= SAME_FACE_IOU


def first_level(pipeline: FacePipeline, paths: list[Path]) -> dict[str, Any]:
    """Section 5: detection over every pyramid level against the pipeline's smallest face."""
    detector = pipeline.detector
    images = [pipeline.decode(p.read_bytes()) for p in paths]
    detector.detect(images[0])  # warm-up
    every: list[float] = []
    skipping: list[float] = []
    found = {"every": 0, "skipping": 0}
    same_largest = 0
    for index, image in enumerate(images):
        runs = [("every", None, every), ("skipping", SMALLEST_FACE, skipping)]
        results = {}
        for key, smallest, times in runs if index % 2 == 0 else runs[::-1]:
            started = time.perf_counter()
            results[key] = detector.detect(image, smallest_face=smallest)
            times.append(1000 * (time.perf_counter() - started))
            found[key] += len(results[key])
        same_largest += same_face(results["every"], results["skipping"])
    all_ms, skip_ms = statistics.median(every), statistics.median(skipping)
    why = (
        f"searching every level is {compared(all_ms / skip_ms, f'starting at {SMALLEST_FACE:.0f} px faces')} "
        f"({all_ms:.2f} vs {skip_ms:.2f} ms), and the largest face is the same "
        f"(IoU >= {SAME_FACE_IOU}) on {same_largest} of {len(images)} photos; the pipeline refuses faces "
        f"below {SMALLEST_FACE:.0f} px anyway"
    )
    print(f"pyramid       every level {all_ms:.2f} ms  smallest face {SMALLEST_FACE:.0f}: {skip_ms:.2f} ms")
    return {
        "photos": len(images),
        "faces_found": found,
        "same_largest_face": {"photos": same_largest, "iou_at_least": SAME_FACE_IOU},
        "entries": [
            entry(f"smallest_face={SMALLEST_FACE:.0f} (shipped)", round(skip_ms, 3), skip_ms, True, "ships"),
            entry("every level (smallest_face=None)", round(all_ms, 3), skip_ms, False, why),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=200, help="DevTrain photos for the real inputs")
    parser.add_argument("--runs", type=int, default=300, help="timed runs of each variant")
    args = parser.parse_args()

    load_start = round(os.getloadavg()[0], 2)  # other work on the machine skews every timing
    threads = configure_threads()
    pipeline = FacePipeline.from_models(MODELS, PipelineSettings())
    if pipeline.settings.min_face_size != SMALLEST_FACE:
        raise SystemExit(
            f"the pipeline's smallest face is {pipeline.settings.min_face_size}, not {SMALLEST_FACE}"
        )
    paths = devtrain_photos(args.photos)
    inputs = collect_inputs(pipeline, paths)
    counts = {net: len(samples) for net, samples in inputs.samples.items()}
    print(f"real inputs from {len(paths)} DevTrain photos (with mirror images): {counts}")
    figures = {
        "photos": len(paths),
        "runs_per_variant": args.runs,
        "threads": threads,
        "onnxruntime": ort.__version__,
        "load_average_1min": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        "vs_shipped": "the variant's median ms over the shipped one's on the same input: above 1 is slower",
        "best_ms": "the fastest run of a variant: the time least disturbed by other work on the machine",
        "real_inputs": {
            "inputs_with_mirrors": counts,
            "typical_input_shapes": {net: shape_of(a) for net, a in inputs.typical.items()},
        },
        "graph_optimization_level": optimisation_levels(inputs, threads, args.runs),
        "int8_static_quantisation": quantisation(pipeline, inputs, threads, args.runs),
        "prelu_serving_form": serving_form(inputs, threads, args.runs),
        "pyramid_first_level": first_level(pipeline, paths),
    }
    path = write_results("pipeline_options", figures)
    print(f"\nrecorded in {path}")


if __name__ == "__main__":
    main()
