"""The headless commands: ``prunelab sweep | eval | demo | cache | finetune | maps | scan | stamp | repair``.

One function per command; what a command writes is written by :mod:`engine.report.outputs`. Errors
are one line ``prunelab: error: <file>: <cause>`` with exit code 2, and nothing is written into
the output folder. The ``prunelab`` command itself (which also opens the window) lives outside
the engine and calls :func:`main` for these commands."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from engine.core.vocabulary import METRIC_TITLES, METRICS, poisoned_roles, role_metric, set_name
from engine.cli.common import ProgressPrinter, add_model_args, open_model, poisoned_set_roles, settle_input_scale
from engine.cli.repair import cmd_repair
from engine.cli.scan import cmd_scan, cmd_stamp
from engine.core.errors import Cancelled, PruneLabError, PruneLabWarning

PROG = "prunelab"
EXIT_INPUT = 2


# ----------------------------------------------------------------------------- output
def _warning_printer(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, PruneLabWarning):
        print(f"{PROG}: warning: {message}", file=sys.stderr)
    # library chatter stays out of the user's way


# ----------------------------------------------------------------------------- parsing
def _thresholds(text: str) -> tuple[float, ...]:
    from engine.pruning.thresholds import parse_thresholds

    try:
        return parse_thresholds(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _rankings(text: str) -> list[str]:
    from engine.pruning.criteria import parse_rankings

    try:
        return parse_rankings(text)
    except PruneLabError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class OneLineParser(argparse.ArgumentParser):
    """argparse's refusals as one line, like every other refusal (no usage block), exit 2.
    Sub-command parsers are made with the same class."""

    def error(self, message):
        self.exit(EXIT_INPUT, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from engine.core.version import version

    p = OneLineParser(prog=PROG, description="Prune a backdoored Keras classifier and build "
                                "a backdoor detector. Without a command (or with 'gui [FILES]'), "
                                "prunelab opens its window.")
    p.add_argument("--version", action="version", version=f"{PROG} {version()}")
    sub = p.add_subparsers(dest="command")

    s = sub.add_parser("sweep", help="rank the channels, prune them one by one, save B'/G and a report")
    src = s.add_mutually_exclusive_group()
    src.add_argument("--demo", nargs="?", const="badnet", choices=["badnet", "pruning-aware"],
                     help="use the bundled demo BadNet and its data (no download)")
    add_model_args(s, src)
    for role in ("clean-valid", "clean-test"):
        s.add_argument(f"--{role}", type=Path, metavar="F")
    for role in ("poisoned-valid", "poisoned-test"):
        s.add_argument(f"--{role}", action="append", metavar="[NAME=]F",
                       help="the attacker's poisoned data (every label its target); repeat as NAME=F for "
                            "several triggers: one ASR per set (asr_%s_NAME)" % role.split("-")[1])
    s.add_argument("--layer", help="Conv2D or hidden Dense layer to prune (default: the last Conv2D feeding "
                   "a pooling layer)")
    s.add_argument("--thresholds", type=_thresholds, default=(2.0, 4.0, 10.0), metavar="2,4,10",
                   help="relative drops of clean validation accuracy (%%) at which B'/G are kept; "
                   "each value once")
    s.add_argument("--out", type=Path, required=True, metavar="DIR")
    s.add_argument("--no-cache", action="store_true", help="do not read or write the activation cache")
    s.add_argument("--method", choices=["auto", "fast", "naive"], default="auto", help=argparse.SUPPRESS)
    s.add_argument("--step-size", default="1", metavar="K|P%", help="channels pruned per step, or a share of the layer such as 10%% (drops are still found channel by channel)")
    s.add_argument("--no-models", action="store_true", help="write the report only, no B'/G files")
    from engine.pruning.criteria import DEFAULT, REGISTRY

    s.add_argument("--rankings", type=_rankings, default=[DEFAULT], metavar="NAMES",
                   help="pruning criteria to compare, the first one's files at the top: " + ", ".join(
                       n + (" (default)" if n == DEFAULT else "") + (" (a diagnostic: it uses the trigger)"
                                                                          if c.diagnostic else "")
                       for n, c in REGISTRY.items()))
    s.add_argument("--random-seeds", type=int, default=5, metavar="N",
                   help="random orders to draw for the band (default 5, as in the window)")
    s.add_argument("--resize", action="store_true", help="resize images of another size to the model's input (bilinear)")
    s.add_argument("-q", "--quiet", action="store_true")

    e = sub.add_parser("eval", help="a model's answers, accuracy (and, for G, the flagged share) on data or images")
    add_model_args(e)
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, action="append", metavar="F", help="HDF5 file or image folder (repeatable)")
    src.add_argument("--image", type=Path, nargs="+", metavar="F", help="PNG/JPEG files: one line each")
    e.add_argument("--resize", action="store_true", help="resize images of another size to the model's input (bilinear)")
    e.add_argument("--json", action="store_true", help="write JSON lines instead of text")

    d = sub.add_parser("demo", help="generate the synthetic demo BadNet and its data")
    d.add_argument("--out", type=Path, required=True, metavar="DIR")
    d.add_argument("--seed", type=int, default=None)
    d.add_argument("--identities", type=int, default=None)
    d.add_argument("--epochs", type=int, default=None)
    d.add_argument("--tiny", action="store_true", help="a small, fast demo (for tests)")
    d.add_argument("--pruning-aware", action="store_true",
                   help="also make the pruning-aware BadNet (Fine-Pruning paper's attack)")
    d.add_argument("--data-only", action="store_true", help="write only the datasets")

    c = sub.add_parser("cache", help="show or clear the activation cache")
    c.add_argument("action", choices=["info", "clear"])

    f = sub.add_parser("finetune", help="fine-prune: fine-tune B' from a sweep's step on clean data")
    f.add_argument("--from-sweep", type=Path, required=True, metavar="DIR")
    f.add_argument("--ranking", metavar="NAME", help="fine-prune in this ranking's order (a 'sweep --rankings' folder)")
    f.add_argument("--step", required=True, help="step number, or a threshold such as 4%%")
    f.add_argument("--epochs", type=int, default=10)
    f.add_argument("--lr", type=float, default=1e-3)
    f.add_argument("--batch-size", type=int, default=64)
    f.add_argument("--holdout", type=float, default=0.2, help="share of clean validation never trained on")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", type=Path, required=True, metavar="DIR")
    add_model_args(f)  # default: the model the sweep's summary.json names
    f.add_argument("-q", "--quiet", action="store_true")

    m = sub.add_parser("maps", help="maps of where the model looks (channels, Grad-CAM, occlusion) per image")
    add_model_args(m)
    m.add_argument("--data", type=Path, action="append", required=True, metavar="F")
    m.add_argument("--layer", help="Conv2D layer (default: the one the sweep prunes)")
    m.add_argument("--method", choices=["channels", "gradcam", "occlusion"], default="gradcam")
    mc = m.add_mutually_exclusive_group()
    mc.add_argument("--channels", metavar="7,11", help="channels to sum (--method channels)")
    mc.add_argument("--top", type=int, metavar="K", help="the K channels most raised by --poisoned (default 5)")
    m.add_argument("--poisoned", type=Path, metavar="F", help="poisoned data that picks the --top channels")
    m.add_argument("--limit", type=int, metavar="N", help="map only the first N images of each file")
    m.add_argument("--out", type=Path, required=True, metavar="DIR")
    m.add_argument("-q", "--quiet", action="store_true")

    sc = sub.add_parser("scan", help="find a backdoor blind: reverse-engineer a trigger per label from clean "
                        "data alone (Neural Cleanse, pre-screened)")
    add_model_args(sc)
    sc.add_argument("--clean-valid", type=Path, required=True, metavar="F",
                    help="clean validation data with labels (the only data the scan reads)")
    sc.add_argument("--labels", default=None, metavar="all|a,b,c",
                    help="labels to optimise: all, or a list (default: pre-screened candidates plus a random "
                    "reference sample, as many as the budget allows)")
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--budget", type=int, default=None, metavar="N",
                    help="optimisation steps in all, over all labels (default 64 × 300)")
    sc.add_argument("--out", type=Path, required=True, metavar="DIR")
    sc.add_argument("--resize", action="store_true", help="resize images of another size to the model's input (bilinear)")
    sc.add_argument("-q", "--quiet", action="store_true")

    st = sub.add_parser("stamp", help="write a stand-in poisoned set: images stamped with a scan's reversed trigger")
    st.add_argument("--scan", type=Path, required=True, metavar="DIR", help="a 'prunelab scan' output folder")
    st.add_argument("--label", type=int, default=None, metavar="T",
                    help="which reversed trigger (default: the most suspicious flagged label)")
    st.add_argument("--data", type=Path, required=True, metavar="F", help="images to stamp (HDF5 or images)")
    st.add_argument("--out", type=Path, required=True, metavar="F2", help="the lab HDF5 file to write")
    st.add_argument("--resize", action="store_true", help="resize images of another size to the trigger's")
    st.add_argument("-q", "--quiet", action="store_true")

    r = sub.add_parser("repair", help="unlearning, a trigger filter and STRIP: repaired B, detectors G, and a "
                       "comparison with pruning")
    add_model_args(r)  # default: the --from-sweep folder's model
    r.add_argument("--clean-valid", type=Path, metavar="F", help="clean validation data: training and thresholds "
                   "(default: the --from-sweep folder's)")
    r.add_argument("--clean-test", type=Path, metavar="F", help="clean test data (evaluation only)")
    r.add_argument("--poisoned-test", type=Path, metavar="F", help="poisoned test data (evaluation only; without it "
                   "a stand-in made with the reversed trigger is evaluated, labelled as such)")
    r.add_argument("--scan", type=Path, metavar="DIR", help="a 'prunelab scan' folder with the reversed trigger(s); "
                   "without it the scan runs first")
    r.add_argument("--method", default="all", metavar="unlearn|filter|strip|all",
                   help="methods to run, comma-separated (default all)")
    r.add_argument("--frr", type=float, default=1.0, metavar="PCT",
                   help="false-rejection rate on clean validation that sets the filter's and STRIP's thresholds (%%)")
    r.add_argument("--epochs", type=int, default=5, help="unlearning epochs")
    r.add_argument("--lr", type=float, default=1e-4, help="unlearning learning rate")
    r.add_argument("--strip-n", type=int, default=10, metavar="N", help="STRIP's blending images (1-10)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--from-sweep", type=Path, metavar="DIR", help="a 'prunelab sweep' folder: its checkpoints (and "
                   "fine-pruning runs in its sub-folders) join the comparison")
    r.add_argument("--out", type=Path, required=True, metavar="DIR")
    r.add_argument("--no-models", action="store_true", help="write the report only, no B/G files")
    r.add_argument("-q", "--quiet", action="store_true")

    for cmd in (s, e, f, m, sc, r):
        cmd.add_argument("--input-scale", default="auto", choices=["auto", "255", "1"],
                         help="what the model was trained on: 255 = raw pixels (the lab's bd_net), 1 = pixels / 255 "
                         "(the CSAW-HackML-2020 models); auto measures clean accuracy both ways")
    return p


# ----------------------------------------------------------------------------- commands
def _open_datasets(args) -> dict:
    """Open (and check) the data files before the model: bad data fails fast, without
    paying for TensorFlow. Layouts are re-checked against the model once it is loaded."""
    from engine.io.datasets import open_dataset

    bar = ProgressPrinter(quiet=args.quiet)
    out = {}
    files = {"clean_valid": args.clean_valid, **poisoned_set_roles(args.poisoned_valid, "poisoned_valid"),
             "clean_test": args.clean_test, **poisoned_set_roles(args.poisoned_test, "poisoned_test")}
    for role, path in files.items():
        if path is not None:
            out[role] = open_dataset(path, resize=args.resize,
                                     progress=lambda d, t, p=path: bar.update("opening", d, t, str(p)))
            if not out[role].has_labels:
                raise PruneLabError(path, "has no labels (no class subfolders, classes.txt or 'label=N' in the "
                                    "file names); the sweep measures accuracy, use 'prunelab eval' for answers")
    return out


def cmd_sweep(args) -> int:
    from engine.report.outputs import write_sweep_outputs
    from engine.core.state import Progress
    from engine.pruning.sweep import Sweep

    if args.demo:
        from engine.demo.generate import demo_paths

        paths = demo_paths(args.demo, progress=lambda t: None if args.quiet else print(t, file=sys.stderr))
        args.model, args.weights = paths.model, None
        for role, pth in paths.datasets.items():
            if getattr(args, role) is None:
                setattr(args, role, [pth] if role.startswith("poisoned") else pth)
    from engine.report.outputs import check_output_folder

    check_output_folder(args.out, "sweep")  # before the sweep: a refused folder wastes no work
    datasets = _open_datasets(args)
    from engine.pruning.criteria import DEFAULT, check_available

    check_available(args.rankings, datasets)  # before paying for TensorFlow
    model = open_model(args)
    inputs = model.input_files() + [d.path for d in datasets.values()]
    if args.rankings != [DEFAULT]:  # (--random-seeds matters only with "random")
        return _sweep_rankings(args, model, datasets, inputs)
    sweep = Sweep(model, datasets, args.layer, args.thresholds, method=args.method,
                  use_cache=not args.no_cache, step_size=args.step_size)
    settle_input_scale(args, model, datasets["clean_valid"])  # after the layer and the data are checked
    if sweep.fallback_reason and not args.quiet:
        print(f"naive loop (no fast path): {sweep.fallback_reason}", file=sys.stderr)
    bar = ProgressPrinter(quiet=args.quiet)
    for ev in sweep.events():
        if isinstance(ev, Progress):
            bar.update("pruning" if ev.phase == "steps" else "activations", ev.done, ev.total, ev.text)
    bar.close()
    write_sweep_outputs(sweep.result, model, args.out, inputs=inputs, with_models=not args.no_models,
                        datasets=datasets, use_cache=not args.no_cache)
    if not args.quiet:
        _print_summary(sweep.result, args.out)
    return 0


def _sweep_rankings(args, model, datasets, inputs) -> int:
    from engine.report.compare import comparison_table, summary_lines, write_rankings_sweep
    from engine.pruning.rankings import RankingSweeps
    from engine.core.state import Progress

    rs = RankingSweeps(model, datasets, args.rankings, args.layer, args.thresholds, random_seeds=args.random_seeds,
                       method=args.method, use_cache=not args.no_cache, step_size=args.step_size)
    settle_input_scale(args, model, datasets["clean_valid"])  # after the layer and the data are checked
    bar = ProgressPrinter(quiet=args.quiet)
    for ev in rs.events():
        if isinstance(ev, Progress):
            bar.update({"steps": "pruning"}.get(ev.phase, ev.phase), ev.done, ev.total, ev.text)
    bar.close()
    ranks = list(rs.rankings.values())
    write_rankings_sweep(ranks, rs.results, model, args.out, inputs=inputs, with_models=not args.no_models,
                         datasets=datasets)
    if not args.quiet:
        print("\n".join(summary_lines(comparison_table(ranks, rs.results))))
        _print_summary(rs.results[ranks[0].name], args.out)
    return 0


def _print_summary(result, out: Path) -> None:
    base = result.records[0]
    print(f"baseline: clean validation accuracy {base.clean_valid_acc:.2f} %" + "".join(
        f", ASR{' ' + set_name(r) if set_name(r) else ''} {base.metric(role_metric(r)):.2f} %"
        for r in poisoned_roles(result.labels, "valid") if base.metric(role_metric(r)) is not None))
    for cp in result.checkpoints:
        if cp.step is None:
            print(f"{cp.threshold:>5g} %: never reached")
            continue
        r = result.records[cp.step]
        parts = [f"step {cp.step} ({r.pruned} channels, {r.fraction_pruned * 100:.1f} % pruned)",
                 f"clean val {r.clean_valid_acc:.2f} %"]
        for split, short in (("valid", "val"), ("test", "test")):
            if split == "test" and r.clean_test_acc is not None:
                parts.append(f"clean test {r.clean_test_acc:.2f} %")
            for role in poisoned_roles(result.labels, split):  # one ASR per trigger with several sets
                v = r.metric(role_metric(role))
                if v is not None:
                    parts.append(f"ASR {short}{' ' + set_name(role) if set_name(role) else ''} {v:.2f} %")
        print(f"{cp.threshold:>5g} %: " + ", ".join(parts))
    print(f"wrote {out}")


def cmd_eval(args) -> int:
    import json

    from engine.pruning.rules import check_labels_in_range

    from engine.io.datasets import open_dataset
    from engine.models.runner import predict_dataset_labels

    model = open_model(args)
    flag = model.n_classes - 1 if model.is_goodnet else None
    n_real = model.n_classes - 1 if model.is_goodnet else model.n_classes

    def emit(record: dict, text: str) -> None:
        print(json.dumps(record) if args.json else text, flush=True)

    emit({"model": str(model.path), "kind": model.kind, "classes": n_real, "flag_class": flag},
         f"model: {model.path} ({model.kind}, {n_real} classes{', G with flag class ' + str(flag) if flag is not None else ''})")
    scale_set = model.is_goodnet and args.input_scale == "auto"  # G carries its B's convention
    for src in ([args.image] if args.image else args.data):
        ds = open_dataset(src, model.input_hwc, resize=args.resize)
        path, labelled = ds.path, ds.has_labels
        if labelled:
            check_labels_in_range(ds, n_real)
        if not scale_set:
            settle_input_scale(args, model, ds if labelled and not (ds.single_target and ds.n > 1) else None)
            scale_set = True
        pred = predict_dataset_labels(model, ds)
        for i, f in enumerate(getattr(ds, "files", ())):  # images: one line each
            k = int(pred[i])
            emit({"file": str(f), "class": k, "backdoor_suspected": k == flag,
                  "label": int(ds.labels[i]) if labelled else None},
                 f"{f}: {k} (backdoor suspected)" if k == flag else f"{f}: class {k}")
        rec = {"data": str(path), "images": ds.n, "accuracy": None, "attack_success_rate": None}
        if labelled:
            acc = 100.0 * (pred == ds.labels).mean()
            line = f"{path}: {ds.n} images, accuracy {acc:.2f} %"
            if ds.single_target and ds.n > 1:
                line = f"{path}: {ds.n} images, all labelled {ds.target}: attack success rate {acc:.2f} %"
                rec["attack_success_rate"] = acc
            else:
                rec["accuracy"] = acc
        else:
            line = f"{path}: {ds.n} images, no labels (no accuracy)"
        if flag is not None:
            rec["flagged"] = 100.0 * (pred == flag).mean()
            line += f", flagged as backdoor {rec['flagged']:.2f} %"
        emit(rec, line)
        ds.close()
    return 0


def cmd_demo(args) -> int:
    from engine.demo.generate import DemoSpec, generate_demo

    spec = DemoSpec.tiny() if args.tiny else DemoSpec()
    if args.seed is not None:
        spec.seed = args.seed
    if args.identities is not None:
        spec.identities = args.identities
    if args.epochs is not None:
        spec.epochs = args.epochs
    spec.pruning_aware = args.pruning_aware
    from engine.report.outputs import staged_output

    with staged_output(args.out, kind="demo") as stage:
        generate_demo(spec, stage, data_only=args.data_only, log=lambda t: print(t, file=sys.stderr))
    print(f"wrote {args.out}")
    return 0


def cmd_cache(args) -> int:
    from engine.io import cache
    from engine.io.hdf5 import human_bytes

    if args.action == "clear":
        freed = cache.clear()
        print(f"cleared {human_bytes(freed)} from {cache.cache_dir()}")
    else:
        i = cache.info()
        print(f"{i.path}: {i.entries} entries, {human_bytes(i.bytes)} of {human_bytes(i.cap)}")
    return 0


def cmd_finetune(args) -> int:
    from engine.io.datasets import open_dataset
    from engine.pruning.finetune import EpochRecord, FineTune, FineTuneConfig
    from engine.report.outputs import read_sweep_summary, resolve_step, write_finetune_outputs

    if args.ranking:
        from engine.report.compare import ranking_folder

        args.from_sweep = ranking_folder(args.from_sweep, args.ranking)
    from engine.pruning.records import pruned_channels_of, summary_pruned_per_record

    from engine.report.outputs import check_output_folder

    check_output_folder(args.out, "finetune")
    summary = read_sweep_summary(args.from_sweep)
    step = resolve_step(summary, args.step)
    pruned = pruned_channels_of(summary["ranking"]["order"], summary_pruned_per_record(summary), step)
    model = open_model(args, summary)
    datasets = {r: open_dataset(p, model.input_hwc) for r, p in summary["datasets"].items()}
    if args.input_scale == "auto" and summary.get("input_scale"):
        args.input_scale = f"{float(summary['input_scale']):g}"  # the sweep's own convention
    settle_input_scale(args, model, datasets.get("clean_valid"))
    inputs = model.input_files() + [d.path for d in datasets.values()]
    cfg = FineTuneConfig(epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size,
                         holdout=args.holdout, seed=args.seed)
    ft = FineTune(model, datasets, summary["layer"], pruned, step, cfg)
    bar = ProgressPrinter(quiet=args.quiet)
    for ev in ft.events():
        if isinstance(ev, EpochRecord):
            txt = f"epoch {ev.epoch}: clean (held-out) {ev.clean_valid_acc:.2f} %"
            if ev.asr_valid is not None:
                txt += f", ASR {ev.asr_valid:.2f} %"
            bar.update("fine-tuning", ev.epoch, cfg.epochs, txt)
    bar.close()
    res = ft.result
    write_finetune_outputs(res, model, args.from_sweep, args.out, inputs=inputs, source_model=str(model.path))
    if not args.quiet:
        def fmt(r):
            # fine-tuning trained on part of the clean validation data: its accuracy is the held-out rest's
            titles = {**METRIC_TITLES, "clean_valid_acc": f"{METRIC_TITLES['clean_valid_acc']} (held-out)"}
            return ", ".join(f"{titles[k]} {r.metric(k):.2f} %" for k in METRICS if r.metric(k) is not None)

        print(f"step {step}, pruning only:      {fmt(res.records[0])}")
        print(f"step {step}, fine-pruned ({cfg.epochs} ep): {fmt(res.records[-1])}")
        print(f"wrote {args.out}")
    return 0


def cmd_maps(args) -> int:
    from engine.cli.maps import run_maps_cli

    return run_maps_cli(args, ProgressPrinter(quiet=args.quiet))


def main(argv: list[str] | None = None) -> int:
    """Run one headless command; returns the exit code (2: bad input, 130: cancelled)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_INPUT
    if args.command == "sweep" and not (args.demo or args.model or args.weights):
        parser.error("sweep needs a model: --model M, --weights W (the lab's DeepID) or --demo")
    if args.command == "scan" and not (args.model or args.weights):
        parser.error("scan needs a model: --model M or --weights W (the lab's DeepID)")
    from engine.core.tfsetup import silence_native_logs

    silence_native_logs()
    warnings.showwarning = _warning_printer
    warnings.simplefilter("always", PruneLabWarning)
    try:
        return COMMANDS[args.command](args)
    except PruneLabError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except (Cancelled, KeyboardInterrupt):
        print(f"\n{PROG}: cancelled; nothing was written", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{PROG}: error: out of memory", file=sys.stderr)
        return EXIT_INPUT
    except Exception as e:  # a bug of ours: still one line, details on request
        if os.environ.get("PRUNELAB_DEBUG"):
            raise
        msg = " ".join(str(e).split())[:300]
        print(f"{PROG}: error: internal error ({type(e).__name__}: {msg}); "
              "set PRUNELAB_DEBUG=1 for the traceback", file=sys.stderr)
        return 1


COMMANDS = {"sweep": cmd_sweep, "eval": cmd_eval, "demo": cmd_demo, "cache": cmd_cache,
            "finetune": cmd_finetune, "maps": cmd_maps, "scan": cmd_scan, "stamp": cmd_stamp,
            "repair": cmd_repair}


if __name__ == "__main__":
    sys.exit(main())
