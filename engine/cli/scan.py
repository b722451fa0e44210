"""``prunelab scan`` (find a backdoor blind from clean data) and ``prunelab stamp`` (a stand-in
poisoned set made with a reversed trigger)."""

from __future__ import annotations

from engine.cli.common import ProgressPrinter, open_model, settle_input_scale
from engine.core.errors import PruneLabError


def _scan_labels(text: str | None, n_classes: int):
    if text is None:
        return None
    t = text.strip().lower()
    if t == "all":
        return list(range(n_classes))
    try:
        return [int(v) for v in t.split(",") if v.strip()]
    except ValueError:
        raise PruneLabError(None, f"--labels must be 'all' or class numbers such as 0,3,7 (got '{text}')") from None


def cmd_scan(args) -> int:
    from engine.analysis.scan import MIN_CLEAN_IMAGES, _check_classifier, check_scan_inputs, scan_events
    from engine.core.state import JobState, Progress
    from engine.io.datasets import open_dataset
    from engine.report.outputs import check_output_folder
    from engine.report.scan import write_scan_outputs

    check_output_folder(args.out, "scan")
    ds = open_dataset(args.clean_valid, resize=args.resize)
    if not ds.has_labels:  # before paying for TensorFlow
        raise PruneLabError(ds.path, "has no labels; the scan needs clean images with their true classes "
                            "(class subfolders, classes.txt or 'label=N' in the file names)")
    if ds.n < MIN_CLEAN_IMAGES:
        raise PruneLabError(ds.path, f"holds {ds.n} clean images; the scan needs at least {MIN_CLEAN_IMAGES} "
                            f"({MIN_CLEAN_IMAGES - 16} to optimise on, 16 held out)")
    model = open_model(args)
    ds.expect(model.input_hwc)
    labels = _scan_labels(args.labels, model.n_classes)
    check_scan_inputs(model, ds, labels)  # a refusal comes before the input-scale line
    _check_classifier(model)
    settle_input_scale(args, model, ds)
    inputs = model.input_files() + [ds.path]
    bar = ProgressPrinter(quiet=args.quiet)
    gen = scan_events(model, ds, labels=labels, seed=args.seed, budget=args.budget, state=JobState())
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        if isinstance(ev, Progress):
            bar.update(ev.phase, ev.done, ev.total, ev.text)
    bar.close()
    write_scan_outputs(result, model, args.out, clean_ds=ds, inputs=inputs)
    if not args.quiet:
        rows = result.scanned
        print(f"scanned {len(rows)} of {result.n_classes} labels in {result.seconds:.1f} s "
              f"({result.steps_per_label:.0f} steps per label); median mask L1 {result.median_l1:.1f}")
        for r in rows[:5]:
            mark = "  FLAGGED" if r.label in result.flagged else ""
            print(f"  label {r.label}: mask L1 {r.mask_l1:.1f}, anomaly index {r.anomaly_index:.2f}, "
                  f"attack success {100 * r.attack_success:.1f} %{mark}")
        if result.flagged:
            print(f"verdict: backdoor — target label(s) {', '.join(map(str, result.flagged))}")
        else:
            print("verdict: no evidence of a backdoor")
        print(f"wrote {args.out}")
    return 0


def cmd_stamp(args) -> int:
    from engine.io.datasets import open_dataset
    from engine.report.scan import write_standin
    from engine.analysis.trigger import load_scan_triggers

    triggers = load_scan_triggers(args.scan, args.label)
    if not triggers:
        raise PruneLabError(args.scan, "flagged no label (no evidence of a backdoor); give --label T for one of "
                            "its saved triggers (trigger_<t>.npz)")
    trig = triggers[0]
    ds = open_dataset(args.data, trig.hw + (int(trig.pattern.shape[2]),), resize=args.resize)
    write_standin(trig, ds, args.out, inputs=[ds.path])
    if not args.quiet:
        print(f"wrote {args.out}: {ds.n} images stamped with the reversed trigger, labelled {trig.label} "
              f"(a stand-in poisoned set)")
    return 0
