"""Inference and training speed of every model on this machine, before and after optimisation.

For each teacher x model, in a fresh child process (so peak RSS is that model's):
FLOPs per image (torch.utils.flop_counter), inference latency at batch 1 and
throughput at batch 16 (median of several runs after warm-up) for the plain
PyTorch model ("before"), the inference-optimised one (snlad.engine.optimise)
with 1, 2, 4, 8 or all 16 images per forward pass ("after" = the CPU default),
the same through torch.compile, and the exported ONNX graph in onnxruntime;
training images/s (the engine's loss and Adam step) and peak RSS. For FD, each
conv is also timed alone (cache-hot), which bounds what any schedule of the
same convs could reach. The machine's float32 matmul peak
(a large sgemm) turns FLOPs into a FLOP-bound limit, so every speed is also
a fraction of it (measured in each model's process). Writes docs/results/bench-speed.md and .json.

    python bench/bench_speed.py            # full run (~30 min on 2 cores)
    python bench/bench_speed.py --quick    # smoke run: 64 px, one teacher, two models, to a temp folder
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("fd", "snl-fd", "rd", "snl-rd")
TEACHERS = ("efficientnet_lite0", "wide_resnet50_2")
PRETRAINED = {"efficientnet_lite0": True, "wide_resnet50_2": False}  # WRN: cost only, random weights


def machine() -> dict:
    """CPU model, cores this process may use, torch build and the load when measured."""
    model = platform.processor() or "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
    }


def matmul_peak_gflops(size: int = 2048, repeats: int = 20) -> float:
    """Best float32 GFLOP/s of ``size``-square matmuls: the FLOP-bound ceiling of this machine."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - started) / 1e9)
    return best


WARMUP = 2


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def demo_batch(size: int, count: int) -> torch.Tensor:
    """Real demo test images at ``size`` px, repeated to ``count``."""
    from snlad.data import AnomalyDataset, index_dataset

    dataset = AnomalyDataset(index_dataset(ROOT / "data" / "demo", "test"), size)
    images = [dataset[i % len(dataset)]["image"] for i in range(count)]
    return torch.stack(images)


def flops_per_image(fn, image: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn(image)
    return counter.get_total_flops() / image.shape[0]


def interleaved_medians(contenders: dict, runs: int, warmup: int = WARMUP) -> dict[str, float]:
    """Median seconds of each callable, timed round-robin so load changes hit all of them alike."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, fn in contenders.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


MICRO_BATCHES = (1, 2, 4, 8, 16)  # swept at batch 16; 16 = the whole batch in one forward pass


def build(model_name: str, teacher: str, size: int):
    """(config, plain TrainedModel, a function micro_batch -> its inference-optimised copy)."""
    from snlad.config import preset
    from snlad.engine.optimise import optimise_for_inference
    from snlad.models import build_model
    from snlad.runs.trained import TrainedModel, build_scorer

    config = preset(model_name)
    config.model.teacher, config.data.image_size = teacher, size
    torch.manual_seed(0)
    model = build_model(config.model, pretrained_teacher=PRETRAINED[teacher])
    trained = TrainedModel(config, model, build_scorer(config, model), ["bench"]).eval()
    return (
        config,
        trained,
        lambda micro_batch=None, **kwargs: optimise_for_inference(trained, micro_batch=micro_batch, **kwargs),
    )


def measure(
    model_name: str, teacher: str, size: int, runs: int, with_ort: bool, with_compile: bool, threads: int
) -> dict:
    """Every number of one model (runs in a child process). Compared variants are timed interleaved.

    *after* is what ``snlad test``/``predict`` run by default (micro-batched on a CPU); ``micro<k>``
    the same model with k images per forward pass (16 = the whole batch at once).
    """
    from snlad.device import use_all_cores
    from snlad.engine.optimise import cpu_micro_batch

    use_all_cores() if threads == 0 else torch.set_num_threads(threads)
    peaks = [matmul_peak_gflops()]  # again at the end: clock speed and neighbours drift over minutes
    config, trained, optimised = build(model_name, teacher, size)
    fast = optimised()
    plain = lambda x: trained.scorer(*trained.model(x))  # noqa: E731
    batch16, batch1 = demo_batch(size, 16), demo_batch(size, 1)
    result = {"model": model_name, "teacher": teacher, "size": size, "runs": runs, "micro_batch": cpu_micro_batch(size)}
    result["gflop_per_image"] = flops_per_image(plain, batch1) / 1e9
    result["gflop_per_image_optimised"] = flops_per_image(fast.score, batch1) / 1e9
    with torch.inference_mode():
        result["parity_max_abs_map_diff"] = float((plain(batch16)[0] - fast.score(batch16)[0]).abs().max())
    result["rss_inference_mb"] = peak_rss_mb()
    train_step = training_step(config)
    train_step()
    result["rss_training_mb"] = peak_rss_mb()
    contenders1 = {"before": lambda: plain(batch1), "after": lambda: fast.score(batch1)}
    contenders16 = {"before": lambda: plain(batch16)}
    per_pass = min(fast.micro_batch, 16)  # 64 px gives 64: the whole batch of 16
    for micro in MICRO_BATCHES:
        model = fast if micro == per_pass else optimised(micro)
        contenders16[f"micro{micro}"] = lambda model=model: model.score(batch16)
    training = {"train": train_step}
    if with_compile:
        started = time.perf_counter()
        compiled = optimised(torch_compile=True)
        with torch.inference_mode():
            compiled.score(batch1)  # compiles the batch-1 shape too, outside the timing
            result["compiled_parity_max_abs_map_diff"] = float(
                (plain(batch16)[0] - compiled.score(batch16)[0]).abs().max()
            )
        result["compile_seconds"] = time.perf_counter() - started
        contenders1["compiled"], contenders16["compiled"] = (
            (lambda: compiled.score(batch1)),
            (lambda: compiled.score(batch16)),
        )
    if with_ort:
        run, result["ort_parity_max_abs_map_diff"] = onnxruntime_runner(trained, batch16, plain)
        contenders1["ort"], contenders16["ort_whole"] = (lambda: run(batch1)), (lambda: run(batch16))
        contenders16["ort"] = lambda: [run(part) for part in batch16.split(per_pass)]
    if model_name.startswith("snl-"):  # its baseline, timed alongside for the SNL / baseline ratio
        base_config, _, base_optimised = build(model_name.removeprefix("snl-"), teacher, size)
        base_fast = base_optimised()
        contenders16["baseline_after"] = lambda: base_fast.score(batch16)
        training["baseline_train"] = training_step(base_config)
    with torch.inference_mode():
        for name, seconds in interleaved_medians(contenders1, runs).items():
            result[f"{name}_latency_ms"] = 1e3 * seconds
        for name, seconds in interleaved_medians(contenders16, runs).items():
            result[f"{name}_images_per_s"] = 16 / seconds
        result["after_images_per_s"] = result[f"micro{per_pass}_images_per_s"]
        result["whole_images_per_s"] = result["micro16_images_per_s"]
        if model_name == "fd":
            result["conv_breakdown"] = conv_breakdown(fast.model, batch16[:per_pass], runs)
            result["conv_isolated"] = conv_isolated(fast.model, batch16[:per_pass])
            result["conv_isolated"]["pipeline_gflop"] = result["gflop_per_image_optimised"] * per_pass
    for name, seconds in interleaved_medians(training, max(2, runs // 2), warmup=1).items():
        result[f"{name}_images_per_s"] = config.train.batch_size / seconds
    result["matmul_peak_gflops"] = max(peaks + [matmul_peak_gflops()])
    return result


def conv_isolated(model: torch.nn.Module, images: torch.Tensor, repeats: int = 10) -> dict:
    """Each conv of one forward timed alone on a random input of its real shape, best of ``repeats``.

    Repeating one conv on one input keeps it in cache, so the sum of these times is a generous
    lower bound on the forward time of any pipeline built from these convs (no fusion, no misses).
    """
    shapes = []
    handles = [
        m.register_forward_hook(
            lambda m, i, o: shapes.append(
                (m, i[0].shape, i[0].is_contiguous(memory_format=torch.channels_last), o.numel())
            )
        )
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    model(images)
    for handle in handles:
        handle.remove()
    kinds: dict[str, dict[str, float]] = {}
    for conv, shape, nhwc, outputs in shapes:
        x = torch.randn(shape)
        x = x.contiguous(memory_format=torch.channels_last) if nhwc else x
        for _ in range(2):
            conv(x)
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - started)
        entry = kinds.setdefault(conv_kind(conv), {"seconds": 0.0, "gflop": 0.0})
        entry["seconds"] += best
        entry["gflop"] += conv_flop(conv, outputs) / 1e9
    return {"images": len(images), "kinds": kinds}


def conv_flop(conv: torch.nn.Conv2d, outputs: int) -> int:
    """FLOPs of one conv call producing ``outputs`` values: a multiply and an add per weight tap."""
    return 2 * outputs * (conv.in_channels // conv.groups) * conv.kernel_size[0] * conv.kernel_size[1]


def conv_kind(conv: torch.nn.Conv2d) -> str:
    if conv.groups > 1 and conv.groups == conv.in_channels:
        return "depthwise"
    return "1x1" if conv.kernel_size == (1, 1) else "dense kxk"


def conv_breakdown(model: torch.nn.Module, images: torch.Tensor, runs: int) -> dict:
    """Time and GFLOP/s per conv kind (depthwise, 1x1, other) of one forward, from hooks around every conv."""
    kinds = {}
    spent: dict[str, list[float]] = {}

    def before(module, inputs):
        module._started = time.perf_counter()

    def after(module, inputs, output):
        entry = kinds[module]
        entry["seconds"] += time.perf_counter() - module._started
        entry["flop"] = conv_flop(module, output.numel())

    handles = []
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            kinds[module] = {"kind": conv_kind(module), "seconds": 0.0, "flop": 0}
            handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    model(images)  # warm-up
    for entry in kinds.values():
        entry["seconds"] = 0.0
    started = time.perf_counter()
    for _ in range(runs):
        model(images)
    total = (time.perf_counter() - started) / runs
    for handle in handles:
        handle.remove()
    for entry in kinds.values():
        row = spent.setdefault(entry["kind"], [0.0, 0.0])
        row[0] += entry["seconds"] / runs
        row[1] += entry["flop"]
    breakdown = {
        name: {
            "seconds": sec,
            "gflop": flop / 1e9,
            "gflop_per_s": flop / 1e9 / max(sec, 1e-12),
            "share_of_time": sec / total,
        }
        for name, (sec, flop) in spent.items()
    }
    breakdown["model_forward_seconds"] = total
    return breakdown


def onnxruntime_session(path: Path, spinning: bool = False):
    """An onnxruntime CPU session on ``path`` with torch's thread count.

    Spinning off by default: idle ORT threads otherwise busy-wait after each run and steal the cores
    from the PyTorch variant timed next (measured: -12 to -20 % on the EfficientNet FD model,
    bench_cpu_options.py), skewing every interleaved ratio.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnxruntime_runner(trained, batch16: torch.Tensor, plain):
    """A callable running the exported ONNX graph in onnxruntime, and its map difference to PyTorch."""
    from snlad.deploy.export import export

    with tempfile.TemporaryDirectory() as folder:
        session = onnxruntime_session(export(trained, "onnx", Path(folder) / "model.onnx"))
    run = lambda x: session.run(None, {"images": x.numpy()})  # noqa: E731
    with torch.inference_mode():
        reference = plain(batch16)[0].numpy()
    return run, float(abs(run(batch16)[0] - reference).max())


def training_step(config):
    """The engine's training step (forward, loss, backward, Adam) on demo images at the config's batch size."""
    from snlad.losses import distillation_loss
    from snlad.models import build_model

    torch.manual_seed(0)
    model = build_model(config.model, pretrained_teacher=False).train()
    optimizer = torch.optim.Adam(model.student_parameters(), lr=config.train.lr, betas=config.train.betas)
    images = demo_batch(config.data.image_size, config.train.batch_size)

    def step() -> None:
        teacher, student = model(images)
        loss, _ = distillation_loss(teacher, student, config.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def run_child(model_name: str, teacher: str, args: argparse.Namespace) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        runs = args.runs if teacher.startswith("efficientnet") else min(args.runs, args.runs_large)
        command = [
            sys.executable,
            __file__,
            "--child",
            model_name,
            teacher,
            "--size",
            str(args.size),
            "--runs",
            str(runs),
            "--threads",
            str(args.threads),
            "--json",
            out.name,
        ]
        command += ([] if args.ort else ["--no-ort"]) + ([] if args.compile else ["--no-compile"])
        subprocess.run(command, check=True)
        return json.loads(Path(out.name).read_text())


def add_ratios(rows: list[dict]) -> None:
    for row in rows:
        limit = row["matmul_peak_gflops"] / row["gflop_per_image"]  # images/s if every FLOP ran at the matmul peak
        row["flop_bound_images_per_s"] = limit
        for name in ("before", "whole", "after", "compiled", "ort_whole", "ort"):
            if f"{name}_images_per_s" in row:
                row[f"{name}_flop_fraction"] = row[f"{name}_images_per_s"] / limit
        row["speedup_b16"] = row["after_images_per_s"] / row["before_images_per_s"]
        row["speedup_b1"] = row["before_latency_ms"] / row["after_latency_ms"]
        if "baseline_after_images_per_s" in row:  # timed interleaved with the SNL model, in its process
            row["snl_time_ratio_after"] = row["baseline_after_images_per_s"] / row["after_images_per_s"]
            row["snl_train_time_ratio"] = row["baseline_train_images_per_s"] / row["train_images_per_s"]


def _fraction(row: dict, name: str) -> str:
    return (
        f"{row[name + '_images_per_s']:.1f} ({100 * row[name + '_flop_fraction']:.0f}%)"
        if f"{name}_images_per_s" in row
        else "n/a"
    )


def markdown(info: dict, rows: list[dict], load_after: tuple) -> str:
    first = rows[0]
    peaks = [r["matmul_peak_gflops"] for r in rows]
    lines = [
        "# Inference and training speed",
        "",
        "Generated by `python bench/bench_speed.py` (this file is overwritten on every run; analysis in docs/scaling.md).",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores available, torch {info['torch']} ({info['threads']} threads). "
        f"Float32 matmul peak (2048^3 sgemm, best of 20), measured in each model's process before and after its timings, "
        f"the higher kept: **{min(peaks):.0f}-{max(peaks):.0f} GFLOP/s** (oneDNN's largest dense convs can exceed it slightly). "
        f"Load average before / after: {', '.join(f'{v:.1f}' for v in info['load_average'])} / {', '.join(f'{v:.1f}' for v in load_after)} "
        "(a load above the core count means other jobs shared the CPUs, which slows and scatters every number).",
        "",
        f"{first['size']} px; medians of {first['runs']} runs ({rows[-1]['runs']} for the last teacher) after {WARMUP} warm-ups; "
        "the variants of one model (and an SNL model's baseline) are timed round-robin in one process so that load changes "
        "hit them alike; all ratios come from this one run. "
        "*before* = the plain PyTorch model as trained; *whole* = `snlad.engine.optimise.optimise_for_inference` "
        "(BatchNorm folded, channels-last, upsampling + blur as matmuls) with the batch of 16 in one forward pass; "
        f"*after* = the same, {min(first['micro_batch'], 16)} images per forward pass (the default of `snlad test`/`predict` on a CPU); "
        "*compiled* = *after* through `torch.compile` (`--compile`); *ORT* = the exported ONNX graph in onnxruntime, "
        "fed the batch whole or in the same micro-batches. "
        "In brackets: the fraction of the FLOP-bound limit (that process's matmul peak / FLOPs per image). "
        "wide_resnet50_2 uses random weights (cost only).",
        "",
        "## Throughput at batch 16 (images/s, FLOP-bound fraction)",
        "",
        "| teacher | model | GFLOP/img | before | whole | after | compiled | ORT whole | ORT micro | after / before |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['teacher']} | {r['model']} | {r['gflop_per_image']:.2f} | {_fraction(r, 'before')} | {_fraction(r, 'whole')} | "
            f"**{_fraction(r, 'after')}** | {_fraction(r, 'compiled')} | {_fraction(r, 'ort_whole')} | {_fraction(r, 'ort')} | {r['speedup_b16']:.2f}x |"
        )
    lines += [
        "",
        "## Latency at batch 1, training, memory, parity",
        "",
        "| teacher | model | latency b1 ms: before / after / compiled / ORT | train img/s (b8) | peak RSS MB (inference / + training) | max map diff after / compiled / ORT | compile s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        latency = " / ".join(
            f"{r[f'{n}_latency_ms']:.0f}" if f"{n}_latency_ms" in r else "n/a"
            for n in ("before", "after", "compiled", "ort")
        )
        parity = " / ".join(
            f"{r[k]:.1e}" if k in r else "n/a"
            for k in ("parity_max_abs_map_diff", "compiled_parity_max_abs_map_diff", "ort_parity_max_abs_map_diff")
        )
        compile_s = f"{r['compile_seconds']:.0f}" if "compile_seconds" in r else "n/a"
        lines.append(
            f"| {r['teacher']} | {r['model']} | {latency} | {r['train_images_per_s']:.1f} | {r['rss_inference_mb']:.0f} / {r['rss_training_mb']:.0f} | {parity} | {compile_s} |"
        )
    lines += [
        "",
        "## Images per forward pass at batch 16 (optimised eager model, images/s)",
        "",
        "| teacher | model | " + " | ".join(str(m) for m in MICRO_BATCHES) + " |",
        "|---|---|" + "---|" * len(MICRO_BATCHES),
    ]
    for r in rows:
        best = max(r[f"micro{m}_images_per_s"] for m in MICRO_BATCHES)
        cells = [
            f"{r[f'micro{m}_images_per_s']:.1f}" + (" (best)" if r[f"micro{m}_images_per_s"] == best else "")
            for m in MICRO_BATCHES
        ]
        lines.append(f"| {r['teacher']} | {r['model']} | " + " | ".join(cells) + " |")
    for r in rows:
        if "conv_breakdown" in r:
            b, iso, peak = r["conv_breakdown"], r["conv_isolated"], r["matmul_peak_gflops"]
            pipeline = b["model_forward_seconds"]
            lines += [
                "",
                f"## Where the optimised {r['teacher']} fd forward spends its time",
                "",
                f"One forward pass of {iso['images']} images (teacher + student): {1e3 * pipeline:.1f} ms, per-conv hooks. "
                "*Alone*: each conv timed by itself on an input of its real shape, repeated on that input (so cache-hot), best of 10.",
                "",
                "| conv kind | share of forward time | GFLOP | in the forward: GFLOP/s (of peak) | alone: ms, GFLOP/s (of peak) |",
                "|---|---|---|---|---|",
            ]
            for kind, v in b.items():
                if isinstance(v, dict):
                    alone = iso["kinds"][kind]
                    lines.append(
                        f"| {kind} | {100 * v['share_of_time']:.0f}% | {v['gflop']:.2f} | {v['gflop_per_s']:.0f} ({100 * v['gflop_per_s'] / peak:.0f}%) | "
                        f"{1e3 * alone['seconds']:.1f}, {alone['gflop'] / alone['seconds']:.0f} ({100 * alone['gflop'] / alone['seconds'] / peak:.0f}%) |"
                    )
            conv_alone = sum(v["seconds"] for v in iso["kinds"].values())
            depthwise = iso["kinds"].get("depthwise")
            limit_seconds = iso["pipeline_gflop"] / peak
            lines += [
                "",
                f"Every conv at its cache-hot speed, nothing else: {1e3 * conv_alone:.1f} ms for the {iso['pipeline_gflop']:.2f} GFLOP "
                f"of the whole pipeline = **{100 * limit_seconds / conv_alone:.0f}%** of the FLOP-bound limit.",
            ]
            if depthwise:
                rest = (iso["pipeline_gflop"] - depthwise["gflop"]) / peak
                lines.append(
                    f"Depthwise convs at their cache-hot speed and everything else at the matmul peak: "
                    f"**{100 * limit_seconds / (depthwise['seconds'] + rest):.0f}%**."
                )
    ratios = [r for r in rows if "snl_time_ratio_after" in r]
    if ratios:
        lines += [
            "",
            "## SNL time / its baseline's time",
            "",
            "Both timed interleaved in the SNL model's process (batch 16, *after*; training step at batch 8).",
            "",
            "| teacher | model | inference | training |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['teacher']} | {r['model']} | {r['snl_time_ratio_after']:.2f} | {r['snl_train_time_ratio']:.2f} |"
            for r in ratios
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 64 px, 2 runs, efficientnet_lite0, fd + snl-fd, to a temp folder",
    )
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--teachers", default=",".join(TEACHERS))
    parser.add_argument("--runs-large", type=int, default=3, help="runs for wide_resnet50_2 (each batch takes seconds)")
    parser.add_argument("--threads", type=int, default=0, help="torch/onnxruntime threads (0 = every core available)")
    parser.add_argument("--no-ort", dest="ort", action="store_false", help="skip onnxruntime")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile")
    parser.add_argument("--out", help="output folder (default docs/results; --quick: a temp folder)")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "TEACHER"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    warnings.filterwarnings("ignore")
    if args.child:
        Path(args.json).write_text(
            json.dumps(measure(*args.child, args.size, args.runs, args.ort, args.compile, args.threads))
        )
        return
    if args.quick:
        args.size, args.runs, args.models, args.teachers = 64, 2, "fd,snl-fd", "efficientnet_lite0"
    out = Path(args.out or (tempfile.mkdtemp(prefix="bench-speed-") if args.quick else ROOT / "docs" / "results"))
    from snlad.device import use_all_cores

    use_all_cores() if args.threads == 0 else torch.set_num_threads(args.threads)
    info = machine()
    rows = []
    for teacher in args.teachers.split(","):
        for model_name in args.models.split(","):
            rows.append(run_child(model_name, teacher, args))
            print(
                f"{teacher} {model_name}: before {rows[-1]['before_images_per_s']:.1f} img/s, after {rows[-1]['after_images_per_s']:.1f} img/s "
                f"(whole batch {rows[-1]['whole_images_per_s']:.1f})",
                flush=True,
            )
    add_ratios(rows)
    text = markdown(info, rows, os.getloadavg())
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench-speed.md").write_text(text)
    (out / "bench-speed.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    print(text)
    print(f"wrote {out / 'bench-speed.md'} and .json")


if __name__ == "__main__":
    main()
