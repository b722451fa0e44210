"""``prunelab repair``: unlearning, the trigger filter and STRIP, compared with pruning."""

from __future__ import annotations

from pathlib import Path

from engine.cli.common import ProgressPrinter, open_model, settle_input_scale
from engine.core.errors import PruneLabError


def cmd_repair(args) -> int:
    from engine.io.datasets import open_dataset
    from engine.report.outputs import check_output_folder
    from engine.analysis.repair import parse_methods, repair_events
    from engine.report.repair import rows_from_sweep, summary_lines, write_repair_outputs
    from engine.core.state import Progress

    check_output_folder(args.out, "repair")
    methods = parse_methods(args.method)
    if not 0 <= args.frr < 50:
        raise PruneLabError(None, f"--frr must be between 0 and 50 % (got {args.frr:g})")
    if not 1 <= args.strip_n <= 10:
        raise PruneLabError(None, f"--strip-n must be between 1 and 10 (got {args.strip_n})")
    if not 1 <= args.epochs <= 10_000:
        raise PruneLabError(None, f"--epochs must be between 1 and 10000 (got {args.epochs})")
    sweep_rows, sweep = [], None
    if args.from_sweep is not None:
        sweep_rows, sweep = rows_from_sweep(args.from_sweep)
        if args.model is None and args.weights is None:
            args.model, args.weights = sweep["model"], sweep.get("weights")
        for role in ("clean_valid", "clean_test", "poisoned_test"):  # the same data as the sweep by default
            if getattr(args, role) is None and role in sweep["datasets"]:
                setattr(args, role, Path(sweep["datasets"][role]))
    if args.model is None and args.weights is None:
        raise PruneLabError(None, "repair needs a model: --model M, --weights W or --from-sweep D")
    if args.clean_valid is None:
        raise PruneLabError(None, "repair needs clean validation data (--clean-valid F)")
    triggers = None
    if args.scan is not None:
        from engine.analysis.trigger import load_scan_triggers

        triggers = load_scan_triggers(args.scan)
    datasets = {}
    for role in ("clean_valid", "clean_test", "poisoned_test"):
        path = getattr(args, role)
        if path is not None:
            datasets[role] = open_dataset(path)
            if not datasets[role].has_labels:
                raise PruneLabError(path, "has no labels; repair measures accuracy and ASR")
    if sweep is not None:
        for row in sweep_rows:
            other = [r for r in ("clean_test", "poisoned_test") if r in datasets and r in sweep["datasets"]
                     and Path(sweep["datasets"][r]).resolve() != Path(datasets[r].path).resolve()]
            if other:
                row.note = (row.note + "; " if row.note else "") + "measured by the sweep on other " + \
                    " and ".join(o.replace("_", " ") for o in other) + " data"
    model = open_model(args)
    for ds in datasets.values():
        ds.expect(model.input_hwc)
    if args.input_scale == "auto" and sweep is not None and sweep.get("input_scale"):
        args.input_scale = f"{float(sweep['input_scale']):g}"  # the sweep's own convention
    settle_input_scale(args, model, datasets["clean_valid"])
    inputs = model.input_files() + [d.path for d in datasets.values()] + ([args.scan] if args.scan else [])
    bar = ProgressPrinter(quiet=args.quiet)
    gen = repair_events(model, datasets, triggers=triggers, methods=methods, frr=args.frr, epochs=args.epochs,
                        strip_n=args.strip_n, seed=args.seed, learning_rate=args.lr, sweep_rows=sweep_rows)
    try:
        while True:
            ev = next(gen)
            if isinstance(ev, Progress):
                bar.update(ev.phase, ev.done, ev.total, ev.text)
    except StopIteration as stop:
        result = stop.value
    bar.close()
    extra = {"weights": str(model.weights_path) if model.weights_path else None,
             "scan_folder": str(args.scan) if args.scan else None,
             "from_sweep": str(args.from_sweep) if args.from_sweep else None}
    write_repair_outputs(result, args.out, inputs=inputs, extra=extra, with_models=not args.no_models)
    if not args.quiet:
        print("\n".join(summary_lines(result)))
        print(f"wrote {args.out}")
    return 0
