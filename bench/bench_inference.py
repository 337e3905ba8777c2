"""Inference speed per model x runtime x precision, against RD4AD timed in the same run; metrics deltas on real data.

Per model (EfficientNet-Lite0 teacher unless named; trained weights where
``--run NAME=DIR`` gives a run, random otherwise) the runtimes and precisions
snlad offers: torch fp32 (``optimise_for_inference``, what ``snlad test`` and
``predict`` run by default), onnxruntime fp32, openvino fp32, openvino bf16,
openvino mixed (bf16 but the teacher's first stage and the scoring in fp32:
``snlad.deploy.runtime``) and openvino int8 (NNCF, calibrated on the run's held-out normal training images
under ``--data``). Each (model, runtime, precision) runs in its own process,
``--rounds`` times round-robin with the others and with RD4AD, and the medians
are reported: images/s at batch 16 and at batch 1, and the peak resident
memory the model adds to its process (peak RSS minus RSS after the imports).
The exported graphs are written once per model beforehand; the timed
processes only load them.

RD4AD: with ``--rd4ad PATH`` (a checkout of github.com/hq-deng/RD4AD, imported
from there, never copied) its ResNet18 encoder, bn and de_resnet18 decoder
(``resnet.py``, ``de_resnet.py``: they import only torch, so no stand-in module
is needed; random weights, ``pretrained=False``, eager, NCHW), then per image
its ``cal_anomaly_map`` (the function's own source, taken from its test.py,
whose other imports, torchvision datasets, cv2, sklearn and matplotlib for its
training and plots, are not loaded) and ``gaussian_filter(sigma=4)``, as its
test loop does; it runs the networks at the bench's batch, where its
test loop feeds one image at a time. Without a checkout, a
clearly labelled stand-in: the same architecture built from snlad's parts
(ResNet18 teacher, OCBE, decoder with RD4AD's 2, 2, 2 blocks; eager PyTorch,
no BatchNorm folding, NCHW) followed by the same per-image post-processing,
re-implemented from RD4AD's test.py (1 - cosine per level, bilinear upsampling
with align_corners=True, sum, numpy, scipy's Gaussian blur, max).

Metrics (``--run`` models only): image AUROC, pixel AUROC and AUPRO on the
test split of ``--data``, each runtime/precision minus torch fp32, in points;
and how far its maps move from torch fp32's (max |difference| over 48 test
images / the fp32 maps' range). A precision is kept for a model where every
metric moves by < 0.5 points and its maps stay within 5 % of the range.

    python bench/bench_inference.py --data /path/to/realad --run snl-fd=RUN --run fd=RUN \
        [--rd4ad /path/to/RD4AD] [--threads 2] [--rounds 3] [--out docs/results/bench-inference.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "snl-fd": [],
    "fd": [],
    "snl-rd": [],
    "rd": [],
    "rd (resnet18 teacher)": ["model.teacher=resnet18"],
}
VARIANTS = [  # (runtime, precision)
    ("torch", "fp32"),
    ("onnxruntime", "fp32"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("openvino", "mixed"),
    ("openvino", "int8"),
]
METRICS = ("image_auroc", "pixel_auroc", "aupro")
KEEP_POINTS = 0.5  # issue 24: metrics within 0.5 points of fp32 torch
KEEP_MAP = 0.05  # max |map - fp32 map| / fp32 map range (tests/test_runtime.py uses the same for bf16)
MAP_IMAGES = 48  # test images whose maps are compared
STAND_IN = "RD4AD stand-in"
RD4AD_FILES = ("resnet.py", "de_resnet.py", "test.py")  # what the bench reads from a checkout


# ----------------------------------------------------------------------------- child processes


def _speed(fn, batch, runs: int) -> float:
    fn(batch)
    fn(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - start)
    return len(batch) / statistics.median(times)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _trained(args: dict):
    """The model to bench: the run's (trained) or random weights built from the preset."""
    import torch

    from snlad import api
    from snlad.models import build_model
    from snlad.runs.run import load_run
    from snlad.runs.trained import TrainedModel, build_scorer

    if args.get("run"):
        return next(iter(load_run(args["run"]).values()))
    config = api.resolve_config(model=args["model"], overrides=args["settings"])
    torch.manual_seed(0)
    model = build_model(config.model, pretrained_teacher=config.model.teacher.startswith("efficientnet"))
    return TrainedModel(config, model, build_scorer(config, model), ["bench"]).eval()


def child_prepare(args: dict) -> dict:
    """Export the model's graphs into args["folder"]; for a trained run, also the metrics and map agreement of each variant."""
    import torch

    from snlad.data import AnomalyDataset, index_dataset, list_categories
    from snlad.deploy.deployed import calibration_images, deployed
    from snlad.deploy.export import export
    from snlad.engine.evaluate import evaluate
    from snlad.progress import show_progress

    torch.set_num_threads(args["threads"])
    trained = _trained(args)
    if not args.get("run"):  # random weights: calibrate on every category's held-out normals
        trained.categories = list_categories(args["data"])
    folder = Path(args["folder"])
    export(trained, "onnx", folder / "model.onnx")
    export(trained, "openvino", folder / "model-fp32.xml")
    images = calibration_images(trained, Path(args["data"]))
    export(trained, "openvino", folder / "model-int8.xml", precision="int8", calibration_images=images)
    result: dict = {"calibration_images": len(images)}
    if not args.get("run"):
        return result
    samples = index_dataset(args["data"], "test", trained.categories)
    picked = samples[:: max(1, len(samples) // MAP_IMAGES)][:MAP_IMAGES]
    dataset = AnomalyDataset(picked, trained.config.data.image_size)
    probe = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    reference = None
    for runtime, precision in VARIANTS:
        model = deployed(trained, runtime, *_graph(folder, runtime, precision))
        start = time.perf_counter()
        with show_progress(False):
            per_category, _ = evaluate(dict.fromkeys(trained.categories, model), samples, 16)
        with torch.inference_mode():
            maps = torch.cat([model.score(chunk)[0] for chunk in probe.split(16)])
        reference = maps if reference is None else reference
        span = float(reference.max() - reference.min())
        result[f"{runtime} {precision}"] = {
            **{key: per_category["mean"][key] for key in METRICS},
            "map_difference": float((maps - reference).abs().max()) / span,
            "seconds": time.perf_counter() - start,
        }
        print(runtime, precision, json.dumps(result[f"{runtime} {precision}"]), file=sys.stderr, flush=True)
    return result


def _graph(folder: Path, runtime: str, precision: str) -> tuple[Path | None, str]:
    """(exported file, session precision) of a variant; torch scores the model itself."""
    if runtime == "torch":
        return None, "fp32"
    if runtime == "onnxruntime":
        return folder / "model.onnx", "fp32"
    if precision == "int8":
        return folder / "model-int8.xml", "fp32"  # the int8 file; what stays float runs in f32
    return folder / "model-fp32.xml", precision


def child_speed(args: dict) -> dict:
    """Images/s at batch 16 and 1 and the peak memory the model adds, of one variant."""
    import numpy as np
    import torch

    from snlad.deploy.deployed import deployed
    from snlad.deploy.runtime import runtime_session

    torch.set_num_threads(args["threads"])
    size = 256
    x16 = np.random.default_rng(0).random((16, 3, size, size), dtype=np.float32)
    base = _rss_mb()
    if args["runtime"] == "torch":
        fast = deployed(_trained(args))

        def score(images):
            with torch.inference_mode():
                return fast.score(torch.from_numpy(images))
    else:
        path, precision = _graph(Path(args["folder"]), args["runtime"], args["precision"])
        score = runtime_session(args["runtime"], path, args["threads"], precision)
    result = {"batch16": _speed(score, x16, 6), "batch1": _speed(score, x16[:1], 16)}
    return {**result, "memory_mb": _peak_rss_mb() - base}


def child_rd4ad(args: dict) -> dict:
    """The official RD4AD test path (its checkout) or the labelled stand-in, at batch 16 and 1."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from scipy.ndimage import gaussian_filter

    torch.set_num_threads(args["threads"])
    torch.manual_seed(0)
    base = _rss_mb()
    if args.get("rd4ad"):
        import ast

        sys.path.insert(0, args["rd4ad"])
        from de_resnet import de_resnet18
        from resnet import resnet18

        source = Path(args["rd4ad"], "test.py").read_text()  # its cal_anomaly_map, run as it is
        function = next(
            node
            for node in ast.parse(source).body
            if isinstance(node, ast.FunctionDef) and node.name == "cal_anomaly_map"
        )
        namespace = {"np": np, "torch": torch, "F": F}
        exec(compile(ast.Module([function], []), "RD4AD/test.py", "exec"), namespace)
        cal_anomaly_map = namespace["cal_anomaly_map"]
        encoder, bn = resnet18(pretrained=False)
        decoder = de_resnet18(pretrained=False)
        for module in (encoder, bn, decoder):
            module.eval()

        def networks(images):
            inputs = encoder(images)
            return inputs, decoder(bn(inputs))
    else:
        from snlad import api
        from snlad.models import build_model

        config = api.resolve_config(model="rd", overrides=["model.teacher=resnet18", "model.decoder_blocks=[2,2,2]"])
        model = build_model(config.model, pretrained_teacher=False).eval()

        def cal_anomaly_map(fs_list, ft_list, out_size, amap_mode="a"):  # RD4AD test.py, amap_mode "a" (add)
            anomaly_map = np.zeros([out_size, out_size])
            for fs, ft in zip(fs_list, ft_list):
                a_map = torch.unsqueeze(1 - F.cosine_similarity(fs, ft), dim=1)
                a_map = F.interpolate(a_map, size=out_size, mode="bilinear", align_corners=True)
                anomaly_map += a_map[0, 0, :, :].to("cpu").detach().numpy()
            return anomaly_map, None

        def networks(images):
            return model(images)

    def score(images):  # test.py: forward, then per image its map, blur, max
        inputs, outputs = networks(images)
        scores = []
        for i in range(len(images)):
            anomaly_map, _ = cal_anomaly_map(
                [o[i : i + 1] for o in inputs], [o[i : i + 1] for o in outputs], images.shape[-1], amap_mode="a"
            )
            scores.append(np.max(gaussian_filter(anomaly_map, sigma=4)))
        return scores

    x16 = torch.rand(16, 3, 256, 256)
    with torch.no_grad():
        result = {"batch16": _speed(score, x16, 4), "batch1": _speed(score, x16[:1], 12)}
    return {**result, "memory_mb": _peak_rss_mb() - base}


CHILDREN = {"prepare": child_prepare, "speed": child_speed, "rd4ad": child_rd4ad}


def child(kind: str, args: dict, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, __file__, "--child", kind, json.dumps({**args, "threads": threads})]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the bench


def _table(rows: dict, rounds: dict, prepared: dict, reference: dict, reference_name: str) -> list[str]:
    lines = [
        "| model | runtime | precision | batch 16 (img/s) | batch 16 range | batch 1 (img/s) | memory (MB) "
        f"| vs {reference_name} at batch 16 | Δ I-AUROC | Δ P-AUROC | Δ AUPRO | map Δ / range | kept |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, runtime, precision), row in rows.items():
        speeds = [r["batch16"] for r in rounds[(name, runtime, precision)]]
        metrics = prepared[name].get(f"{runtime} {precision}")
        base = prepared[name].get("torch fp32")
        if metrics:
            deltas = [100 * (metrics[key] - base[key]) for key in METRICS]
            kept = all(abs(d) < KEEP_POINTS for d in deltas) and metrics["map_difference"] < KEEP_MAP
            quality = [f"{d:+.2f}" for d in deltas] + [f"{metrics['map_difference']:.3f}", "yes" if kept else "**no**"]
        else:
            quality = ["n/a (random weights)"] * 4 + ["speed only"]
        cells = [
            name,
            runtime,
            precision,
            f"{row['batch16']:.1f}",
            f"{min(speeds):.1f}-{max(speeds):.1f}",
            f"{row['batch1']:.1f}",
            f"{row['memory_mb']:.0f}",
            f"{row['batch16'] / reference['batch16']:.1f}x",
            *quality,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help="data root: int8 calibration (held-out normals) and test metrics")
    parser.add_argument("--run", action="append", default=[], metavar="MODEL=DIR", help="a trained run of MODEL")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of the models")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rd4ad", type=Path, help="a checkout of github.com/hq-deng/RD4AD (else the stand-in)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "bench-inference.md")
    parser.add_argument("--rounds", type=int, default=3, help="times each process runs, round-robin (medians)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](json.loads(args.child[1]))))
        return
    if args.data is None:
        parser.error("--data is required (int8 calibration images; test metrics for --run models)")
    missing = [name for name in RD4AD_FILES if args.rd4ad and not (args.rd4ad / name).is_file()]
    if missing:
        parser.error(f"--rd4ad {args.rd4ad} has no {', '.join(missing)}: not a checkout of github.com/hq-deng/RD4AD")
    runs = dict(item.split("=", 1) for item in args.run)
    models = [name for name in args.models.split(",") if name]
    workspace = Path(tempfile.mkdtemp(prefix="snlad-bench-"))
    prepared: dict[str, dict] = {}
    for name in models:
        spec = {
            "model": name.split(" ")[0],
            "settings": MODELS[name],
            "run": runs.get(name),
            "folder": str(workspace / name.replace(" ", "_")),
            "data": str(args.data),
        }
        prepared[name] = {"spec": spec, **child("prepare", spec, args.threads)}
        print("prepared", name, json.dumps({k: v for k, v in prepared[name].items() if k != "spec"}), flush=True)
    reference_name = "RD4AD" if args.rd4ad else STAND_IN
    rounds: dict[tuple[str, str, str], list[dict]] = {}
    for _ in range(args.rounds):  # round-robin, RD4AD between the models: drift of a shared VM hits all alike
        for name in models:
            for runtime, precision in VARIANTS:
                spec = {**prepared[name]["spec"], "runtime": runtime, "precision": precision}
                rounds.setdefault((name, runtime, precision), []).append(child("speed", spec, args.threads))
                print(name, runtime, precision, json.dumps(rounds[(name, runtime, precision)][-1]), flush=True)
            rd4ad = child("rd4ad", {"rd4ad": str(args.rd4ad) if args.rd4ad else None}, args.threads)
            rounds.setdefault((reference_name, "torch", "fp32"), []).append(rd4ad)
            print(reference_name, json.dumps(rd4ad), flush=True)
    rows = {key: {k: statistics.median(r[k] for r in runs_) for k in runs_[0]} for key, runs_ in rounds.items()}
    reference = rows.pop((reference_name, "torch", "fp32"))
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    flags = Path("/proc/cpuinfo").read_text()
    isa = ", ".join(f for f in ("avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8") if f in flags)
    described = (
        "the official code of github.com/hq-deng/RD4AD: its resnet18, BN_layer and de_resnet18, random weights, eager; "
        "per image its test.py cal_anomaly_map (numpy map) and scipy's Gaussian blur"
        if args.rd4ad
        else "no RD4AD checkout: its architecture from snlad's parts (ResNet18, OCBE, decoder 2-2-2 blocks, eager, "
        "random weights) plus its per-image test.py post-processing (numpy map, scipy blur)"
    )
    lines = [
        "# Inference: every runtime and precision, against RD4AD in the same run",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores ({isa}), {args.threads} thread(s); 256 px; measured "
        f"{time.strftime('%Y-%m-%d %H:%M')} with `python bench/bench_inference.py --data DATA "
        + " ".join(f"--run {k}=RUN" for k in runs)
        + (f" --models {','.join(models)}" if models != list(MODELS) else "")
        + f" --threads {args.threads} --rounds {args.rounds}{' --rd4ad RD4AD' if args.rd4ad else ''}`. "
        f"Each process ran {args.rounds} times, round-robin with the others and with {reference_name} ({described}); "
        "medians, and the range of batch-16 speeds over the rounds. Memory: the peak resident memory the model adds "
        "to its process. Δ: the realad test metric minus torch fp32's, in points; map Δ / range: the largest map "
        f"difference from torch fp32 over {MAP_IMAGES} test images over the fp32 maps' range. Kept: every Δ below "
        f"{KEEP_POINTS} points and map Δ below {KEEP_MAP:.0%} of the range.",
        "",
        *_table(rows, rounds, prepared, reference, reference_name),
        "",
        f"{reference_name}: **{reference['batch16']:.1f} img/s** at batch 16, {reference['batch1']:.1f} at batch 1, "
        f"{reference['memory_mb']:.0f} MB.",
    ]
    pairs = [("snl-fd", "fd"), ("snl-rd", "rd")]
    ratios = [
        f"{snl} / {base} ({runtime} {precision}): {rows[(base, runtime, precision)]['batch16'] / rows[(snl, runtime, precision)]['batch16']:.2f}x the time"
        for snl, base in pairs
        if snl in models and base in models
        for runtime, precision in VARIANTS
    ]
    if ratios:
        lines += ["", "SNL / baseline at batch 16: " + "; ".join(ratios) + "."]
    from snlad.files import atomic_write_text

    atomic_write_text(args.out, "\n".join(lines) + "\n")
    atomic_write_text(
        args.out.with_suffix(".json"),
        json.dumps(
            {
                "rows": {" | ".join(key): row for key, row in rows.items()},
                "reference": {reference_name: reference},
                "rounds": {" | ".join(key): r for key, r in rounds.items()},
                "prepared": {name: {k: v for k, v in p.items() if k != "spec"} for name, p in prepared.items()},
                "machine": cpu,
                "threads": args.threads,
            },
            indent=2,
        ),
    )
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
