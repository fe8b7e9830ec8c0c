"""Trainer verbs of the ``candor`` command: train, calibrate, evaluate, split, export, sweep."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from candor.calibration.selection import CHOICES as CALIBRATION_METHODS
from candor.flags import add_json, add_renamed, version_number
from candor.trainer.conventions import DEFAULT_EPSILON, DEFAULT_OPSET, MAX_OPSET, MULTICLASS_CONVENTIONS
from candor.trainer.data import BUNDLED, SYNTHETIC
from candor.trainer.report import INTERVAL_NOTE

# torch-bound modules are imported inside the verbs: registering the verbs
# must stay cheap and torch-free (`candor serve` builds this parser too).
ARCHITECTURES = ("mlp", "cnn")  # candor.trainer.models builds these


def bounded(convert, valid, expected: str):
    """An argparse type: ``convert`` the text, then require ``valid(value)``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


epsilon = bounded(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
fraction = bounded(float, lambda v: 0 < v < 1, "a number in (0, 1)")
positive_int = bounded(int, lambda v: v >= 1, "a positive integer")
opset = bounded(int, lambda v: DEFAULT_OPSET <= v <= MAX_OPSET, f"an ONNX opset from {DEFAULT_OPSET} to {MAX_OPSET}")
OPSET_HELP = f"ONNX opset, {DEFAULT_OPSET} to {MAX_OPSET} (the newest torch's exporter writes) (default: {DEFAULT_OPSET})"


def _data_args(p: argparse.ArgumentParser, default: str | None) -> None:
    """The data flags. Verbs that default to a model's own data (``default`` None) accept the flags that only
    shape a new data set (synthetic sizes, label noise) but leave them out of --help: they matter only with
    --dataset, and `candor train --help` explains them."""
    g = p.add_argument_group("data")
    known = ", ".join(BUNDLED + SYNTHETIC)
    g.add_argument("--dataset", default=default,
                   help=f"{known}, or a .npz (X with y labels or a Y 0/1 matrix) / .csv file" +
                        (f" (default: {default})" if default else " (default: the model's own data set, rebuilt from its "
                         "manifest; with --dataset, the data flags of `candor train --help` apply)"))  # fmt: skip
    g.add_argument("--label-column", default="label", help="label column of a .csv file (default: label)")
    shown = (lambda text: text) if default else (lambda text: argparse.SUPPRESS)  # noqa: E731
    g.add_argument("--n-samples", type=positive_int, default=3000, help=shown("synthetic: number of rows (default: 3000)"))
    g.add_argument("--n-classes", type=positive_int, default=5, help=shown("synthetic: number of classes (default: 5)"))
    g.add_argument("--n-features", type=positive_int, default=20, help=shown("synthetic: number of features (default: 20)"))
    g.add_argument("--imbalance", type=float, default=1.0,
                   help=shown("synthetic: largest/smallest class ratio, >= 1 (default: 1)"))  # fmt: skip
    g.add_argument("--data-seed", type=int, default=0, help=shown("synthetic: generator seed (default: 0)"))
    g.add_argument("--label-noise", type=epsilon, default=0.0,
                   help=shown("share of training labels corrupted, in [0, 1) (default: 0)"))  # fmt: skip
    g.add_argument("--noise-kind", choices=("symmetric", "pair", "matrix"), default="symmetric",
                   help=shown("symmetric: to any other class; pair: class k to k+1; matrix: from --noise-matrix "
                              "(default: symmetric)"))  # fmt: skip
    g.add_argument("--noise-matrix",
                   help=shown("[K, K] row-stochastic transition matrix (.npy/.csv) for --noise-kind matrix"))  # fmt: skip
    g.add_argument("--val-fraction", type=fraction, default=0.2, help="validation share, fits T (default: 0.2)")
    g.add_argument("--test-fraction", type=fraction, default=0.2, help="test share, measures (default: 0.2)")
    g.add_argument("--split-seed", type=int, default=0, help="seed of the stratified split and the noise (default: 0)")


def _train_args(p: argparse.ArgumentParser) -> None:
    _data_args(p, "digits")
    g = p.add_argument_group("model")
    # --architecture, not --model: every verb's --model names the model (candor.flags).
    g.add_argument("--architecture", choices=ARCHITECTURES, default=None,
                   help="mlp, or cnn for image-shaped data like digits (default: mlp)")  # fmt: skip
    g.add_argument("--width", type=positive_int, default=128, help="hidden units (mlp) or channels (cnn) (default: 128)")
    g.add_argument("--depth", type=int, default=2, help="hidden layers of the mlp (default: 2)")
    g.add_argument("--dropout", type=epsilon, default=0.1, help="dropout rate in [0, 1) (default: 0.1)")
    g = p.add_argument_group("label smoothing")
    g.add_argument("--smoothing", choices=MULTICLASS_CONVENTIONS, default="uniform",
                   help="where epsilon goes: uniform (all K, as torch), off_target (the K-1 wrong classes), prior, "
                        "hierarchy, teacher (default: uniform; multi-label data smooths each class)")  # fmt: skip
    g.add_argument("--epsilon", type=epsilon, default=DEFAULT_EPSILON,
                   help=f"smoothing weight in [0, 1); 0 trains on hard labels (default: {DEFAULT_EPSILON}, uniform label "
                        "smoothing, a safe start; 0.05-0.1 is the usual range)")  # fmt: skip
    g.add_argument("--hierarchy", help="class tree (.json) or class similarity matrix (.csv/.npy) for --smoothing hierarchy")
    g.add_argument("--teacher", help="teacher ONNX model (input 'input', output 'logits') for --smoothing teacher")
    g.add_argument(
        "--teacher-temperature", type=float, default=2.0, help="temperature applied to the teacher's logits (default: 2)"
    )
    g.add_argument("--class-weights", choices=("none", "balanced"), default="none", help="weight rare classes up (default: none)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=positive_int, default=200, help="maximum epochs (default: 200)")
    g.add_argument(
        "--patience", type=positive_int, default=15, help="stop after this many epochs without a better val NLL (default: 15)"
    )
    g.add_argument("--batch-size", type=positive_int, default=64, help="rows per step on each process (default: 64)")
    g.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default: 1e-3)")
    g.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default: 1e-4)")
    g.add_argument("--seed", type=int, default=0, help="seed of weights and minibatch order (default: 0)")
    g.add_argument("--per-class-temperature", action="store_true", help="multi-label: fit one temperature per class")
    g.add_argument("--calibrator", choices=CALIBRATION_METHODS, default="temperature",
                   help="post-hoc calibrator fitted on validation and folded into the graph; auto picks by 5-fold "
                        "cross-validated NLL (default: temperature)")  # fmt: skip
    g.add_argument("--conformal-share", type=epsilon, default=0.5,
                   help="share of the validation rows no fit sees, scored for conformal prediction sets (multiclass; "
                        "0: none; default: 0.5)")  # fmt: skip
    g.add_argument("--class-conditional-sets", action="store_true",
                   help="serve prediction sets with one threshold per class (Mondrian), which covers every class, "
                        "not only on average; needs ceil(1/alpha) - 1 calibration rows per class")  # fmt: skip
    g.add_argument("--no-progress", action="store_true",
                   help="no progress on stderr (by default a bar on a terminal, else a line every few seconds)")  # fmt: skip


def _repository_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-repository", default="models", help="model repository folder (default: models)")


def _version_args(p: argparse.ArgumentParser) -> None:
    _repository_arg(p)
    # Not required=True: argparse would then refuse the old spelling --name, which fills the same destination.
    p.add_argument("--model", dest="name", help="model name (required)")
    add_renamed(p, "--name", "--model", dest="name")
    p.add_argument("--version", type=version_number, help="model version (default: the newest)")


def _named(a: argparse.Namespace) -> str:
    if not a.name:
        raise ValueError("no model named: give --model NAME, the model's folder in --model-repository")
    return a.name


def _architecture(a: argparse.Namespace) -> str:
    """train's --model used to be the architecture: ``--model mlp|cnn`` without --architecture still means it."""
    if a.architecture is None and getattr(a, "name", None) in ARCHITECTURES:
        print(f"candor {a.verb}: note: --model {a.name} now names the model; the architecture is --architecture {a.name}. "
              "Read as the architecture for this release", file=sys.stderr)  # fmt: skip
        a.architecture, a.name = a.name, None
    return a.architecture or "mlp"


def _split_arg(p: argparse.ArgumentParser, flag: str, default: str, what: str) -> None:
    p.add_argument(flag, choices=("train", "val", "test", "all"), default=default, help=f"{what} (default: {default})")


def data_options(a: argparse.Namespace):
    from candor.trainer.options import DataOptions

    return DataOptions(
        dataset=a.dataset, label_column=a.label_column, n_samples=a.n_samples, n_classes=a.n_classes,
        n_features=a.n_features, imbalance=a.imbalance, data_seed=a.data_seed, label_noise=a.label_noise,
        noise_kind=a.noise_kind, noise_matrix=a.noise_matrix, val_fraction=a.val_fraction,
        test_fraction=a.test_fraction, split_seed=a.split_seed,
    )  # fmt: skip


def train_options(a: argparse.Namespace):
    from candor.trainer.loop import LoopOptions
    from candor.trainer.options import ModelOptions, TrainOptions
    from candor.trainer.smoothing import SmoothingOptions

    return TrainOptions(
        data=data_options(a),
        model=ModelOptions(_architecture(a), a.width, a.depth, a.dropout),
        smoothing=SmoothingOptions(a.smoothing, a.epsilon, a.hierarchy, a.teacher, a.teacher_temperature),
        loop=LoopOptions(a.epochs, a.batch_size, a.lr, a.weight_decay, a.patience, a.seed, not a.no_progress),
        class_weights=a.class_weights,
        per_class_temperature=a.per_class_temperature,
        calibrator=a.calibrator,
        conformal_share=a.conformal_share,
        conformal_class_conditional=a.class_conditional_sets,
    )


def newest_note(repo: str, name: str, version: int) -> str:
    """Which version a server on ``repo`` now answers with: a test run in the served repository becomes the
    newest version, and users should see that."""
    from candor.calibration.repository import versions

    on_disk = versions(Path(repo), name)
    if version != max(on_disk):
        return f"{repo}/{name} holds newer versions ({max(on_disk)}); requests without a version keep going to v{max(on_disk)}"
    served = ", ".join(f"v{v}" for v in sorted(on_disk)[-2:])
    return (f"v{version} is now the newest of {repo}/{name} (versions {', '.join(str(v) for v in on_disk)}): a server on "
            f"{repo} answers requests without a version with it within its --poll-interval-seconds, and serves {served} "
            "(--serve-latest 2). Train experiments into another --model-repository to keep them apart.")  # fmt: skip


def version_summary(m) -> dict:
    """A new or measured version as JSON: version as text, as everywhere else in the CLI and the API."""
    return {"model": m.name, "version": str(m.version), "task": m.task, "classes": m.class_names,
            "smoothing": {"convention": m.smoothing.convention, "epsilon": m.smoothing.epsilon},
            "calibrator": m.calibrator.method, "temperature": m.temperature.value,
            "test": {"before_calibration": dataclasses.asdict(m.metrics.before_temperature),
                     "after_calibration": dataclasses.asdict(m.metrics.after_temperature)}}  # fmt: skip


def cmd_train(a: argparse.Namespace) -> int:
    from candor.calibration.manifest import MANIFEST_FILE, read_manifest
    from candor.trainer.distributed import init_from_env, shutdown
    from candor.trainer.pipeline import fit, publish
    from candor.trainer.report import render_report

    options = train_options(a)
    name = a.name or Path(options.data.dataset).stem
    ctx = init_from_env()
    try:
        trained = fit(options, ctx)
        if ctx.is_main:
            folder = publish(trained, a.model_repository, name, a.opset)
            manifest = read_manifest(folder / MANIFEST_FILE)
            note = newest_note(a.model_repository, name, manifest.version)
            if a.json:
                print(json.dumps(version_summary(manifest) | {"folder": str(folder), "newest": note}, indent=2))
            else:
                print(render_report(manifest, folder), end="")
                print(f"Wrote {folder}/ (model.onnx, candor.json, report.md, metrics.json, reliability.png)")
                print(note)
    finally:
        shutdown(ctx)
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from candor.trainer.posthoc import evaluate, labelled_rows, open_version
    from candor.trainer.report import metrics_table

    v = open_version(a.model_repository, _named(a), a.version)
    X, y, desc = labelled_rows(v, data_options(a) if a.dataset else None, a.split)
    m = evaluate(v, X, y, desc)
    method = v.manifest.calibrator.method
    if a.json:
        report = {"model": v.manifest.name, "version": str(v.manifest.version), "data": desc, "rows": len(X)}
        report |= {"calibrator": method, "temperature": v.manifest.temperature.value, "uncalibrated": m.before,
                   "calibrated": m.after}  # fmt: skip
        print(json.dumps(report, indent=2))
    else:
        print(f"{v.manifest.name} v{v.manifest.version} on {desc} ({len(X)} rows), {v.calibrator.describe()}\n")
        print(metrics_table({"uncalibrated": m.before, f"served ({method})": m.after}))
        print(f"\n{INTERVAL_NOTE}")
    return 0


def cmd_calibrate(a: argparse.Namespace) -> int:
    from candor.calibration.manifest import MANIFEST_FILE, read_manifest
    from candor.trainer.posthoc import labelled_rows, open_version, recalibrate
    from candor.trainer.report import metrics_table

    v = open_version(a.model_repository, _named(a), a.version)
    data = data_options(a) if a.dataset else None
    r = recalibrate(a.model_repository, v, labelled_rows(v, data, a.fit_split), labelled_rows(v, data, a.eval_split), a.method)
    print(f"{v.calibrator.describe()} -> {r.calibrator.describe()} (fitted on {r.fitted_on})")
    if r.selected_by:
        print(r.selected_by)
    print(f"held-out NLL decrease on {r.measurement.split}: {r.improvement} (90% paired bootstrap)\n")
    print(metrics_table({f"v{v.manifest.version} ({v.manifest.calibrator.method})": r.measurement.before,
                         f"refit ({r.calibrator.method})": r.measurement.after}))  # fmt: skip
    print(f"\n{INTERVAL_NOTE}")
    if r.folder is None:
        print(f"\nunchanged: {r.reason}; nothing was written")
        return 0
    new = read_manifest(r.folder / MANIFEST_FILE)
    print(f"\nWrote {r.folder}/ (version {new.version})")
    return 0


def cmd_split(a: argparse.Namespace) -> int:
    import os

    import numpy as np

    from candor.trainer.posthoc import labelled_rows, open_version

    v = open_version(a.model_repository, _named(a), a.version)
    X, y, desc = labelled_rows(v, data_options(a) if a.dataset else None, a.split)
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed, so a reader never sees half a file.
    tmp = out.with_name(f".{out.name}.tmp")
    # y: class indices [N]; Y: a multi-label 0/1 matrix [N, K] (what `candor train --dataset` reads back).
    labels = {"Y": y} if v.manifest.task == "multilabel" else {"y": y}
    with open(tmp, "wb") as f:
        np.savez(f, X=X.astype(np.float32), class_names=np.array(v.manifest.class_names), **labels)
    os.replace(tmp, out)
    print(f"Wrote {out} ({len(X)} rows of {desc}, for {v.manifest.name} v{v.manifest.version})")
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from candor.trainer.posthoc import open_version, reexport

    folder = reexport(a.model_repository, open_version(a.model_repository, _named(a), a.version), a.opset)
    print(f"Wrote {folder}/ (opset {a.opset})")
    return 0


def cmd_sweep(a: argparse.Namespace) -> int:
    import sys

    from candor.trainer.sweep import markdown, parse_list, sweep, write_outputs

    known = ", ".join(MULTICLASS_CONVENTIONS)
    conventions = parse_list(
        a.conventions, str, "--conventions", lambda cs: set(cs) <= set(MULTICLASS_CONVENTIONS), f"names from {known}"
    )
    epsilons = parse_list(a.epsilons, float, "--epsilons", lambda es: all(0 <= e < 1 for e in es), "numbers in [0, 1)")
    seeds = (a.seed,)
    if a.seeds:
        seeds = parse_list(a.seeds, int, "--seeds", lambda ss: len(set(ss)) == len(ss), "distinct integers")
    base = train_options(a)
    out = Path(a.output or f"runs/sweep-{Path(base.data.dataset).stem}")
    rows = sweep(base, epsilons, conventions, seeds, log=lambda s: print(s, file=sys.stderr))
    paths = write_outputs(rows, out, f"Label smoothing sweep on {base.data.dataset}")
    if a.json:
        print(json.dumps({"rows": rows, "files": {k: str(v) for k, v in paths.items()}}, indent=2, default=float))
        return 0
    print(markdown(rows), end="")
    print(f"Wrote {paths['csv']}, {paths['md']}, {paths['png']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train, fit the calibrator, export a new model version",
                       description="Train a classifier with label smoothing, fit a calibrator on validation, measure on test, "
                                   "and write models/<name>/<version>/.")  # fmt: skip
    _train_args(p)
    _repository_arg(p)
    p.add_argument("--model", dest="name", help="model name (default: the data set's name)")
    add_renamed(p, "--name", "--model", dest="name")
    p.add_argument("--opset", type=opset, default=DEFAULT_OPSET, help=OPSET_HELP)
    add_json(p)
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("evaluate", help="measure a model version's calibration on labelled data",
                       description="Run a version's ONNX model on labelled rows (by default the test split of the data "
                                   "it was trained on) and print accuracy, NLL, Brier and the ECE family with 90% "
                                   "bootstrap intervals, before and after its calibrator.")  # fmt: skip
    _version_args(p)
    _data_args(p, None)
    _split_arg(p, "--split", "test", "which split of the data")
    add_json(p)
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("calibrate", help="refit the calibrator of a version; write a new version when it is significantly better",
                       description="Fit a calibrator on --fit-split, compare it with the version's own on --eval-split, "
                                   "and publish it as the next version only when the held-out NLL decrease has a 90% "
                                   "paired-bootstrap interval above 0; otherwise say 'unchanged' and write nothing.")  # fmt: skip
    _version_args(p)
    _data_args(p, None)
    p.add_argument("--method", choices=CALIBRATION_METHODS, default="temperature",
                   help="calibrator to fit; auto picks by 5-fold cross-validated NLL (default: temperature)")  # fmt: skip
    _split_arg(p, "--fit-split", "val", "data the calibrator is fitted on")
    _split_arg(p, "--eval-split", "test", "data the result is measured on")
    p.set_defaults(handler=cmd_calibrate)

    p = sub.add_parser("split", help="write one split of a version's data set to .npz (X, y, class_names)",
                       description="Rebuild the data set and split a version was trained on (or --dataset) and write "
                                   "the chosen split's rows and labels, e.g. held-out rows for `candor simulate`.")  # fmt: skip
    _version_args(p)
    _data_args(p, None)
    _split_arg(p, "--split", "test", "which split of the data")
    p.add_argument("--output", required=True, help="the .npz file to write")
    p.set_defaults(handler=cmd_split)

    p = sub.add_parser("export", help="export a version's saved weights again as a new version",
                       description="Load a version's saved torch weights (model.pt) and calibrator, export them to "
                                   "ONNX again (e.g. at another --opset), check parity with torch, and publish the "
                                   "result as the next version.")  # fmt: skip
    _version_args(p)
    p.add_argument("--opset", type=opset, default=DEFAULT_OPSET, help=OPSET_HELP)
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("sweep", help="accuracy, NLL and ECE over epsilon x convention, with and without T",
                       description="Train once per (smoothing convention, epsilon, seed) on one data set and report "
                                   "test accuracy, NLL and ECE before and after temperature scaling, as a table, a CSV "
                                   "and a plot. Nothing is written to a model repository.")  # fmt: skip
    _train_args(p)
    add_renamed(p, "--model", "--architecture", dest="architecture")
    p.add_argument("--epsilons", default="0,0.05,0.1,0.2,0.3", help="comma-separated epsilons (default: 0,0.05,0.1,0.2,0.3)")
    p.add_argument(
        "--conventions", default="uniform,off_target", help="comma-separated conventions (default: uniform,off_target)"
    )
    p.add_argument(
        "--seeds", help="comma-separated seeds, each reseeding split and training; reports mean ± std (default: --seed)"
    )
    p.add_argument("--output", help="folder for sweep.csv, sweep.md, sweep.png (default: runs/sweep-<data set>)")
    add_json(p)
    p.set_defaults(handler=cmd_sweep)
