"""``prunelab finetune --from-sweep DIR --step K [--epochs E] --out DIR2``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from engine.errors import PruneLabError


def resolve_step(summary: dict, text: str) -> int:
    t = text.strip()
    if t.endswith("%"):
        thr = float(t[:-1])
        for cp in summary.get("checkpoints", []):
            if abs(cp["threshold"] - thr) < 1e-9:
                if cp["step"] is None:
                    raise PruneLabError(None, f"the sweep never reached the {thr:g} % checkpoint")
                return int(cp["step"])
        raise PruneLabError(None, f"the sweep has no {thr:g} % checkpoint")
    try:
        k = int(t)
    except ValueError:
        raise PruneLabError(None, f"--step must be a step number or a checkpoint such as 4% (got '{text}')") from None
    if not (0 <= k <= summary["steps"]):
        raise PruneLabError(None, f"step {k} is outside the sweep (0–{summary['steps']})")
    return k


def epochs_csv(records) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["epoch", "loss", "clean_valid_acc", "asr_valid", "clean_test_acc", "asr_test"])
    for r in records:
        w.writerow([r.epoch] + ["" if v is None else f"{v:.6f}".rstrip("0").rstrip(".")
                                for v in (r.loss, r.clean_valid_acc, r.asr_valid, r.clean_test_acc, r.asr_test)])
    return buf.getvalue()


def finetune_figure(res, path: Path) -> None:
    from engine.report import _plt, save_figure

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
    e = [r.epoch for r in res.records]
    for key, style, name in (("clean_valid_acc", "b-o", "clean accuracy (held-out validation)"),
                             ("asr_valid", "r-o", "ASR (validation)"), ("clean_test_acc", "b--s", "clean accuracy (test)"),
                             ("asr_test", "r--s", "ASR (test)")):
        ys = [r.metric(key) for r in res.records]
        if ys[0] is not None:
            ax.plot(e, ys, style, label=name, ms=4)
    ax.set_xlabel("fine-tuning epoch (0 = pruning only)")
    ax.set_ylabel("%")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.4)
    ax.legend(loc="center right", fontsize=8)
    ax.set_title(f"Fine-pruning from step {res.step} ({len(res.pruned)} channels of {res.layer} pruned)")
    fig.tight_layout()
    save_figure(fig, path)


def run_finetune_cli(args, bar, staged_output) -> int:
    from engine import atomic
    from engine.data import LabDataset
    from engine.finetune import EpochRecord, FineTune, FineTuneConfig
    from engine.goodnet import make_goodnet, save_model
    from engine.models import load_model
    from engine.atomic import atomic_write_text

    sdir = Path(args.from_sweep)
    sfile = sdir / "summary.json"
    if not sfile.is_file():
        raise PruneLabError(sdir, "has no summary.json (is it a 'prunelab sweep' output folder?)")
    try:
        summary = json.loads(sfile.read_text())
    except ValueError:
        raise PruneLabError(sfile, "is not valid JSON") from None
    step = resolve_step(summary, args.step)
    model = load_model(summary["model"], summary.get("weights"), allow_unsafe=args.allow_unsafe_model)
    datasets = {r: LabDataset(p, model.input_hwc) for r, p in summary["datasets"].items()}
    inputs = model.input_files() + [d.path for d in datasets.values()]
    atomic.protect(inputs)
    pruned = summary["ranking"]["order"][:step]
    cfg = FineTuneConfig(epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size,
                         holdout=args.holdout, seed=args.seed)
    ft = FineTune(model, datasets, summary["layer"], pruned, step, cfg)
    for ev in ft.events():
        if isinstance(ev, EpochRecord):
            txt = f"epoch {ev.epoch}: clean (held-out) {ev.clean_valid_acc:.2f} %"
            if ev.asr_valid is not None:
                txt += f", ASR {ev.asr_valid:.2f} %"
            bar.update("fine-tuning", ev.epoch, cfg.epochs, txt)
    res = ft.result
    with staged_output(args.out, inputs) as stage:
        save_model(res.model, stage / f"B_prime_finetuned_step{step}.h5", inputs)
        save_model(make_goodnet(model.model, res.model), stage / f"G_finetuned_step{step}.keras", inputs)
        atomic_write_text(stage / "finetune.csv", epochs_csv(res.records))
        out = res.summary()
        out.update({"from_sweep": str(sdir.resolve()), "model": summary["model"],
                    "b_prime": f"B_prime_finetuned_step{step}.h5", "goodnet": f"G_finetuned_step{step}.keras"})
        atomic_write_text(stage / "summary.json", json.dumps(out, indent=2))
        finetune_figure(res, stage / "finetune.png")
    if not args.quiet:
        a, b = res.records[0], res.records[-1]

        def fmt(r):
            return ", ".join(f"{n} {v:.2f} %" for n, v in (("clean val (held-out)", r.clean_valid_acc),
                                                             ("ASR val", r.asr_valid), ("clean test", r.clean_test_acc),
                                                             ("ASR test", r.asr_test)) if v is not None)

        print(f"step {step}, pruning only:      {fmt(a)}")
        print(f"step {step}, fine-pruned ({cfg.epochs} ep): {fmt(b)}")
        print(f"wrote {args.out}")
    return 0
