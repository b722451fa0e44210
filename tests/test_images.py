"""PNG/JPEG files and folders as data: labels from class folders, classes.txt or names; a sweep
over images equals the sweep over the same pixels in HDF5; ``prunelab eval --image``; and the
standalone ``G_<t>_eval.py`` agreeing with ``prunelab eval`` in a process without PruneLab."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from engine.io.datasets import LabDataset, open_dataset
from engine.core.errors import PruneLabError, PruneLabWarning
from engine.io.images import ImageSet
from tests.helpers import random_images, run_bare_script, write_dataset, write_images


def _index(ds) -> np.ndarray:
    """Images are named img_<i>…: the original index of each file of a set."""
    return np.array([int(p.name.split("_")[1].split(".")[0]) for p in ds.files])


def _labelled_copies(root, x, y):
    """The same images in the three label conventions (and without labels)."""
    names = [f"img_{i:04d}.png" for i in range(len(x))]
    write_images(root / "by_number", x, [f"{y[i]}/{n}" for i, n in enumerate(names)])
    cls = ["cat", "dog", "owl", "eel", "ant", "bee", "fox", "yak", "emu", "gnu", "elk", "asp"]
    write_images(root / "by_name", x, [f"{cls[y[i]]}/{n}" for i, n in enumerate(names)])
    (root / "by_name" / "classes.txt").write_text("\n".join(cls) + "\n")
    write_images(root / "in_names", x, [f"img_{i:04d}_label={y[i]}.png" for i in range(len(x))])
    write_images(root / "unlabelled", x, names)
    return root


def test_three_label_conventions_give_the_same_labels_and_pixels(tmp_path):
    rng = np.random.default_rng(1)
    x, y = random_images(rng, 30), rng.integers(0, 12, 30)
    _labelled_copies(tmp_path, x, y)
    for sub in ("by_number", "by_name", "in_names"):
        with open_dataset(tmp_path / sub, (55, 47, 3)) as ds:
            assert isinstance(ds, ImageSet) and ds.has_labels and ds.n == 30
            idx = _index(ds)
            assert sorted(idx) == list(range(30))
            assert np.array_equal(ds.labels, y[idx]), sub
            assert np.array_equal(ds.read(0, 30), x[idx].astype(np.float32))
            got = np.concatenate([b for _, b in ds.batches(7, prefetch=True)])
            assert np.array_equal(got, x[idx].astype(np.float32))
            assert np.array_equal(ds.take([5, 2, 5]), x[idx[[5, 2, 5]]].astype(np.float32))
            assert np.array_equal(ds.image_uint8(3), x[idx[3]])
            assert ds.label_max == y.max() and ds.target == np.bincount(y).argmax()
    with open_dataset(tmp_path / "unlabelled") as ds:
        assert not ds.has_labels and ds.n == 30 and "no labels" in ds.describe()
        assert np.array_equal(ds.read(0, 30), x.astype(np.float32))  # natural name order
        for fact in ("labels", "label_max", "target", "single_target"):
            with pytest.raises(PruneLabError, match="has no labels"):
                getattr(ds, fact)


def test_grayscale_palette_alpha_are_converted_and_said_once(tmp_path):
    rng = np.random.default_rng(2)
    rgb = random_images(rng, 1)[0]
    Image.fromarray(rgb).save(tmp_path / "a_label=1.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "b_label=1.png")  # L
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)])).save(tmp_path / "c_label=1.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "d_label=1.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = open_dataset(tmp_path, (55, 47, 3))
    said = [str(w.message) for w in caught if isinstance(w.message, PruneLabWarning)]
    assert len(said) == 1 and "1 grayscale and 1 with transparency of 4 images converted to RGB" in said[0]
    x = ds.read(0, 4)
    assert np.array_equal(x[0], rgb) and np.array_equal(x[2], rgb)  # alpha dropped
    assert np.array_equal(x[1], np.repeat(rgb[..., :1], 3, axis=2))
    pal = np.asarray(Image.open(tmp_path / "d_label=1.png").convert("RGB"))
    assert np.array_equal(x[3], pal)


def test_sizes_are_refused_or_resized_bilinearly(tmp_path):
    rng = np.random.default_rng(3)
    write_images(tmp_path, random_images(rng, 3), ["a.png", "b.png", "c.png"])
    write_images(tmp_path, random_images(rng, 1, (60, 50, 3)), ["d.png"])
    with pytest.raises(PruneLabError) as e:
        open_dataset(tmp_path, (55, 47, 3))
    assert e.value.path == str(tmp_path / "d.png") and "is 60×50 pixels (H×W), the model expects 55×47" in e.value.message
    with pytest.raises(PruneLabError, match="is 60×50 pixels .* while a.png is 55×47"):
        open_dataset(tmp_path)  # no model yet: one set, one size
    ds = open_dataset(tmp_path, resize=True)  # the model comes later, as in the CLI
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds.expect((55, 47, 3))
        ds.expect((55, 47, 3))
    said = [str(w.message) for w in caught if isinstance(w.message, PruneLabWarning)]
    assert said == [f"{tmp_path}: resized 1 of 4 images to 55×47 (bilinear)"]
    want = np.asarray(Image.open(tmp_path / "d.png").resize((47, 55), Image.Resampling.BILINEAR))
    assert np.array_equal(ds.read(3, 4)[0], want)


def test_folder_listing_skips_other_files_and_outside_links(tmp_path):
    rng = np.random.default_rng(4)
    outside = write_images(tmp_path / "elsewhere", random_images(rng, 1), ["secret.png"])[0]
    root = tmp_path / "photos"
    write_images(root, random_images(rng, 3), ["x_label=0.png", "y_label=1.jpg", "z_label=2.JPEG"])
    (root / "notes.txt").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\0")
    (root / "link_label=1.png").symlink_to(outside)
    (root / "inside_label=2.png").symlink_to(root / "x_label=0.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = open_dataset(root)
    said = [str(w.message) for w in caught if isinstance(w.message, PruneLabWarning)]
    assert [p.name for p in ds.files] == ["inside_label=2.png", "x_label=0.png", "y_label=1.jpg", "z_label=2.JPEG"]
    assert list(ds.labels) == [2, 0, 1, 2]
    assert len(said) == 2
    assert "skipped 1 entry that is not a PNG/JPEG image (e.g. notes.txt)" in said[0]
    assert "did not follow 1 symbolic link" in said[1] and "link_label=1.png" in said[1]
    # some names labelled, some not: refused, naming the first unlabelled one
    write_images(root, random_images(rng, 1), ["w.png"])
    with pytest.raises(PruneLabError, match="has no 'label=N' in its name while 4 other images") as e:
        open_dataset(root)
    assert e.value.path == str(root / "w.png")
    # several files given: labels from names, the set's path is their folder
    ds = open_dataset([root / "y_label=1.jpg", root / "x_label=0.png"])
    assert ds.n == 2 and list(ds.labels) == [1, 0] and ds.path == root
    # what decides: an HDF5 name, then a folder, an image name, or PNG/JPEG bytes under another name
    assert isinstance(open_dataset(root / "x_label=0.png"), ImageSet)
    (tmp_path / "photo_label=1.bin").write_bytes((root / "x_label=0.png").read_bytes())
    assert list(open_dataset(tmp_path / "photo_label=1.bin").labels) == [1]
    with pytest.raises(PruneLabError, match="is a directory"):
        open_dataset(_mkdir(tmp_path / "a_folder.h5"))


def _mkdir(p):
    p.mkdir()
    return p


# ----------------------------------------------------------------------------- sweeps
@pytest.fixture(scope="module")
def image_lab(small_lab, tmp_path_factory):
    """small_lab's four datasets as images (class folders, classes.txt + JPEG, names), and
    HDF5 files holding exactly the decoded pixels (JPEG is lossy)."""
    root = tmp_path_factory.mktemp("image-lab")
    imgs, h5 = {}, {}
    for role, path in small_lab.files.items():
        ds = LabDataset(path)
        x, y = ds.read(0, ds.n).astype(np.uint8), ds.labels
        ds.close()
        names = [f"img_{i:04d}" for i in range(len(x))]
        if role == "clean_valid":  # integer class folders, PNG
            write_images(root / role, x, [f"{y[i]}/{n}.png" for i, n in enumerate(names)])
        elif role == "clean_test":  # classes.txt, JPEG
            cls = [f"person_{c}" for c in range(small_lab.n_classes)]
            write_images(root / role, x, [f"{cls[y[i]]}/{n}.jpg" for i, n in enumerate(names)])
            (root / role / "classes.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(cls)))
        else:  # label=N in the names, PNG
            write_images(root / role, x, [f"{n}_label={y[i]}.png" for i, n in enumerate(names)])
        imgs[role] = root / role
        with open_dataset(imgs[role]) as ds:  # the pixels as decoded, in the set's order
            h5[role] = write_dataset(root / f"{role}.h5", ds.read(0, ds.n), ds.labels)
    return imgs, h5


def test_sweep_over_image_folders_equals_the_sweep_over_hdf5(small_lab, image_lab):
    from engine.models.loading import load_model
    from engine.pruning.sweep import Sweep

    imgs, h5 = image_lab
    lm = load_model(small_lab.model)
    results = []
    for files in (h5, imgs):
        ds = {r: open_dataset(p, lm.input_hwc) for r, p in files.items()}
        results.append(Sweep(lm, ds, use_cache=False).run())
        assert isinstance(ds["clean_test"], ImageSet if files is imgs else LabDataset)
    a, b = results
    assert a.order == b.order
    assert [r.step for r in a.records] == [r.step for r in b.records] and len(a.records) == 61
    for ra, rb in zip(a.records, b.records):
        assert (ra.clean_valid_acc, ra.asr_valid, ra.clean_test_acc, ra.asr_test) == \
               (rb.clean_valid_acc, rb.asr_valid, rb.clean_test_acc, rb.asr_test)
    for role in a.predictions:
        assert np.array_equal(a.predictions[role], b.predictions[role])
    assert [c.step for c in a.checkpoints] == [c.step for c in b.checkpoints]
    accs = [r.clean_valid_acc for r in a.records]
    assert max(accs) - min(accs) > 10  # pruning changed the answers: the comparison means something


def test_sweep_refuses_an_unlabelled_folder_in_one_line(small_lab, tmp_path):
    from tests.test_cli import run_cli

    write_images(tmp_path / "photos", random_images(np.random.default_rng(5), 3), ["a.png", "b.png", "c.png"])
    f = small_lab.files
    r = run_cli("sweep", "--model", small_lab.model, "--clean-valid", tmp_path / "photos",
                "--poisoned-valid", f["poisoned_valid"], "--out", tmp_path / "out", "-q")
    assert r.returncode == 2 and not (tmp_path / "out").exists()
    assert r.stderr.strip().splitlines() == [
        f"prunelab: error: {tmp_path / 'photos'}: has no labels (no class subfolders, classes.txt or 'label=N' "
        "in the file names); the sweep measures accuracy, use 'prunelab eval' for answers"]


# ----------------------------------------------------------------------------- eval
def test_eval_prints_one_line_per_image_and_the_summary(small_lab, image_lab, capsys):
    from engine.cli.main import main
    from engine.models.loading import load_model
    from engine.models.runner import predict_dataset_labels

    imgs, h5 = image_lab
    files = sorted((imgs["poisoned_test"]).glob("*.png"))[:9]
    ref = LabDataset(h5["poisoned_test"])
    want = predict_dataset_labels(load_model(small_lab.model).model, ref)[:9]
    assert main(["eval", "--model", str(small_lab.model), "--image", *map(str, files)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("model: ") and len(out) == 11
    assert out[1:10] == [f"{f}: class {k}" for f, k in zip(files, want)]
    asr = 100.0 * np.mean(want == 3)
    assert out[10] == f"{files[0].parent}: 9 images, all labelled 3: attack success rate {asr:.2f} %"
    assert main(["eval", "--model", str(small_lab.model), "--image", *map(str, files), "--json"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["class"] for r in recs[1:10]] == [int(k) for k in want]
    assert recs[1]["file"] == str(files[0]) and recs[1]["label"] == 3 and recs[1]["backdoor_suspected"] is False
    assert recs[10]["attack_success_rate"] == pytest.approx(asr) and recs[10]["accuracy"] is None
    # HDF5 keeps its one summary line; an image folder gets one line per image plus the summary
    assert main(["eval", "--model", str(small_lab.model), "--data", str(h5["clean_test"]),
                 "--data", str(imgs["clean_test"])]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    n = LabDataset(h5["clean_test"]).n
    assert len(out) == 1 + 1 + n + 1
    assert out[1].split(": ", 1)[1] == out[-1].split(": ", 1)[1]  # same accuracy from both


def test_eval_refuses_another_size_or_resizes_it(small_lab, image_lab, capfd):
    """The CLI redirects native stderr, so the lines are read from the file descriptors."""
    from engine.cli.main import main

    imgs, h5 = image_lab
    one = sorted(imgs["poisoned_test"].glob("*.png"))[0]
    from engine.models.loading import load_model

    big = one.parent.parent / "big_label=3.png"
    Image.open(one).resize((94, 110), Image.Resampling.NEAREST).save(big)
    assert main(["eval", "--model", str(small_lab.model), "--image", str(big)]) == 2
    assert capfd.readouterr().err.strip().splitlines()[-1] == (
        f"prunelab: error: {big}: is 110×94 pixels (H×W), the model expects 55×47; turn on resizing "
        "(--resize) to scale images bilinearly")
    assert main(["eval", "--model", str(small_lab.model), "--image", str(big), "--resize"]) == 0
    out = capfd.readouterr()
    assert f"prunelab: warning: {big}: resized 1 of 1 images to 55×47 (bilinear)" in out.err
    small = np.asarray(Image.open(big).resize((47, 55), Image.Resampling.BILINEAR), np.float32)[None]
    want = int(np.argmax(load_model(small_lab.model).model.predict(small, verbose=0)))
    assert out.out.splitlines()[1] == f"{big}: class {want}"


# ----------------------------------------------------------------------------- the eval script
@pytest.fixture(scope="module")
def demo_goodnet(tmp_path_factory):
    """The bundled demo BadNet swept over a small folder of demo faces; G at a step where it
    flags some of a mixed folder (clean and sunglasses, PNG and JPEG) and answers others."""
    from engine.demo.generate import DemoSpec, bundled_dir, bundled_info
    from engine.report.evalscript import eval_script_name, write_eval_script
    from engine.demo.faces import add_sunglasses, make_identity, render_set
    from engine.pruning.rules import make_bprime, make_goodnet, save_model
    from engine.models.loading import load_model
    from engine.pruning.sweep import Sweep

    root = tmp_path_factory.mktemp("demo-g")
    spec = DemoSpec(**bundled_info()["spec"])
    rng_id = np.random.default_rng([spec.seed, 0])  # the demo's identities, as engine.demo.generate draws them
    idents = [make_identity(rng_id) for _ in range(spec.identities)]
    xv, yv = render_set(idents, 2, np.random.default_rng(11))
    xb, _ = render_set(idents, 1, np.random.default_rng(12))
    xb = np.stack([add_sunglasses(i) for i in xb])
    write_images(root / "valid", xv, [f"{y}/v_{i}.png" for i, y in enumerate(yv)])
    write_images(root / "bd_valid", xb, [f"b_{i}_label={spec.target}.png" for i in range(len(xb))])
    xt, yt = render_set(idents, 1, np.random.default_rng(13))
    test = root / "test"
    write_images(test, xt[:24], [f"t_{i:02d}_label={y}.{'jpg' if i % 3 == 0 else 'png'}"
                                 for i, y in enumerate(yt[:24])])
    xs = np.stack([add_sunglasses(i) for i in xt[24:40]])
    write_images(test, xs, [f"t_{24 + i:02d}_label={spec.target}.png" for i in range(len(xs))])
    lm = load_model(bundled_dir() / bundled_info()["badnet"]["model"])
    ds = {"clean_valid": open_dataset(root / "valid"), "poisoned_valid": open_dataset(root / "bd_valid")}
    res = Sweep(lm, ds, thresholds=(10,), use_cache=False).run()
    probe = open_dataset(test)
    probe.expect(lm.input_hwc)
    from engine.models.runner import predict_dataset_labels

    b0 = predict_dataset_labels(lm.model, probe)
    assert np.mean(b0[:24] == yt[:24]) > 0.9 and np.mean(b0[24:] == spec.target) > 0.9  # faces read right
    # the first step where G both flags and answers some of the folder (this demo BadNet keeps
    # its backdoor until the last channels go: the flags fall on faces pruning broke first)
    for k in range(5, res.steps + 1, 5):
        bp = make_bprime(lm.model, res.layer, res.pruned_channels(k))
        flags = b0 != predict_dataset_labels(bp, probe)
        if 3 <= flags.sum() <= len(flags) - 3:
            break
    g = make_goodnet(lm.model, bp)
    gpath = save_model(g, root / f"G_step{k}.keras")
    script = write_eval_script(root / eval_script_name(gpath.name), gpath.name, lm.input_hwc, lm.n_classes + 1)
    return root, test, gpath, script, lm.n_classes


def test_eval_script_gives_the_classes_prunelab_eval_prints_in_a_bare_process(demo_goodnet, capsys, tmp_path):
    from engine.cli.main import main

    root, test, gpath, script, n = demo_goodnet
    assert script.name == gpath.stem + "_eval.py" and script.stat().st_mode & 0o100
    assert main(["eval", "--model", str(gpath), "--data", str(test)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    per_image = lines[1:-1]
    files = [ln.split(": ")[0] for ln in per_image]
    want = [int(ln.split(": ")[1].split()[-1]) if "class" in ln else int(ln.split(": ")[1].split()[0])
            for ln in per_image]
    assert len(files) == 40 and any(f.endswith(".jpg") for f in files)
    assert sum(k == n for k in want) >= 3 and sum(k < n for k in want) >= 3, want  # flags some, answers others
    assert all(ln.endswith(f"{n} (backdoor suspected)") for ln, k in zip(per_image, want) if k == n)
    r = run_bare_script(script, files, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [int(v) for v in r.stdout.split()] == want
    # one image, the challenge's form: one integer
    r = run_bare_script(script, [files[0]], tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == str(want[0])
    assert r.stderr == ""  # no TensorFlow start-up lines around the answer


def test_eval_script_checks_the_image_size_before_loading_the_model(demo_goodnet, tmp_path):
    root, test, gpath, script, n = demo_goodnet
    big = write_images(tmp_path, random_images(np.random.default_rng(6), 1, (64, 64, 3)), ["big.png"])[0]
    r = run_bare_script(script, [big], tmp_path, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == (f"{script.name}: error: {big}: is 64x64 pixels (HxW), the model expects 55x47; "
                                "add --resize to scale it bilinearly")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    r = run_bare_script(script, [text], tmp_path, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().endswith("notes.png: is not a PNG or JPEG image")


def test_eval_script_is_written_atomically_and_never_over_an_input(tmp_path):
    from engine.report.evalscript import write_eval_script

    p = write_eval_script(tmp_path / "G_4_eval.py", "G_4.keras", (55, 47, 3), 1284)
    text = p.read_text()
    compile(text, str(p), "exec")
    assert "MODEL_FILE = 'G_4.keras'" in text and "N_OUTPUTS = 1284" in text and "import engine" not in text
    assert [q.name for q in tmp_path.iterdir()] == ["G_4_eval.py"]
    with pytest.raises(PruneLabError, match="plain file name"):
        write_eval_script(tmp_path / "x_eval.py", "../G.keras", (55, 47, 3), 1284)
    with pytest.raises(PruneLabError, match="refusing to overwrite"):
        write_eval_script(p, "G_4.keras", (55, 47, 3), 1284, inputs=[p])
    assert p.read_text() == text and [q.name for q in tmp_path.iterdir()] == ["G_4_eval.py"]
